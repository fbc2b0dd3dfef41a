"""The built-in labelled sources: VADER, Bible genres, TFDS and the toy task.

Every source (these and the users' files of files.py) returns a
random-access, picklable sequence (`len`, `[i]`) of `(text, label)` pairs:
the label is the class name (str) for `config.task='classification'`, a
sorted tuple of names with data.multi_label, a float for `'regression'` and
a tuple of floats for several regression targets. The caller builds the
label vocabulary from the training split. `data.source` picks (through
`load_split` in __init__.py; 'text', the users' files, in files.py):

'vader'  The human-rated sentences of VADER (Hutto & Gilbert, "VADER: A
    Parsimonious Rule-based Model for Sentiment Analysis of Social Media
    Text", ICWSM 2014; MIT licence): 4,200 tweets, 10,605 movie-review
    snippets, 3,708 Amazon review snippets and 5,190 New York Times editorial
    sentences, each with the mean of about 20 people's ratings on -4..+4.
    They ship in the *source* distribution of the PyPI package vaderSentiment
    3.3.2 (`additional_resources/hutto_ICWSM_2014.tar.gz`); .ci/setup fetches
    it to DATA_ROOT/downloads/ (DATA_ROOT = data.data_dir or
    ~/.cache/transformer), nothing is downloaded at run time. We read the
    `*_GroundTruth.txt` files (id, mean rating, text), which the archive's
    README names as the ratings of each set (for 199 tweets the mean differs
    from the one in `tweets_anonDataRatings.txt`; we keep GroundTruth's).
    Prepared once
    into DATA_ROOT/vader_sentiment/{train,valid,test}.tsv. The split is
    sha256(salt|normalised text), ~80/10/10, where the normalised text is
    case-folded with whitespace collapsed, so no text is in two splits even
    up to case. Identical texts (whitespace collapsed) are merged into one
    item with the mean of their ratings; texts that differ in case only stay
    apart (in one split): 64 such groups, 60 of them tweets rewritten in
    capitals on purpose to measure emphasis ("Anger is UGLY." -1.85 against
    "Anger is ugly." -1.01).
    Each item keeps its sub-corpus and id (`Examples.origin(i)`). Labels,
    by `data.sentiment_classes` (r = rating):
      0: regression on r itself;
      2: 'negative' r <= -0.5, 'positive' r >= 0.5; -0.5 < r < 0.5 dropped;
      3: 'negative' r < -0.5, 'neutral' -0.5 <= r <= 0.5, 'positive' r > 0.5;
      5: 'very negative' r <= -2, 'negative' -2 < r < -0.5, 'neutral'
         -0.5 <= r <= 0.5, 'positive' 0.5 < r < 2, 'very positive' r >= 2.
    The archive also holds every rater's own rating (`*_anonDataRatings.txt`,
    15-99 raters per item; merged duplicates pool their raters), which give
    data.rater_spread (regression: a second target, the population standard
    deviation of the ratings, i.e. how much people disagree) and
    data.multi_label with 2 or 3 classes: the set of sentiments that at least
    a quarter of the raters gave by the sign of their rating (negative < 0,
    neutral = 0, positive > 0), e.g. both negative and positive for a
    sarcastic tweet.

'bible_genre'  English Bible verses (World English Bible, the engWEB2015eb
    SWORD module that transformer/data/bible.py reads with diatheke) labelled
    with their book's genre: law (Genesis-Deuteronomy), history
    (Joshua-Esther), wisdom (Job-Song of Solomon), prophets (Isaiah-Malachi,
    Lamentations and Daniel included), gospels (Matthew-John), acts, epistles
    (Romans-Jude) and apocalypse (Revelation): real imbalance, some 17:1
    between history and apocalypse. The deuterocanon has no genre here and is
    left out. Whole chapters go to one split by `bible.split_of(book,
    chapter)`, exactly as in the translation corpus, so no chapter tested
    there or here is trained on. All verses of the English module are used
    (the translation corpus keeps only those aligned with the Spanish one);
    data.direction is ignored: the text is always English. Prepared once
    (one diatheke pass, seconds) into DATA_ROOT/bible_genre/.

'tfds'  TFDS classification sets read with `tfds.data_source` (ArrayRecord
    files, prepared beforehand; never downloaded at run time), by
    data.tfds_name: imdb_reviews (text, label: neg/pos), glue/sst2
    (sentence, label: negative/positive), ag_news_subset (description,
    label: World/Sports/Business/Sci/Tech). The class names are the
    ClassLabel's. 'valid' is a held-out ~10% of TFDS's train split (by a hash
    of the record index), 'train' the rest of it; 'test' is TFDS's test split
    for imdb_reviews and ag_news_subset, and its validation split for
    glue/sst2, whose test labels are hidden (-1).

'toy'  A generated task for tests, deterministic per split (5,000 / 500 /
    500 items of 4-12 words). Classification: 3 classes 'red', 'green',
    'blue'; the label is the class whose word occurs most often in the text,
    and it is a strict majority of the colour words there. Multi-label: the
    colours whose words occur in the text. Regression: the
    target is the number of 'up' minus the number of 'down' in the text.

Every problem the user can fix raises `DataError`, naming the file, line,
key or flag at fault and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import statistics
import tarfile
import zlib
from typing import Any, Iterator, Sequence, Union

import numpy as np

from transformer.config import Config
from transformer.data import bible, corpus
from transformer.data.corpus import DataError

# A class name (str), a set of them (multi-label: a sorted tuple of str), a
# regression target (float) or several (a tuple of float).
Label = Union[str, float, tuple[str, ...], tuple[float, ...]]
Example = tuple[str, Label]


# ---------------------------------------------------------------------------
# Shared pieces.
# ---------------------------------------------------------------------------


class Examples(Sequence[Example]):
  """(text, label) pairs held in memory, with optional per-item origins
  (the sub-corpus of a VADER item, the (book, chapter, verse) of a verse)."""

  def __init__(self, texts: list[str], labels: list[Label],
               origins: list[Any] | None = None):
    self.texts = texts
    self.labels = labels
    self.origins = origins

  def __len__(self) -> int:
    return len(self.texts)

  def __getitem__(self, index: int) -> Example:
    return self.texts[index], self.labels[index]

  def origin(self, index: int) -> Any:
    return None if self.origins is None else self.origins[index]


def _check_task(config: Config, allowed: tuple[str, ...]) -> None:
  if config.task not in allowed:
    raise DataError(
        f'data.source={config.data.source!r} has no {config.task} labels: '
        f'it serves task={" or ".join(map(repr, allowed))}')


# ---------------------------------------------------------------------------
# 'vader': human sentiment ratings (Hutto & Gilbert, ICWSM 2014).
# ---------------------------------------------------------------------------

VADER_SDIST = 'vaderSentiment-3.3.2.tar.gz'
VADER_MEMBER = ('vaderSentiment-3.3.2/additional_resources/'
                'hutto_ICWSM_2014.tar.gz')
# Sub-corpus -> its file inside hutto_ICWSM_2014.tar.gz (id, rating, text).
VADER_CORPORA = {
    'tweets': 'hutto_ICWSM_2014/tweets_GroundTruth.txt',
    'movie_reviews': 'hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt',
    'amazon_reviews': 'hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt',
    'nyt_editorials': 'hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt',
}
# ... and the raters' individual ratings of each item (id, mean, standard
# deviation, [ratings]), for the spread and the perceived sentiments.
VADER_RATINGS = {name: path.replace('_GroundTruth', '_anonDataRatings')
                 for name, path in VADER_CORPORA.items()}
VADER_SUBDIR = 'vader_sentiment'
# Bump when the reading, merging or split changes: the cache is rebuilt.
# 2: the raters' individual ratings kept (the split is unchanged).
VADER_FORMAT_VERSION = 2
_VADER_SALT = 'vader-split-v1'
_VADER_MIN_TEST = 1000
SENTIMENT_CLASSES = {
    2: ('negative', 'positive'),
    3: ('negative', 'neutral', 'positive'),
    5: ('very negative', 'negative', 'neutral', 'positive', 'very positive'),
}


def vader_sdist_path(config: Config) -> str:
  return os.path.join(corpus.data_root(config.data), 'downloads', VADER_SDIST)


def vader_fetch_command(downloads_dir: str) -> str:
  return ('python -m pip download --no-binary :all: --no-deps '
          f'vaderSentiment==3.3.2 -d "{downloads_dir}"')


def sentiment_label(rating: float, classes: int) -> str | None:
  """The class of a mean rating (-4..4) with the cut points of the module
  docstring; None where the 2-class problem drops the item."""
  if classes == 2:
    return ('negative' if rating <= -0.5 else
            'positive' if rating >= 0.5 else None)
  if classes == 3:
    return ('negative' if rating < -0.5 else
            'positive' if rating > 0.5 else 'neutral')
  if classes == 5:
    return ('very negative' if rating <= -2 else
            'negative' if rating < -0.5 else
            'neutral' if rating <= 0.5 else
            'positive' if rating < 2 else 'very positive')
  raise ValueError(f'no sentiment classes for {classes}')


def read_vader(sdist: str
               ) -> list[tuple[str, str, str, float, tuple[int, ...]]]:
  """(sub-corpus, id, text, mean rating, the raters' ratings) of every rated
  item, in file order, read from the vaderSentiment source archive without
  extracting it."""
  try:
    with tarfile.open(sdist, 'r:gz') as outer:
      inner_file = outer.extractfile(VADER_MEMBER)
      with tarfile.open(fileobj=inner_file, mode='r:gz') as inner:
        raw = {name: inner.extractfile(member).read()
               for name, member in VADER_CORPORA.items()}
        raw_ratings = {name: inner.extractfile(member).read()
                       for name, member in VADER_RATINGS.items()}
  except (tarfile.TarError, KeyError, OSError, EOFError, zlib.error) as error:
    raise DataError(
        f"data.source='vader': {sdist} is not a readable vaderSentiment "
        f'3.3.2 source archive holding {VADER_MEMBER} ({type(error).__name__}'
        f': {error}). Delete it and fetch it again with: '
        f'{vader_fetch_command(os.path.dirname(sdist))}') from None
  items = []
  for name, data in raw.items():
    ratings = _rater_ratings(raw_ratings[name],
                             f'{sdist}: {VADER_MEMBER}: {VADER_RATINGS[name]}')
    where = f'{sdist}: {VADER_MEMBER}: {VADER_CORPORA[name]}'
    for number, fields in _tab_lines(data):
      try:
        items.append((name, fields[0], ' '.join(fields[2].split()),
                      float(fields[1]), ratings[fields[0]]))
      except (IndexError, ValueError, KeyError):
        raise DataError(f'{where}: line {number}: expected id, rating and '
                        f'text separated by tabs, an id with individual '
                        f'ratings, got {fields[:3]!r}; the archive is not the '
                        'published one') from None
  return items


def _tab_lines(data: bytes) -> Iterator[tuple[int, list[str]]]:
  """(line number, tab-separated fields) of the non-empty lines."""
  for number, line in enumerate(data.decode('utf-8-sig').split('\n'), 1):
    if line.strip():
      yield number, line.rstrip('\r').split('\t')


def _rater_ratings(data: bytes, where: str) -> dict[str, tuple[int, ...]]:
  """id -> the individual ratings of an *_anonDataRatings.txt file, whose
  lines are: id, mean, standard deviation, [r1, r2, ...]."""
  ratings = {}
  for number, fields in _tab_lines(data):
    try:
      ratings[fields[0]] = tuple(json.loads(fields[3]))
      if not ratings[fields[0]] or not all(
          isinstance(r, int) and -4 <= r <= 4 for r in ratings[fields[0]]):
        raise ValueError
    except (IndexError, ValueError):
      raise DataError(f'{where}: line {number}: expected id, mean, standard '
                      'deviation and a list of integer ratings in -4..4, got '
                      f'{fields[:4]!r}; the archive is not the published one'
                      ) from None
  return ratings


def _merge_duplicates(items) -> list[tuple[str, float, str, str, tuple]]:
  """One (text, mean rating, sub-corpora, ids, ratings) per distinct text,
  in order of first occurrence: the mean of the groups' means, all their
  raters' ratings. Texts are compared as read_vader returns them
  (whitespace collapsed), case kept: capitals change the ratings."""
  groups: dict[str, list] = {}
  for item in items:
    groups.setdefault(item[2], []).append(item)
  merged = []
  for group in groups.values():
    rating = group[0][3] if len(group) == 1 else statistics.fmean(
        g[3] for g in group)
    merged.append((group[0][2], rating, ','.join(g[0] for g in group),
                   ','.join(g[1] for g in group),
                   tuple(r for g in group for r in g[4])))
  return merged


# data.multi_label on 'vader': a sentiment counts as perceived when at least
# this share of the raters gave it (the sign of their rating).
PERCEIVED_SHARE = 0.25


def perceived_sentiments(ratings: Sequence[int], classes: int
                         ) -> tuple[str, ...]:
  """The sentiments that at least PERCEIVED_SHARE of the raters gave:
  'negative' (rating < 0), 'neutral' (0; 3 classes only), 'positive' (> 0),
  in that order."""
  signs = {'negative': sum(r < 0 for r in ratings),
           'neutral': sum(r == 0 for r in ratings),
           'positive': sum(r > 0 for r in ratings)}
  return tuple(name for name in SENTIMENT_CLASSES[classes]
               if signs[name] >= PERCEIVED_SHARE * len(ratings))


def vader_split_of(text: str) -> str:
  bucket = corpus.bucket(_VADER_SALT, corpus.normalise(text), 100)
  return 'valid' if bucket < 10 else 'test' if bucket < 20 else 'train'


def prepare_vader(sdist: str, directory: str) -> dict:
  """Writes directory/{train,valid,test}.tsv (text, rating, corpus, id) and
  meta.json from the source archive; returns the meta. Idempotent: a cache of
  this VADER_FORMAT_VERSION is returned without reading the archive."""
  meta = corpus.read_meta(directory, VADER_FORMAT_VERSION)
  if meta is not None:
    return meta
  if not os.path.isfile(sdist):
    raise DataError(
        f"data.source='vader': {sdist} not found. The VADER sentiment ratings "
        '(Hutto & Gilbert, ICWSM 2014) ship in the source distribution of '
        'the PyPI package vaderSentiment 3.3.2; fetch it once with: '
        f'{vader_fetch_command(os.path.dirname(sdist))} (.ci/setup does this '
        'for the default data.data_dir). Nothing is downloaded at run time.')
  items = read_vader(sdist)
  merged = _merge_duplicates(items)
  tables: dict[str, list[tuple]] = {s: [] for s in corpus.SPLITS}
  for text, rating, corpora, ids, ratings in merged:
    tables[vader_split_of(text)].append(
        (text, repr(rating), corpora, ids, ' '.join(map(str, ratings))))
  # A fixed property of the published data and the salt, checked anyway.
  if len(tables['test']) < _VADER_MIN_TEST:
    raise RuntimeError(f'VADER test split has {len(tables["test"])} items, '
                       f'fewer than {_VADER_MIN_TEST}')
  meta = {
      'format_version': VADER_FORMAT_VERSION,
      'source': f'{VADER_SDIST}: {VADER_MEMBER}',
      'items': {c: sum(i[0] == c for i in items) for c in VADER_CORPORA},
      'merged_duplicates': len(items) - len(merged),
      'splits': {s: len(rows) for s, rows in tables.items()},
  }
  corpus.write_prepared(directory,
                        ('text', 'rating', 'corpus', 'id', 'ratings'), tables,
                        meta)
  return meta


def _check_vader(config: Config) -> None:
  data = config.data
  classes = data.sentiment_classes
  if classes != 0 and classes not in SENTIMENT_CLASSES:
    raise DataError(f'data.sentiment_classes={classes}: expected 0 (the '
                    'rating as a regression target), 2, 3 or 5 classes')
  if (config.task == 'regression') != (classes == 0):
    raise DataError(
        f'task={config.task!r} does not match data.sentiment_classes='
        f'{classes}: regression on the rating needs sentiment_classes=0, '
        'classification needs 2, 3 or 5')
  if data.multi_label and classes not in (2, 3):
    raise DataError(
        f'data.multi_label=true on data.source=vader needs '
        f'data.sentiment_classes 2 or 3 (the perceived sentiments), not '
        f'{classes}')
  if data.rater_spread and config.task != 'regression':
    raise DataError('data.rater_spread=true is a second regression output: '
                    'it needs task=regression (data.sentiment_classes=0)')


def _vader_label(rating: float, ratings: Sequence[int], config: Config
                 ) -> Label | None:
  data = config.data
  if config.task == 'regression':
    return ((rating, statistics.pstdev(ratings)) if data.rater_spread
            else rating)
  if data.multi_label:
    return perceived_sentiments(ratings, data.sentiment_classes)
  return sentiment_label(rating, data.sentiment_classes)


def vader_examples(config: Config, split: str) -> Examples:
  """data.source='vader': a split's rated items, labelled by the config."""
  _check_vader(config)
  directory = os.path.join(corpus.data_root(config.data), VADER_SUBDIR)
  prepare_vader(vader_sdist_path(config), directory)
  texts, labels, origins = [], [], []
  for text, rating, origin, item_id, ratings in corpus.read_prepared(
      directory, split):
    label = _vader_label(float(rating), [int(r) for r in ratings.split()],
                         config)
    if label is not None:
      texts.append(text)
      labels.append(label)
      origins.append((origin, item_id))
  return Examples(texts, labels, origins)


# ---------------------------------------------------------------------------
# 'bible_genre': Bible verses labelled with their book's genre.
# ---------------------------------------------------------------------------

# (genre, first book, last book) in the order of bible.BOOKS.
GENRES = (
    ('law', 'Genesis', 'Deuteronomy'),
    ('history', 'Joshua', 'Esther'),
    ('wisdom', 'Job', 'Song of Solomon'),
    ('prophets', 'Isaiah', 'Malachi'),
    ('gospels', 'Matthew', 'John'),
    ('acts', 'Acts', 'Acts'),
    ('epistles', 'Romans', 'Jude'),
    ('apocalypse', 'Revelation of John', 'Revelation of John'),
)
BIBLE_GENRE_SUBDIR = 'bible_genre'
BIBLE_GENRE_FORMAT_VERSION = 1


def genre_of(book: str) -> str | None:
  """The genre of a book named as in bible.BOOKS; None for the
  deuterocanon."""
  index = bible.BOOKS.index(book)
  for genre, first, last in GENRES:
    if bible.BOOKS.index(first) <= index <= bible.BOOKS.index(last):
      return genre
  return None


def prepare_bible_genre(directory: str) -> dict:
  """Writes directory/{split}.tsv (book, chapter, verse, genre, text) and
  meta.json from the English module; returns the meta. Idempotent."""
  meta = corpus.read_meta(directory, BIBLE_GENRE_FORMAT_VERSION)
  if meta is not None:
    return meta
  try:
    verses = bible.read_module(bible.EN_MODULE)
  except bible.CorpusUnavailableError as error:
    raise DataError(f"data.source='bible_genre': {error}") from None
  genres = {book: genre_of(book) for book in bible.BOOKS}
  tables: dict[str, list[tuple]] = {s: [] for s in corpus.SPLITS}
  for (book, chapter, verse), text in verses.items():
    if genres[book] is not None:
      tables[bible.split_of(book, chapter)].append(
          (book, chapter, verse, genres[book], text))
  counts = {s: {g: sum(r[3] == g for r in rows) for g, _, _ in GENRES}
            for s, rows in tables.items()}
  meta = {'format_version': BIBLE_GENRE_FORMAT_VERSION,
          'module': bible.EN_MODULE, 'splits': counts}
  corpus.write_prepared(directory,
                        ('book', 'chapter', 'verse', 'genre', 'text'), tables,
                        meta)
  return meta


def bible_genre_examples(config: Config, split: str) -> Examples:
  """data.source='bible_genre': a split's verses and their genres."""
  _check_task(config, ('classification',))
  directory = os.path.join(corpus.data_root(config.data), BIBLE_GENRE_SUBDIR)
  prepare_bible_genre(directory)
  rows = corpus.read_prepared(directory, split)
  return Examples([r[4] for r in rows], [r[3] for r in rows],
                  [(r[0], int(r[1]), int(r[2])) for r in rows])


# ---------------------------------------------------------------------------
# 'tfds': TFDS classification sets.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TfdsSet:
  """A TFDS classification set: its text feature and which TFDS split is
  our test split ('valid' is always held out of TFDS's train split)."""
  text: str
  test: str
  module: str = ''  # to import so that TFDS knows the builder


TFDS_SETS = {
    'imdb_reviews': TfdsSet('text', 'test'),
    'imdb_reviews/plain_text': TfdsSet('text', 'test'),
    # GLUE's test labels are hidden (-1): its validation split is our test.
    'glue/sst2': TfdsSet('sentence', 'validation',
                         'tensorflow_datasets.text.glue'),
    'ag_news_subset': TfdsSet('description', 'test'),
}
_TFDS_SALT = 'tfds-valid-v1'
_TFDS_VALID_BUCKETS = 10  # bucket 0 of 10: ~10% of train held out


def tfds_held_out(count: int) -> np.ndarray:
  """Which of `count` training records are held out (bool), by a stable hash
  of the record index: the same on every machine."""
  return np.array([corpus.bucket(_TFDS_SALT, str(i), _TFDS_VALID_BUCKETS) == 0
                   for i in range(count)], bool)


class TfdsExamples(Sequence[Example]):
  """Records of a TFDS data source as (text, class name)."""

  def __init__(self, data_source, text_feature: str, names: list[str],
               indices: np.ndarray | None = None):
    self.data_source = data_source
    self.text_feature = text_feature
    self.names = list(names)
    self.indices = indices

  def __len__(self) -> int:
    return len(self.data_source if self.indices is None else self.indices)

  def __getitem__(self, index: int) -> Example:
    # Out of range must raise IndexError: iteration (Sequence.__iter__)
    # stops on it, and a data source may not check.
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f'record {index} out of range ({len(self)} records)')
    if self.indices is not None:
      index = self.indices[index]
    example = self.data_source[int(index)]
    text = example[self.text_feature]
    if isinstance(text, np.ndarray):
      text = text.item()
    if isinstance(text, bytes):
      text = text.decode('utf-8')
    label = int(example['label'])
    if not 0 <= label < len(self.names):
      raise DataError(f'record {int(index)} has label {label}: not one of the '
                      f'{len(self.names)} classes (an unlabelled split?)')
    return str(text), self.names[label]


