"""vader_spread: two regression outputs at once: the mean sentiment rating of a text and how much its raters disagree.

The texts of vader_regression with a second target, the standard deviation
of the individual ratings (0.3-3 rating points; the archive keeps every
rater's rating, transformer/data/labelled.py). One head of two outputs,
MSE on both standardised targets; metrics per target and their mean.

  python launch.py --experiment=vader_spread

Measured: see the closing numbers below (filled in from the run).
"""

import dataclasses

from experiments import vader_regression
from transformer.config import Config


def get_config() -> Config:
  config = vader_regression.get_config()
  return dataclasses.replace(
      config, data=dataclasses.replace(config.data, rater_spread=True))
