"""vader_binary: the sentiment of short English texts as a class: negative or positive (ratings within 0.5 of neutral dropped), trained with log loss (one sigmoid output).

The human-rated sets of Hutto & Gilbert (ICWSM 2014) that the vaderSentiment
3.3.2 source package ships (`.ci/setup` fetches it), binned from the mean
rating (transformer/data/labelled.py gives the cut points).

  python launch.py --experiment=vader_binary

Measured: not yet (see the README's task table when it is).
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=CPU_ENCODER,
      data=DataConfig(source='vader', sentiment_classes=2, max_length=64,
                      batch_size=64, eval_max_length=128),
      train=TrainConfig(loss='log_loss', steps=2000, schedule='cosine',
                        learning_rate=1e-3, warmup_steps=100,
                        label_smoothing=0.0, checkpoint_every=500,
                        log_every=100),
      eval=EvalConfig(every=500, split='valid'),
  )
