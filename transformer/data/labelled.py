"""Labelled text for classification and regression: `load_split(config, split)`.

Every source returns a random-access, picklable sequence (`len`, `[i]`) of
`(text, label)` pairs: the label is the class name (str) for
`config.task='classification'`, a sorted tuple of names with
data.multi_label, a float for `'regression'` and a tuple of floats for
several regression targets. The caller builds the label vocabulary from the
training split. `data.source` picks:

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

'text'  The user's files in data.text_dir: train.tsv, train.csv or
    train.jsonl, and optionally valid.* and test.* in the same format. TSV
    and CSV start with a header row naming the columns; TSV rows are split on
    tabs with no quote processing (as GLUE's files are), CSV follows RFC 4180
    (Python's csv module: a quoted field may hold commas, quotes as "" and
    newlines); JSON Lines hold one object per line. The text is in column
    data.text_column, the label in data.label_column: a class name, or a
    number for regression; data.label_column='a,b' names several numeric
    columns, one regression output each. With data.multi_label the label
    field holds any number of class names separated by data.label_separator
    (',' by default; empty = no label), or a JSON list in JSON Lines.
    Files are never loaded whole: one pass checks
    every record (UTF-8, field count, label) and records where it starts, and
    records are then read by byte offset. Without valid.*, the training
    records whose text hashes to bucket 0 of 10 (~10%, deterministic,
    identical texts on the same side) are held out for validation and left
    out of training; without test.*, the test split is an error.

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

import array
import csv
import dataclasses
import functools
import io
import json
import math
import os
import statistics
import tarfile
import zlib
from typing import Any, Iterator, Sequence, Union

import numpy as np

from transformer.config import Config
from transformer.data import sources
from transformer.data.corpus import DataError, check_split
from transformer.data import corpus

# A class name (str), a set of them (multi-label: a sorted tuple of str), a
# regression target (float) or several (a tuple of float).
Label = Union[str, float, tuple[str, ...], tuple[float, ...]]
Example = tuple[str, Label]

TASKS = ('classification', 'regression')


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
  corpus.write_prepared(directory, ('text', 'rating', 'corpus', 'id', 'ratings'),
                  tables, meta)
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


def _vader(config: Config, split: str) -> Examples:
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
  from transformer.data import bible  # pylint: disable=import-outside-toplevel
  index = bible.BOOKS.index(book)
  for genre, first, last in GENRES:
    if bible.BOOKS.index(first) <= index <= bible.BOOKS.index(last):
      return genre
  return None


def prepare_bible_genre(directory: str) -> dict:
  """Writes directory/{split}.tsv (book, chapter, verse, genre, text) and
  meta.json from the English module; returns the meta. Idempotent."""
  from transformer.data import bible  # pylint: disable=import-outside-toplevel
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
  corpus.write_prepared(directory, ('book', 'chapter', 'verse', 'genre', 'text'),
                  tables, meta)
  return meta


def _bible_genre(config: Config, split: str) -> Examples:
  _check_task(config, ('classification',))
  directory = os.path.join(corpus.data_root(config.data), BIBLE_GENRE_SUBDIR)
  prepare_bible_genre(directory)
  rows = corpus.read_prepared(directory, split)
  return Examples([r[4] for r in rows], [r[3] for r in rows],
                  [(r[0], int(r[1]), int(r[2])) for r in rows])


# ---------------------------------------------------------------------------
# 'text': the user's TSV, CSV or JSON Lines files.
# ---------------------------------------------------------------------------

TEXT_FORMATS = ('tsv', 'csv', 'jsonl')
_HOLD_OUT_SALT = 'text-valid-v1'
_HOLD_OUT_BUCKETS = 10  # bucket 0 of 10: ~10% held out
_BOM = '\ufeff'
_announced: set[str] = set()  # directories whose hold-out was printed


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """What a label field holds: a class name, a set of class names
  (multi_label, separated by `separator`; a JSON list in JSON Lines), or
  numbers (regression), one per column of `columns`."""
  columns: tuple[str, ...]
  regression: bool = False
  multi_label: bool = False
  separator: str = ','

  @classmethod
  def of(cls, config: Config) -> 'LabelSpec':
    data = config.data
    columns = tuple(c.strip() for c in data.label_column.split(','))
    if not all(columns) or (len(columns) > 1 and config.task != 'regression'):
      raise DataError(
          f'data.label_column={data.label_column!r}: expected one column '
          'name, or for task=regression several separated by commas (one '
          'output each)')
    return cls(columns, config.task == 'regression', data.multi_label,
               data.label_separator)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where text and labels are in a file's records: column positions (TSV,
  CSV; `width` fields per row) or object keys (JSON Lines)."""
  fmt: str
  text: int | str
  labels: tuple[int | str, ...]
  width: int = 0


