"""vader_spread: two regression outputs at once: the mean sentiment rating of a text and how much its raters disagree.

The texts of vader_regression with a second target, the standard deviation
of the individual ratings (0.3-3 rating points; the archive keeps every
rater's rating, transformer/tasks/labelled/sources.py). One head of two outputs,
MSE on both standardised targets; metrics per target and their mean.

  python launch.py --experiment=vader_spread

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s as `--mode=benchmark` measures), alone: 800 steps in 1.4 minutes
(the whole command 1.5); test split (2,337 texts): rating Pearson 0.667, spread Pearson 0.330 (mean 0.499); MSE 0.839
and MAE 0.581 averaged over both targets, in rating units. Baselines on the
same splits (`python -m transformer.baselines --experiment=vader_spread`):
the training means MSE 1.427; TF-IDF + multi-output ridge (alpha=1 chosen
on valid): rating Pearson 0.702, spread Pearson 0.270, MSE 0.748. The
second output costs the rating nothing (0.666 alone, vader_regression), and
the encoder predicts disagreement better than the bag of n-grams, the
rating itself not yet.
"""

import dataclasses

from experiments import vader_regression
from transformer.config import Config


def get_config() -> Config:
  config = vader_regression.get_config()
  return dataclasses.replace(
      config, data=dataclasses.replace(config.data, rater_spread=True))
