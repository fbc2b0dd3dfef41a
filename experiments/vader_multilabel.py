"""vader_multilabel: which sentiments people perceive in a text, as a set (multi-label, log loss).

The texts of vader_3way, labelled with every sentiment (negative, neutral,
positive) that at least a quarter of the raters gave, by the sign of each
rater's own rating (the archive keeps all of them: 15-99 per text;
transformer/tasks/labelled/sources.py). A quarter of the training texts hold two or
three labels, e.g. sarcasm that some read as negative and others as
positive. The head gives three independent sigmoids trained with binary log
loss; the metrics are subset accuracy (all three right), macro-F1 over the
labels and the mean binary log loss.

  python launch.py --experiment=vader_multilabel

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s as `--mode=benchmark` measures), alone: 800 steps in 1.3 minutes
(the whole command 1.5); test split (2,337 texts): subset accuracy 0.553,
macro-F1 0.701, log loss 0.514; recall negative 0.750,
neutral 0.630, positive 0.693. Baselines on the same splits (`python -m
transformer.baselines --experiment=vader_multilabel`): each label's training
share as its probability: subset accuracy 0.363, macro-F1 0.226, log loss
0.659; TF-IDF + one logistic regression per label (C=3 chosen on valid):
subset accuracy 0.561, macro-F1 0.700, log loss 0.468, neutral recall
0.501. The encoder ties the bag of n-grams on macro-F1 and finds the
neutral readings more often; its probabilities are less well calibrated.
"""

import dataclasses

from experiments import vader_3way
from transformer.config import Config


def get_config() -> Config:
  config = vader_3way.get_config()
  return dataclasses.replace(
      config, data=dataclasses.replace(config.data, multi_label=True),
      train=dataclasses.replace(config.train, loss='log_loss'))
