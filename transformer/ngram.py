"""The command line of the smoothed n-gram language-model baseline:

  python -m transformer.ngram --experiment=NAME [--set=KEY=VALUE]
      [--order=N] [--level=char|token|both] [--tokenizer_dir=DIR]
      [--output=FILE]

The models and the flags live in transformer/tasks/language_model/ngram.py.
"""

from transformer.tasks.language_model import ngram

if __name__ == '__main__':
  ngram.main()