def tfds_examples(config: Config, split: str) -> TfdsExamples:
  """data.source='tfds': a split of data.tfds_name."""
  _check_task(config, ('classification',))
  # An optional dependency, imported (slowly) only for data.source='tfds'.
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  name = config.data.tfds_name
  if name not in TFDS_SETS:
    raise DataError(f'data.tfds_name={name!r} is not a classification set '
                    'this loader knows: expected one of '
                    f'{", ".join(TFDS_SETS)}')
  spec = TFDS_SETS[name]
  if spec.module:
    importlib.import_module(spec.module)
  tfds_split = spec.test if split == 'test' else 'train'
  data_dir = (os.path.expanduser(config.data.tfds_data_dir)
              if config.data.tfds_data_dir else None)
  try:
    source = tfds.data_source(name, split=tfds_split, data_dir=data_dir,
                              download=False)
  except Exception as error:  # pylint: disable=broad-except
    # Missing data, a TFRecord-only preparation, a wrong version: tfds
    # raises several types; all mean "not usable as it is".
    message = str(error).split('\n', 1)[0]
    raise DataError(
        f'data.tfds_name={name!r} split {tfds_split!r} is not available as '
        f'ArrayRecord in {data_dir or "~/tensorflow_datasets"} '
        f'({type(error).__name__}: {message}). '
        + corpus.tfds_prepare_hint(name, config.data.tfds_data_dir)
    ) from None
  features = source.dataset_info.features
  if spec.text not in features or 'label' not in features or not hasattr(
      features['label'], 'names'):
    raise DataError(f'data.tfds_name={name!r}: expected features '
                    f'{spec.text!r} and a ClassLabel "label", got '
                    f'{", ".join(features.keys())}')
  names = features['label'].names
  if split == 'test':
    return TfdsExamples(source, spec.text, names)
  held_out = tfds_held_out(len(source))
  keep = held_out if split == 'valid' else ~held_out
  return TfdsExamples(source, spec.text, names, np.flatnonzero(keep))