def _find_file(directory: str, split: str) -> tuple[str, str] | None:
  """(path, format) of split.{tsv,csv,jsonl} in `directory`, or None."""
  found = [(os.path.join(directory, f'{split}.{fmt}'), fmt)
           for fmt in TEXT_FORMATS
           if os.path.isfile(os.path.join(directory, f'{split}.{fmt}'))]
  if len(found) > 1:
    names = ' and '.join(os.path.basename(path) for path, _ in found)
    raise DataError(f'{directory} holds {names}: keep one {split} file (TSV, '
                    'CSV or JSON Lines)')
  return found[0] if found else None


def _decode(raw: bytes, path: str, line: int) -> str:
  try:
    return raw.decode('utf-8')
  except UnicodeDecodeError as error:
    raise DataError(
        f'{path}: line {line}: invalid UTF-8 ({error.reason} at byte '
        f'{error.start} of the line); text files must be UTF-8 encoded'
    ) from None


class _LineFeed:
  """Decoded lines of a binary file for csv.reader, counting lines and
  bytes. csv.reader takes one line at a time and no more than a record
  needs, so the offset before each record is where that record starts."""

  def __init__(self, f, path: str):
    self._f = f
    self._path = path
    self.offset = 0  # bytes consumed
    self.line = 0  # lines consumed

  def __iter__(self):
    return self

  def __next__(self) -> str:
    raw = self._f.readline()
    if not raw:
      raise StopIteration
    self.offset += len(raw)
    self.line += 1
    text = _decode(raw, self._path, self.line)
    return text[1:] if self.line == 1 and text.startswith(_BOM) else text


def _strip_newline(line: str) -> str:
  line = line[:-1] if line.endswith('\n') else line
  return line[:-1] if line.endswith('\r') else line


def _parse(data: str, fmt: str) -> Any:
  """One record's bytes, decoded, as a list of fields or a JSON value."""
  if fmt == 'tsv':
    return _strip_newline(data).split('\t')
  if fmt == 'csv':
    return next(csv.reader(io.StringIO(data, newline=''), strict=True))
  return json.loads(data)


def _scan(path: str, fmt: str) -> Iterator[tuple[int, int, int, Any]]:
  """(line number, start byte, end byte, parsed record) of each record of
  the file, the header included; empty lines are skipped."""
  with open(path, 'rb') as f:
    if fmt == 'csv':
      feed = _LineFeed(f, path)
      reader = csv.reader(feed, strict=True)
      while True:
        start, line = feed.offset, feed.line + 1
        try:
          row = next(reader)
        except StopIteration:
          return
        except csv.Error as error:
          raise DataError(
              f'{path}: line {line}: {error}. CSV follows RFC 4180: a field '
              'holding a comma, a double quote or a newline is enclosed in '
              'double quotes, and a quote inside it is doubled (""); an '
              'unclosed quote runs to the end of the file') from None
        if row:  # [] is an empty line
          yield line, start, feed.offset, row
      return
    offset = 0
    for line, raw in enumerate(f, 1):
      start, offset = offset, offset + len(raw)
      text = _decode(raw, path, line)
      if line == 1 and text.startswith(_BOM):
        start, text = start + len(_BOM.encode('utf-8')), text[1:]
      if fmt == 'tsv':
        if _strip_newline(text):
          yield line, start, offset, _parse(text, fmt)
      elif text.strip():
        try:
          record = json.loads(text)
        except ValueError as error:
          raise DataError(f'{path}: line {line}: not valid JSON ({error}); '
                          'JSON Lines files hold one JSON object per line'
                          ) from None
        yield line, start, offset, record


