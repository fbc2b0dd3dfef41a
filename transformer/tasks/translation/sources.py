"""Parallel corpora behind one interface: `load_split(config, split)`.

Every source returns a random-access sequence (`len`, `[i]`) of
`(source_text, target_text)` string pairs, which grain reads by index:

  'bible'  the offline Spanish-English Bible (`bible.prepare`), as text files;
  'text'   the user's own files `text_dir/{split}.src` and `{split}.tgt`,
           in data.encoding;
  'tfds'   a TFDS translation dataset read with `tfds.data_source`
           (ArrayRecord files, random access, no TensorFlow needed to read);
  'toy'    a generated task (reverse a sequence of words) for fast tests.

Text files are never loaded whole: one pass builds an index of line byte
offsets (and checks that the text decodes: the users' files in
data.encoding, UTF-8 by default), then lines are read by offset, so files
larger than memory work. Every problem the user can fix raises `DataError`
(transformer/data/corpus.py), naming the file, line or key at fault and what
would be accepted.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from transformer.config import DataConfig
from transformer.data import bible, corpus
from transformer.data.corpus import DataError

BIBLE_SUBDIR = 'bible_es_en'
BIBLE_LANGUAGES = ('es', 'en')
TFDS_SPLITS = {'train': 'train', 'valid': 'validation', 'test': 'test'}
Pair = tuple[str, str]


def _parse_direction(direction: str, languages: Sequence[str],
                     what: str) -> tuple[str, str]:
  parts = direction.split('-')
  allowed = [f'{a}-{b}' for a in languages for b in languages if a != b]
  if len(parts) != 2 or parts[0] not in languages or parts[1] not in languages \
      or parts[0] == parts[1]:
    raise DataError(f'data.direction={direction!r} is not available for '
                    f'{what}: expected one of {", ".join(allowed)}')
  return parts[0], parts[1]


class ParallelText(Sequence[Pair]):
  """Two line-aligned text files: line i of `target_path` translates line i
  of `source_path`; both in `encoding`."""

  def __init__(self, source_path: str, target_path: str,
               encoding: str = 'utf-8'):
    self.source = corpus.TextLines(source_path, encoding)
    self.target = corpus.TextLines(target_path, encoding)
    if len(self.source) != len(self.target):
      raise DataError(
          f'{source_path} has {len(self.source)} lines but {target_path} has '
          f'{len(self.target)}: parallel files need one sentence per line, '
          'line i of one translating line i of the other')

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Pair:
    return self.source[index], self.target[index]


# ---------------------------------------------------------------------------
# The sources.
# ---------------------------------------------------------------------------


def bible_dir(config: DataConfig) -> str:
  """Where the Bible text files are: the data root's bible_es_en."""
  return os.path.join(corpus.data_root(config), BIBLE_SUBDIR)


def _bible(config: DataConfig, split: str) -> ParallelText:
  src, tgt = _parse_direction(config.direction, BIBLE_LANGUAGES,
                              "data.source='bible'")
  directory = bible_dir(config)
  try:
    bible.prepare(directory)
  except bible.CorpusUnavailableError as error:
    raise DataError(f"data.source='bible': {error}") from None
  return ParallelText(os.path.join(directory, f'{split}.{src}'),
                      os.path.join(directory, f'{split}.{tgt}'))


def _text(config: DataConfig, split: str) -> ParallelText:
  if not config.text_dir:
    raise DataError("data.source='text' needs data.text_dir: a directory "
                    'holding train.src and train.tgt (and optionally '
                    'valid.src/.tgt, test.src/.tgt), one sentence per line')
  directory = os.path.expanduser(config.text_dir)
  paths = [os.path.join(directory, f'{split}.{ext}') for ext in ('src', 'tgt')]
  for path in paths:
    if not os.path.isfile(path):
      raise DataError(
          f'{path}: file not found. data.source=\'text\' reads '
          f'{split}.src and {split}.tgt from data.text_dir={config.text_dir!r}'
          ' (one sentence per line, the same number of lines, in '
          f'data.encoding={config.encoding!r})')
  return ParallelText(*paths, encoding=config.encoding)


