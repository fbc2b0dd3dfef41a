"""Non-Transformer baselines on exactly the splits the experiments use.

  python -m transformer.baselines --experiment=vader_3way [--set=KEY=VALUE]
      [--output=FILE]

The command line only: the baselines (TF-IDF with logistic or ridge
regression, the majority class, VADER's lexicon) live with their family in
transformer/tasks/labelled/baselines.py.
"""

from transformer.tasks.labelled.baselines import main

if __name__ == '__main__':
  main()
