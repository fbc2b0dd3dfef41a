"""vader_regression: the mean sentiment rating (-4..+4) of short English texts.

Regression with MSE on the human ratings of Hutto & Gilbert (ICWSM 2014):
movie-review snippets, tweets, Amazon reviews and New York Times sentences,
each rated by about 20 people (the vaderSentiment 3.3.2 source package;
`.ci/setup` fetches it). Targets are standardised with the training split's
mean and deviation; predictions and metrics are in rating units.

  python launch.py --experiment=vader_regression

Measured: not yet (see the README's task table when it is).
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='regression',
      model=CPU_ENCODER,
      data=DataConfig(source='vader', sentiment_classes=0, max_length=64,
                      batch_size=64, eval_max_length=128),
      train=TrainConfig(loss='mse', steps=2000, schedule='cosine',
                        learning_rate=1e-3, warmup_steps=100,
                        label_smoothing=0.0, checkpoint_every=500,
                        log_every=100),
      eval=EvalConfig(every=500, split='valid'),
  )