def _layout(path: str, fmt: str, header: list[str] | None,
            text_column: str, label_columns: tuple[str, ...]) -> Layout:
  if fmt == 'jsonl':
    return Layout(fmt, text_column, label_columns)
  names = [name.strip() for name in header]
  missing = [f'{name!r} (data.{key})' for name, key in
             ((text_column, 'text_column'),
              *((c, 'label_column') for c in label_columns))
             if name not in names]
  if missing:
    other = {'tsv': (',', 'CSV', 'csv'), 'csv': ('\t', 'TSV', 'tsv')}[fmt]
    hint = (f' It looks like {other[1]}: name the file .{other[2]}.'
            if len(names) == 1 and other[0] in names[0] else '')
    raise DataError(
        f'{path}: line 1: the header has no column {" and no ".join(missing)}'
        f'; its columns are {", ".join(map(repr, names))}. Name the columns '
        'with --set=data.text_column=NAME and --set=data.label_column=NAME.'
        + hint)
  return Layout(fmt, names.index(text_column),
                tuple(names.index(c) for c in label_columns), len(names))


def _label(value: Any, spec: LabelSpec, where: str, column: str) -> Label:
  if spec.regression:
    try:
      if isinstance(value, bool):
        raise ValueError
      number = float(value)
      if not math.isfinite(number):
        raise ValueError
      return number
    except (TypeError, ValueError):
      raise DataError(f'{where}: label {value!r} (column {column!r}) is not a '
                      'finite number, which task=regression needs') from None
  if spec.multi_label:
    return _label_set(value, spec.separator, where, column)
  if isinstance(value, (str, int)) and not isinstance(value, bool):
    if str(value).strip():
      return str(value).strip()
  raise DataError(f'{where}: label {value!r} (column {column!r}) is not a '
                  'class name: classification needs a non-empty string (or '
                  'an integer) per record')


def _label_set(value: Any, separator: str, where: str, column: str
               ) -> tuple[str, ...]:
  """A multi-label field -> its sorted distinct names; '' or [] is none."""
  if isinstance(value, str):
    names = [n.strip() for n in value.split(separator)] if value.strip() else []
  elif isinstance(value, list) and all(
      isinstance(n, (str, int)) and not isinstance(n, bool) for n in value):
    names = [str(n).strip() for n in value]
  else:
    names = None
  if names is None or not all(names):
    raise DataError(
        f'{where}: label {value!r} (column {column!r}) is not a set of class '
        f'names: data.multi_label=true needs names separated by '
        f'{separator!r} (data.label_separator), or a JSON list of names in '
        'JSON Lines; an empty field means no label')
  return tuple(sorted(set(names)))


def _example(record: Any, layout: Layout, spec: LabelSpec,
             where: str) -> Example:
  """(text, label) of one parsed record; DataError if it does not fit."""
  if layout.fmt == 'jsonl':
    if not isinstance(record, dict):
      raise DataError(f'{where}: expected a JSON object, got '
                      f'{type(record).__name__}')
    missing = [repr(k) for k in (layout.text, *layout.labels)
               if k not in record]
    if missing:
      raise DataError(
          f'{where}: the object has no key {" and no ".join(missing)}'
          f' (data.text_column={layout.text!r}, data.label_column='
          f'{",".join(layout.labels)!r}); its keys are '
          f'{", ".join(map(repr, record))}')
  elif len(record) != layout.width:
    quoting = ('fields are separated by tabs, with no quoting, so a text '
               'may not hold a tab' if layout.fmt == 'tsv' else
               'a field holding a comma must be enclosed in double quotes')
    raise DataError(f'{where}: {len(record)} fields, but the header (line 1) '
                    f'has {layout.width}; {layout.fmt.upper()} {quoting}')
  text = record[layout.text]
  if not isinstance(text, str) or not text.strip():
    raise DataError(f'{where}: the text (column {layout.text!r}) is '
                    f'{"empty" if isinstance(text, str) else repr(text)}: '
                    'every record needs a non-empty text')
  labels = tuple(_label(record[key], spec, where, column)
                 for key, column in zip(layout.labels, spec.columns))
  return text, labels[0] if len(labels) == 1 else labels


@dataclasses.dataclass
class FileIndex:
  """Where each record of a file starts and ends (bytes), and which ones
  fall in the held-out validation slice."""
  layout: Layout
  starts: np.ndarray  # int64
  ends: np.ndarray  # int64
  held_out: np.ndarray  # bool


