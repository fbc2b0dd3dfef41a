"""imdb: binary sentiment of the movie reviews of IMDB (Maas et al. 2011), positive or negative; 25k train / 25k test.

Read through TFDS's own loading code (`tfds.data_source`, ArrayRecord); the
data is never downloaded at run time: prepare it once with the command the
run prints when it is missing (`tfds build imdb_reviews --file_format=array_record`).

  python launch.py --experiment=imdb

Measured: not run here (no TFDS data offline on this machine). Published
reference points: see the README's task table.
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=CPU_ENCODER,
      data=DataConfig(source='tfds', tfds_name='imdb_reviews', max_length=256,
                      batch_size=64, eval_max_length=256),
      train=TrainConfig(steps=3000, schedule='cosine', learning_rate=1e-3,
                        warmup_steps=100, label_smoothing=0.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=1000, split='valid'),
  )
