"""sst2: binary sentiment of the Stanford Sentiment Treebank sentences (GLUE SST-2), positive or negative; GLUE's test labels are hidden, so its validation split is our test split.

Read through TFDS's own loading code (`tfds.data_source`, ArrayRecord); the
data is never downloaded at run time: prepare it once with the command the
run prints when it is missing (`tfds build glue/sst2 --file_format=array_record`).

  python launch.py --experiment=sst2

Measured: not run here (no TFDS data offline on this machine). Published
reference points: see the README's task table.
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=CPU_ENCODER,
      data=DataConfig(source='tfds', tfds_name='glue/sst2', max_length=64,
                      batch_size=64, eval_max_length=64),
      train=TrainConfig(steps=3000, schedule='cosine', learning_rate=1e-3,
                        warmup_steps=100, label_smoothing=0.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=1000, split='valid'),
  )