class TfdsTranslation(Sequence[Pair]):
  """A TFDS data source of {lang: text} examples as (source, target) pairs."""

  def __init__(self, data_source, source_lang: str, target_lang: str):
    self.data_source = data_source
    self.source_lang = source_lang
    self.target_lang = target_lang

  def __len__(self) -> int:
    return len(self.data_source)

  def __getitem__(self, index: int) -> Pair:
    example = self.data_source[int(index)]
    return (corpus.tfds_text(example[self.source_lang]),
            corpus.tfds_text(example[self.target_lang]))


def _tfds(config: DataConfig, split: str) -> TfdsTranslation:
  # tensorflow_datasets is optional (pip install -e .[wmt]): imported only
  # when data.source='tfds' asks for it.
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  # Registers the translation builders (wmt*, ted_*, ...).
  import tensorflow_datasets.translate  # pylint: disable=import-outside-toplevel,unused-import
  name = config.tfds_name
  data_dir = (os.path.expanduser(config.tfds_data_dir)
              if config.tfds_data_dir else None)
  shown_dir = data_dir or '~/tensorflow_datasets'
  try:
    source = tfds.data_source(name, split=TFDS_SPLITS[split],
                              data_dir=data_dir, download=False)
  except Exception as error:  # pylint: disable=broad-except
    # Missing data, a TFRecord-only preparation, an unknown name or split:
    # tfds raises several types; all mean "not usable as it is".
    message = str(error).split('\n', 1)[0]
    raise DataError(
        f'data.tfds_name={name!r} split {TFDS_SPLITS[split]!r} is not '
        f'available as ArrayRecord in {shown_dir} '
        f'({type(error).__name__}: {message}). '
        + corpus.tfds_prepare_hint(name, config.tfds_data_dir)) from None
  features = source.dataset_info.features
  languages = sorted(getattr(features, 'languages', None) or features.keys())
  src, tgt = _parse_direction(config.direction, languages,
                              f'data.tfds_name={name!r}')
  return TfdsTranslation(source, src, tgt)


# Toy task: reverse a sequence of words (corpus.TOY_WORDS).
TOY_WORDS = corpus.TOY_WORDS
TOY_SIZES = {'train': 20_000, 'valid': 500, 'test': 500}
TOY_MIN_WORDS, TOY_MAX_WORDS = 3, 12
_TOY_SPLIT_SEEDS = {'train': 1, 'valid': 2, 'test': 3}


class Toy(Sequence[Pair]):
  """Sentences of 3-12 words from TOY_WORDS; the target reverses the words.

  Deterministic: the same split always holds the same sentences.
  """

  def __init__(self, split: str, size: int | None = None):
    rng = np.random.default_rng([20_240_601, _TOY_SPLIT_SEEDS[split]])
    size = TOY_SIZES[split] if size is None else size
    self._lengths = rng.integers(TOY_MIN_WORDS, TOY_MAX_WORDS + 1, size)
    self._words = rng.integers(0, len(TOY_WORDS), int(self._lengths.sum()))
    self._starts = np.concatenate([[0], np.cumsum(self._lengths)])

  def __len__(self) -> int:
    return len(self._lengths)

  def __getitem__(self, index: int) -> Pair:
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(index)
    ids = self._words[self._starts[index]:self._starts[index + 1]]
    words = [TOY_WORDS[i] for i in ids]
    return ' '.join(words), ' '.join(reversed(words))


def load_split(config: DataConfig, split: str) -> Sequence[Pair]:
  """The (source_text, target_text) pairs of one split of `config.source`.

  Args:
    config: the data config (source, direction, paths).
    split: 'train', 'valid' or 'test'.
  Returns:
    A random-access sequence (len, [i]) of pairs of str, picklable.
  Raises:
    DataError: the corpus is missing, malformed or the direction unknown.
  """
  corpus.check_split(split)
  loaders = {'bible': _bible, 'text': _text, 'tfds': _tfds,
             'toy': lambda c, s: Toy(s)}
  if config.source not in loaders:
    raise DataError(f'data.source={config.source!r}: expected one of '
                    f'{", ".join(loaders)}')
  return loaders[config.source](config, split)