def index_file(path: str, fmt: str, text_column: str, spec: LabelSpec
               ) -> FileIndex:
  """One pass over the file: checks every record, records its bytes."""
  records = _scan(path, fmt)
  header = None
  if fmt != 'jsonl':
    first = next(records, None)
    if first is None:
      raise DataError(f'{path}: empty file: expected a header row naming the '
                      f'columns ({text_column!r}, {spec.columns[0]!r}, ...) and '
                      'then one row per example')
    header = first[3]
  layout = _layout(path, fmt, header, text_column, spec.columns)
  starts, ends, held_out = array.array('q'), array.array('q'), bytearray()
  for line, start, end, record in records:
    text, _ = _example(record, layout, spec, f'{path}: line {line}')
    starts.append(start)
    ends.append(end)
    held_out.append(corpus.bucket(_HOLD_OUT_SALT, corpus.normalise(text),
                            _HOLD_OUT_BUCKETS) == 0)
  if not starts:
    raise DataError(f'{path}: no examples' +
                    (' after the header row' if header is not None else
                     ': expected one JSON object per line'))
  return FileIndex(layout, np.frombuffer(starts, np.int64).copy(),
                   np.frombuffer(ends, np.int64).copy(),
                   np.frombuffer(bytes(held_out), np.uint8).astype(bool))


@functools.lru_cache(maxsize=8)
def _cached_index(path: str, size: int, mtime_ns: int, fmt: str,
                  text_column: str, spec: LabelSpec) -> FileIndex:
  """index_file, once per process for train and the valid slice held out of
  it; size and mtime in the key, so a changed file is indexed again."""
  del size, mtime_ns  # only the cache key
  return index_file(path, fmt, text_column, spec)


class LabelledFile(Sequence[Example]):
  """Some records of an indexed file, read by byte offset with os.pread
  (thread-safe); picklable (the file is reopened after unpickling)."""

  def __init__(self, path: str, index: FileIndex, spec: LabelSpec,
               keep: np.ndarray | None = None):
    self.path = path
    self.layout = index.layout
    self.spec = spec
    self._starts = index.starts if keep is None else index.starts[keep]
    self._ends = index.ends if keep is None else index.ends[keep]
    self._file = corpus.ByteRanges(path)

  def __len__(self) -> int:
    return len(self._starts)

  def __getitem__(self, index: int) -> Example:
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f'record {index} out of range for {self.path} '
                       f'({len(self)} records)')
    start, end = int(self._starts[index]), int(self._ends[index])
    data = self._file.read(start, end).decode('utf-8')
    where = f'{self.path}: byte {start} (changed since it was indexed?)'
    return _example(_parse(data, self.layout.fmt), self.layout,
                    self.spec, where)



def _text_files(config: Config) -> tuple[str, dict[str, tuple[str, str]]]:
  """The directory and {split: (path, format)} of the files present."""
  data = config.data
  if not data.text_dir:
    raise DataError(
        "data.source='text' needs data.text_dir: a directory holding "
        'train.tsv, train.csv or train.jsonl (and optionally valid.* and '
        f'test.* in the same format) with columns {data.text_column!r} '
        f'(data.text_column) and {data.label_column!r} (data.label_column)')
  directory = os.path.expanduser(data.text_dir)
  if not os.path.isdir(directory):
    raise DataError(f'data.text_dir={data.text_dir!r} is not a directory')
  files = {s: f for s in corpus.SPLITS
           if (f := _find_file(directory, s)) is not None}
  if 'train' not in files:
    raise DataError(
        f'{directory}: no training file: expected train.tsv, train.csv or '
        f'train.jsonl (data.text_dir={data.text_dir!r})')
  train_fmt = files['train'][1]
  for split, (path, fmt) in files.items():
    if fmt != train_fmt:
      raise DataError(f'{path}: expected {split}.{train_fmt}, the format of '
                      f'train.{train_fmt}: all splits use one format')
  return directory, files