# ---------------------------------------------------------------------------
# 'toy': a generated task for tests.
# ---------------------------------------------------------------------------

TOY_CLASSES = ('red', 'green', 'blue')
TOY_UP, TOY_DOWN = 'up', 'down'
# Words that carry no label: the translation toy's, minus the marker words.
TOY_FILLER = tuple(w for w in corpus.TOY_WORDS
                   if w not in TOY_CLASSES + (TOY_UP, TOY_DOWN))[:30]
TOY_LABELLED_SIZES = {'train': 5000, 'valid': 500, 'test': 500}
TOY_MIN_WORDS, TOY_MAX_WORDS = 4, 12
_TOY_SEEDS = {'train': 1, 'valid': 2, 'test': 3}
_TOY_TASK_SEEDS = {'classification': 1, 'regression': 2}


def _toy_classification(rng: np.random.Generator, length: int
                        ) -> tuple[list[str], str]:
  label = int(rng.integers(len(TOY_CLASSES)))
  wins = int(rng.integers(1, length + 1))
  # The other colours together stay below `wins`: a strict majority.
  others = int(rng.integers(0, min(wins - 1, length - wins) + 1))
  rest = [c for c in range(len(TOY_CLASSES)) if c != label]
  words = [TOY_CLASSES[label]] * wins + [
      TOY_CLASSES[rest[int(rng.integers(len(rest)))]] for _ in range(others)]
  words += [TOY_FILLER[int(i)] for i in
            rng.integers(len(TOY_FILLER), size=length - len(words))]
  return [words[int(i)] for i in rng.permutation(length)], TOY_CLASSES[label]


def _toy_regression(rng: np.random.Generator, length: int
                    ) -> tuple[list[str], float]:
  draws = rng.random(length)
  words = [TOY_UP if d < 0.25 else TOY_DOWN if d < 0.5 else
           TOY_FILLER[int(rng.integers(len(TOY_FILLER)))] for d in draws]
  return words, float(words.count(TOY_UP) - words.count(TOY_DOWN))


def toy_examples(split: str, task: str, size: int | None = None, *,
                 multi_label: bool = False) -> Examples:
  """The toy task's items of one split: the same on every call. Multi-label:
  the same texts, labelled with every colour they hold."""
  rng = np.random.default_rng([20_240_602, _TOY_TASK_SEEDS[task],
                               _TOY_SEEDS[split]])
  make = _toy_classification if task == 'classification' else _toy_regression
  texts, labels = [], []
  for _ in range(TOY_LABELLED_SIZES[split] if size is None else size):
    words, label = make(rng, int(rng.integers(TOY_MIN_WORDS,
                                              TOY_MAX_WORDS + 1)))
    texts.append(' '.join(words))
    labels.append(tuple(c for c in sorted(TOY_CLASSES) if c in words)
                  if multi_label else label)
  return Examples(texts, labels)
