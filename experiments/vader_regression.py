"""vader_regression: the mean sentiment rating (-4..+4) of short English texts.

Regression with MSE on the human ratings of Hutto & Gilbert (ICWSM 2014):
movie-review snippets, tweets, Amazon reviews and New York Times sentences,
each rated by about 20 people (the vaderSentiment 3.3.2 source package;
`.ci/setup` fetches it). Targets are standardised with the training split's
mean and deviation; predictions and metrics are in rating units.

  python launch.py --experiment=vader_regression

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s as `--mode=benchmark` measures), alone: 800 steps in 1.4
minutes (the whole command 1.5); test split (2,337 texts): Pearson r 0.666, Spearman 0.656, MSE
1.612, MAE 0.944 (rating units). Baselines on the same splits (`python -m
transformer.baselines --experiment=vader_regression`): the training mean MSE
2.772; VADER's own lexicon scorer Pearson 0.525 (its compound score mapped
linearly to ratings on the training split: MSE 2.009); TF-IDF + ridge
(alpha=1 chosen on valid) Pearson 0.702, MSE 1.419. The Transformer beats
VADER's lexicon clearly and the bag of n-grams not yet: trained from
scratch on 19k texts, it is short of data.
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='regression',
      model=CPU_ENCODER,
      data=DataConfig(source='vader', sentiment_classes=0, max_length=64,
                      batch_size=64, eval_max_length=128),
      train=TrainConfig(loss='mse', steps=800, schedule='cosine',
                        learning_rate=1e-3, warmup_steps=100,
                        label_smoothing=0.0, checkpoint_every=500,
                        log_every=100),
      eval=EvalConfig(every=200, split='valid'),
  )