def _text(config: Config, split: str) -> LabelledFile:
  directory, files = _text_files(config)
  spec = LabelSpec.of(config)
  train_fmt = files['train'][1]
  if split == 'test' and 'test' not in files:
    raise DataError(
        f'{directory} has no test.{train_fmt}: the test split needs one, in '
        f'the format of train.{train_fmt}; without it, skip the final test '
        'evaluation (--set=eval.final=false) and evaluate on valid '
        '(eval.split)')
  holding_out = 'valid' not in files and split in ('train', 'valid')
  path, fmt = files['train' if holding_out else split]
  stat = os.stat(path)
  index = _cached_index(path, stat.st_size, stat.st_mtime_ns, fmt,
                        config.data.text_column, spec)
  if not holding_out:
    return LabelledFile(path, index, spec)
  held = int(index.held_out.sum())
  if held == 0 or held == len(index.held_out):
    raise DataError(
        f'{path} has {len(index.held_out)} records, too few to hold out ~10% '
        f'for validation: add a valid.{fmt} file')
  if directory not in _announced:
    _announced.add(directory)
    print(f'data: no valid.{fmt} in {directory}: holding out {held:,} of '
          f'{len(index.held_out):,} records of train.{fmt} for validation '
          '(~10%, by a hash of the text); training uses the others')
  keep = index.held_out if split == 'valid' else ~index.held_out
  return LabelledFile(path, index, spec, keep)


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


def _tfds(config: Config, split: str) -> TfdsExamples:
  _check_task(config, ('classification',))
  import importlib  # pylint: disable=import-outside-toplevel
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
TOY_FILLER = tuple(w for w in sources.TOY_WORDS
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


# ---------------------------------------------------------------------------
# The interface.
# ---------------------------------------------------------------------------

_LOADERS = {
    'vader': _vader,
    'bible_genre': _bible_genre,
    'text': _text,
    'tfds': _tfds,
    'toy': lambda config, split: toy_examples(
        split, config.task, multi_label=config.data.multi_label),
}
# The sources whose labels may be sets (data.multi_label).
MULTI_LABEL_SOURCES = ('vader', 'text', 'toy')


def load_split(config: Config, split: str) -> Sequence[Example]:
  """The (text, label) pairs of one split of `config.data.source`.

  Args:
    config: the whole config; `task` says whether labels are class names
      ('classification') or floats ('regression').
    split: 'train', 'valid' or 'test'.
  Returns:
    A random-access sequence (len, [i]) of (str, str | float), picklable.
  Raises:
    DataError: the data is missing or malformed, or does not fit the task.
  """
  check_split(split)
  if config.task not in TASKS:
    raise DataError(f'task={config.task!r} has no labelled data: '
                    'transformer/data/labelled.py serves '
                    f'{" and ".join(TASKS)}')
  if config.data.source not in _LOADERS:
    raise DataError(
        f'data.source={config.data.source!r} is not a source of labelled '
        f'text: expected one of {", ".join(_LOADERS)}')
  if config.data.multi_label and (config.task != 'classification' or
                                  config.data.source not in
                                  MULTI_LABEL_SOURCES):
    raise DataError(
        f'data.multi_label=true (task={config.task}, data.source='
        f'{config.data.source}): sets of labels are for task=classification '
        f'with data.source {", ".join(MULTI_LABEL_SOURCES)}')
  return _LOADERS[config.data.source](config, split)


def describe(config: Config) -> str:
  """One line naming the data set, for logs."""
  data = config.data
  if data.source == 'vader':
    labels = ('the mean rating (-4..4)' if data.sentiment_classes == 0 else
              f'{data.sentiment_classes} classes of the mean rating')
    if data.rater_spread:
      labels += " and the raters' standard deviation"
    if data.multi_label:
      labels = (f'the sentiments that at least {PERCEIVED_SHARE:.0%} of the '
                'raters gave (multi-label)')
    return ('VADER human-rated sentiment (Hutto & Gilbert, ICWSM 2014; '
            f'tweets, movie and Amazon reviews, NYT editorials): {labels}')
  if data.source == 'bible_genre':
    return (f'Bible verses (World English Bible) labelled with their book\'s '
            f'genre ({len(GENRES)} classes), split by chapter')
  if data.source == 'text':
    return (f'labelled text files in {data.text_dir or "(no data.text_dir)"} '
            f'(text column {data.text_column!r}, label {data.label_column!r})')
  if data.source == 'tfds':
    spec = TFDS_SETS.get(data.tfds_name)
    test = f', test = its {spec.test} split' if spec else ''
    return (f'TFDS {data.tfds_name} (valid = ~10% held out of train{test})')
  if data.source == 'toy':
    if data.multi_label:
      return 'toy multi-label: the colour words (of 3) in the text'
    return ('toy classification: the majority colour word of 3' if
            config.task == 'classification' else
            'toy regression: count of "up" minus count of "down"')
  return f'data.source={data.source!r}'
