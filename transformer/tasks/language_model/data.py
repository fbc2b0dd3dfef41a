"""Documents and batches of the language model (task=language_model).

`load_documents(config, split)` returns a random-access, picklable sequence
(`len`, `[i]`) of documents (str) of one split, by `config.data.source`:

'bible'  The English (data.language='en': the World English Bible, SWORD
    module engWEB2015eb, deuterocanon included) or Spanish ('es': Reina-Valera
    1909, spaRV1909eb) Bible, read with diatheke as transformer/data/bible.py
    does. One document per chapter: its verses in order, joined with '\n' (the
    verse structure stays, and a model can learn to write line breaks).
    Chapters go to splits by `bible.split_of(book, chapter)`, exactly as in
    the translation and genre corpora, so no chapter tested there or here is
    ever trained on. All verses of the module are used (the translation
    corpus keeps only those aligned across the two languages). Prepared once
    (one diatheke pass, seconds) into DATA_ROOT/bible_lm_LANG/ (DATA_ROOT =
    data.data_dir or ~/.cache/transformer). data.documents is not used.

'text'  The user's files in data.text_dir: train.txt, optionally valid.txt
    and test.txt, in data.encoding (UTF-8 by default, where a byte-order mark
    is accepted; '\r\n' line ends are). Never loaded whole: one pass indexes
    the lines and checks that they decode (corpus.TextLines), a second finds
    the blank lines (only ASCII whitespace), and documents are then read by
    byte offset. data.documents:
      'stream'      the file is one running text. Its documents are chunks of
                    about STREAM_CHUNK_BYTES (16 KiB, cut at a line start, or
                    inside a longer line at a character boundary; in
                    multi-byte encodings other than UTF-8, such as
                    shift_jis, only at line starts) that the
                    pipeline concatenates with no EOS between or after them
                    and cuts into rows of exactly data.max_length tokens;
                    '\r\n' becomes '\n'. Every character of the file is kept.
      'paragraphs'  runs of non-blank lines, separated by one or more blank
                    lines; a document's lines are joined with '\n'.
      'lines'       every non-blank line is a document.
    Without valid.txt, ~10% of train.txt is held out for validation (and left
    out of training), printed once: for 'stream' the last 10% of the file
    (from the first line start after 90% of its bytes), otherwise the
    documents whose normalised text (corpus.normalise) hashes to bucket 0
    of 10, so repeated documents stay on one side. Without test.txt, the
    test split is a DataError.

'tfds'  TFDS lm1b (data.tfds_name='lm1b': 30M news sentences, one document
    each), read with `tfds.data_source` from prepared ArrayRecord files (never
    downloaded at run time). 'valid' is ~10% of TFDS's train split held out
    by a stable hash of the record index (`tfds_held_out`), 'train' the rest;
    'test' is TFDS's test split.

'toy'  A generated corpus for tests, the same on every call: documents of one
    to four lines, each line counting up in English number words from a
    random start ("four five six seven"). Learnable by a tiny model: only the
    first word of a line and the lengths are random.

Tokens. A document is `tokenizer.encode(text) + [EOS_ID]`: EOS ends it (no
BOS: the model feeds shift_right(targets), with BOS where the position is 0;
the masked LM, which reuses this pipeline, puts BOS first: bos=True).
In 'stream' mode there is no EOS at all. A document longer than
data.max_length tokens is cut into consecutive pieces of max_length tokens
(no token dropped); each piece starts again at position 0, since the model
sees each row on its own and a piece cannot attend to the previous one.

Training (`train_dataset`), one grain pipeline per data shard (data/
grain_utils.py), as translation's pipeline:
  documents -> shard s of data.shards: documents[s::shards]
  -> global shuffle with config.seed, a new order every epoch; repeat
  -> tokenize (+ EOS) -> pieces of at most max_length tokens
  -> grain's first-fit packer: several pieces per row, kept apart by the
     segmentation (data.pack=false: one piece per row; 'stream': grain's
     concat-then-split instead, rows of exactly max_length tokens and one
     segment per row)
  -> batch: dicts of int32 [batch_size // process_count, max_length] with
     the keys of BATCH_KEYS.
The iterator is checkpointable: get_state() is JSON-serialisable and
set_state() on a fresh iterator continues exactly. Reading and tokenizing
run in the calling process (data.worker_count is not used, as in the
labelled pipeline).

Evaluation (`eval_batches`) covers every token of the split exactly once, in
corpus order, for exact perplexity: pieces are placed into rows in order
(first fit among the last EVAL_OPEN_ROWS rows), 'stream' text is cut into
consecutive rows. Batches carry 'weights' (1.0 on real tokens).

Characters (`eval_text_size`), the denominator of bits per character: each
document's characters plus one for its end, which EOS predicts as a newline
would ('lines': exactly the characters of the file's non-blank lines with
their newlines); in 'stream' mode the characters of the text, no more. Bytes
are counted the same way in UTF-8, whatever data.encoding the files are in,
so that bits per byte compare across encodings and corpora.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import grain
import numpy as np

from transformer.config import BOS_ID, EOS_ID, PAD_ID, Config
from transformer.data import bible, corpus, grain_utils
from transformer.data.corpus import DataError

SOURCES = ('bible', 'text', 'tfds', 'toy')
# Training batches; positions and segmentation are named as the model's
# arguments. Evaluation batches add 'weights'.
BATCH_KEYS = ('targets', 'targets_positions', 'targets_segmentation')
EVAL_KEYS = BATCH_KEYS + ('weights',)
# Evaluation packing: a piece goes into the first of this many most recent
# rows with room for it (bounded, so that packing stays linear).
EVAL_OPEN_ROWS = 64


def _position(index: int, length: int, what: str) -> int:
  """index (negative from the end) checked against length: IndexError out
  of range, which also ends iteration (Sequence.__iter__)."""
  if index < 0:
    index += length
  if not 0 <= index < length:
    raise IndexError(f'{what} {index} out of range ({length})')
  return index


class Documents(Sequence[str]):
  """Texts held in memory, with an optional origin each (a Bible chapter's
  (book, chapter))."""

  def __init__(self, texts: list[str], origins: list[Any] | None = None):
    self.texts = texts
    self.origins = origins

  def __len__(self) -> int:
    return len(self.texts)

  def __getitem__(self, index: int) -> str:
    return self.texts[index]

  def origin(self, index: int) -> Any:
    return None if self.origins is None else self.origins[index]


def is_stream(config: Config) -> bool:
  """Whether the split is one running text (users' files,
  data.documents='stream'): no EOS, rows cut at max_length."""
  return config.data.source == 'text' and config.data.documents == 'stream'


# ---------------------------------------------------------------------------
# 'bible': one document per chapter.
# ---------------------------------------------------------------------------

BIBLE_LM_SUBDIR = 'bible_lm_{language}'
# Bump when the text or the split changes: the prepared files are rebuilt.
BIBLE_LM_FORMAT_VERSION = 1


def bible_modules() -> dict[str, str]:
  return {'en': bible.EN_MODULE, 'es': bible.ES_MODULE}


def prepare_bible(directory: str, language: str) -> dict:
  """Writes directory/{split}.tsv (book, chapter, verse, text) and meta.json
  from the language's module; returns the meta. Idempotent."""
  meta = corpus.read_meta(directory, BIBLE_LM_FORMAT_VERSION)
  if meta is not None:
    return meta
  module = bible_modules()[language]
  try:
    verses = bible.read_module(module)
  except bible.CorpusUnavailableError as error:
    raise DataError(f"data.source='bible': {error}") from None
  order = {book: i for i, book in enumerate(bible.BOOKS)}
  tables: dict[str, list[tuple]] = {s: [] for s in corpus.SPLITS}
  for book, chapter, verse in sorted(verses, key=lambda k: (order[k[0]],
                                                             k[1], k[2])):
    tables[bible.split_of(book, chapter)].append(
        (book, chapter, verse, verses[(book, chapter, verse)]))
  meta = {'format_version': BIBLE_LM_FORMAT_VERSION, 'module': module,
          'language': language,
          'chapters': {s: len({r[:2] for r in rows})
                       for s, rows in tables.items()},
          'verses': {s: len(rows) for s, rows in tables.items()}}
  corpus.write_prepared(directory, ('book', 'chapter', 'verse', 'text'),
                        tables, meta)
  return meta


def _bible(config: Config, split: str) -> Documents:
  language = config.data.language
  if language not in bible_modules():
    raise DataError(f"data.language={language!r}: data.source='bible' has "
                    f'the {" and ".join(map(repr, bible_modules()))} Bibles')
  directory = os.path.join(corpus.data_root(config.data),
                           BIBLE_LM_SUBDIR.format(language=language))
  prepare_bible(directory, language)
  chapters: dict[tuple[str, int], list[str]] = {}
  for book, chapter, _, text in corpus.read_prepared(directory, split):
    chapters.setdefault((book, int(chapter)), []).append(text)
  return Documents(['\n'.join(v) for v in chapters.values()], list(chapters))


# ---------------------------------------------------------------------------
# 'text': the user's train.txt, valid.txt, test.txt.
# ---------------------------------------------------------------------------

TEXT_DOCUMENTS = ('stream', 'paragraphs', 'lines')
STREAM_CHUNK_BYTES = 16 << 10
_WHITESPACE = np.frombuffer(b' \t\n\r\x0b\x0c', np.uint8)
_BLANK_BLOCK = 16 << 20  # bytes read at a time while finding blank lines
_HOLD_OUT_SALT = 'lm-text-valid-v1'
_HOLD_OUT_BUCKETS = 10  # bucket 0 of 10: ~10% held out
_HOLD_OUT_STREAM = 0.9  # 'stream': the last 10% of the file
_announced: set[str] = set()  # files whose hold-out was printed


class TextDocuments(Sequence[str]):
  """Documents of a text file in `encoding`, read by byte range with
  os.pread (thread-safe); picklable (the file is reopened after
  unpickling). stream: '\\r\\n' -> '\\n' and nothing else; otherwise the
  lines of the range, each without its '\\r', joined with '\\n'."""

  def __init__(self, path: str, starts: np.ndarray, ends: np.ndarray,
               stream: bool, encoding: str = 'utf-8'):
    self.path = path
    self.starts, self.ends = starts, ends
    self.stream = stream
    self.encoding = encoding
    self._file = corpus.ByteRanges(path)

  def __len__(self) -> int:
    return len(self.starts)

  def __getitem__(self, index: int) -> str:
    index = _position(index, len(self), f'{self.path}: document')
    text = self._file.read(int(self.starts[index]),
                           int(self.ends[index])).decode(self.encoding)
    if self.stream:
      return text.replace('\r\n', '\n')
    lines = text.split('\n')
    if lines[-1] == '':
      lines.pop()
    return '\n'.join(line.removesuffix('\r') for line in lines)


def _line_offsets(path: str, encoding: str) -> np.ndarray:
  """offsets[i]: where line i starts (after a UTF-8 byte-order mark for
  line 0), offsets[-1]: the end of the file. DataError on bytes that do not
  decode in `encoding` (file, line)."""
  offsets = corpus.TextLines(path, encoding).offsets.copy()
  if corpus.encoding_kind(encoding) == 'utf-8':
    with open(path, 'rb') as f:
      if f.read(len(corpus.UTF8_BOM)) == corpus.UTF8_BOM:
        offsets[0] = len(corpus.UTF8_BOM)
  return offsets


def _blank_lines(file: corpus.ByteRanges, offsets: np.ndarray) -> np.ndarray:
  """Whether each line holds only ASCII whitespace; blocks of whole lines of
  about _BLANK_BLOCK bytes are read at a time."""
  lines = len(offsets) - 1
  blank = np.zeros(lines, bool)
  i = 0
  while i < lines:
    j = int(np.searchsorted(offsets, offsets[i] + _BLANK_BLOCK, 'right')) - 1
    j = min(max(j, i + 1), lines)
    data = np.frombuffer(file.read(int(offsets[i]), int(offsets[j])), np.uint8)
    ink = np.concatenate([[0], np.cumsum(~np.isin(data, _WHITESPACE))])
    ends = offsets[i:j + 1] - offsets[i]
    blank[i:j] = ink[ends[1:]] == ink[ends[:-1]]
    i = j
  return blank


def _cut(file: corpus.ByteRanges, line_starts: np.ndarray, position: int,
         end: int, window: int, encoding: str) -> int:
  """The first line start in [position, position + window), or else the
  first character start at or after `position` (inside a long line). In a
  multi-byte encoding other than UTF-8 only line starts are known to start
  characters: the first line start after `position`, or `end`."""
  i = int(np.searchsorted(line_starts, position))
  kind = corpus.encoding_kind(encoding)
  if kind == 'multi':
    window = end - position
  if i < len(line_starts) and line_starts[i] < min(position + window, end):
    return int(line_starts[i])
  if kind == 'single':  # every byte is a character
    return position
  if kind == 'multi':  # no line start before the end
    return end
  data = file.read(position, min(position + 4, end))
  skip = 0
  while skip < len(data) and data[skip] & 0xC0 == 0x80:  # continuation byte
    skip += 1
  return position + skip


def _chunks(file: corpus.ByteRanges, line_starts: np.ndarray, start: int,
            end: int, encoding: str) -> list[tuple[int, int]]:
  """[start, end) cut into byte ranges of STREAM_CHUNK_BYTES to twice that
  (the last may be shorter), at line starts where possible (multi-byte
  encodings other than UTF-8: always, so a range may be longer)."""
  bounds = [start]
  while end - bounds[-1] > STREAM_CHUNK_BYTES:
    cut = _cut(file, line_starts, bounds[-1] + STREAM_CHUNK_BYTES, end,
               STREAM_CHUNK_BYTES, encoding)
    if cut >= end:
      break
    bounds.append(cut)
  bounds.append(end)
  return list(zip(bounds[:-1], bounds[1:]))


@dataclasses.dataclass
class TextIndex:
  """Byte ranges of a file's documents, and which are held out (or None
  when nothing is)."""
  starts: np.ndarray  # int64
  ends: np.ndarray  # int64
  held_out: np.ndarray | None  # bool


def index_text(path: str, documents: str, hold_out: bool,
               encoding: str = 'utf-8') -> TextIndex:
  """The documents of `path` (see the module docstring), a text in
  `encoding`; hold_out: also choose the ~10% held out for validation."""
  offsets = _line_offsets(path, encoding)
  file = corpus.ByteRanges(path)
  nonblank = ~_blank_lines(file, offsets)
  if not nonblank.any():
    raise DataError(f'{path}: empty file: a language model needs text; '
                    'it holds no non-blank line')
  if documents == 'stream':
    start, end = int(offsets[0]), int(offsets[-1])
    cut = end
    if hold_out:
      position = start + int(_HOLD_OUT_STREAM * (end - start))
      cut = _cut(file, offsets[:-1], position, end, end - position,
                 encoding)
    ranges = _chunks(file, offsets[:-1], start, cut, encoding) + (
        _chunks(file, offsets[:-1], cut, end, encoding) if cut < end else [])
    starts, ends = (np.array(r, np.int64) for r in zip(*ranges))
    held = starts >= cut if hold_out else None
    return TextIndex(starts, ends, held)
  if documents == 'lines':
    first = np.flatnonzero(nonblank)
    last = first + 1
  else:  # paragraphs: runs of non-blank lines
    before = np.concatenate([[False], nonblank[:-1]])
    after = np.concatenate([nonblank[1:], [False]])
    first = np.flatnonzero(nonblank & ~before)
    last = np.flatnonzero(nonblank & ~after) + 1
  index = TextIndex(offsets[first], offsets[last], None)
  if hold_out:
    texts = TextDocuments(path, index.starts, index.ends, stream=False,
                          encoding=encoding)
    index.held_out = np.array(
        [corpus.bucket(_HOLD_OUT_SALT, corpus.normalise(t),
                       _HOLD_OUT_BUCKETS) == 0 for t in texts], bool)
  return index


@functools.lru_cache(maxsize=8)
def _cached_index(path: str, size: int, mtime_ns: int, documents: str,
                  hold_out: bool, encoding: str) -> TextIndex:
  """index_text once per process for train and the slice held out of it;
  size and mtime in the key, so a changed file is indexed again, and the
  encoding, since the same bytes decode to other texts (and hold-outs)."""
  del size, mtime_ns  # only the cache key
  return index_text(path, documents, hold_out, encoding)


def missing_split(config: Config, split: str) -> str | None:
  """'text': test.txt is optional; the message when it is absent."""
  data = config.data
  if data.source != 'text' or split != 'test' or not data.text_dir:
    return None
  path = os.path.join(os.path.expanduser(data.text_dir), 'test.txt')
  return None if os.path.isfile(path) else f'{path}: file not found'


def _text(config: Config, split: str) -> TextDocuments:
  data = config.data
  if not data.text_dir:
    raise DataError(
        "data.source='text' needs data.text_dir: a directory holding "
        'train.txt (and optionally valid.txt and test.txt), text in '
        f'data.encoding={data.encoding!r}; '
        f'data.documents={data.documents!r} says what a document is '
        f'({", ".join(TEXT_DOCUMENTS)})')
  if data.documents not in TEXT_DOCUMENTS:
    raise DataError(f'data.documents={data.documents!r}: expected one of '
                    f'{", ".join(TEXT_DOCUMENTS)}')
  directory = os.path.expanduser(data.text_dir)
  if not os.path.isdir(directory):
    raise DataError(f'data.text_dir={data.text_dir!r} is not a directory')
  files = {s: os.path.join(directory, f'{s}.txt') for s in corpus.SPLITS}
  if not os.path.isfile(files['train']):
    raise DataError(f'{files["train"]}: file not found: data.source=\'text\''
                    ' reads train.txt (and optionally valid.txt, test.txt) '
                    f'from data.text_dir={data.text_dir!r}')
  if split == 'test' and not os.path.isfile(files['test']):
    raise DataError(
        f'{files["test"]}: file not found: the test split needs test.txt '
        '(in data.encoding, like train.txt); without it, skip the final test '
        'evaluation '
        '(--set=eval.final=false) and evaluate on valid (eval.split)')
  holding_out = (split in ('train', 'valid') and
                 not os.path.isfile(files['valid']))
  path = files['train' if holding_out else split]
  stat = os.stat(path)
  index = _cached_index(path, stat.st_size, stat.st_mtime_ns, data.documents,
                        holding_out, data.encoding)
  stream = data.documents == 'stream'
  if not holding_out:
    return TextDocuments(path, index.starts, index.ends, stream,
                         data.encoding)
  held = int(index.held_out.sum())
  if held == 0 or held == len(index.held_out):
    raise DataError(f'{path} is too small to hold out ~10% for validation '
                    f'({len(index.held_out)} documents, data.documents='
                    f'{data.documents!r}): add a valid.txt file')
  if path not in _announced:
    _announced.add(path)
    how = ('the last 10% of the text' if stream else
           f'{held:,} of {len(index.held_out):,} documents (~10%, by a hash '
           'of the text)')
    print(f'data: no valid.txt in {directory}: holding out {how} of '
          'train.txt for validation; training uses the rest')
  keep = index.held_out if split == 'valid' else ~index.held_out
  return TextDocuments(path, index.starts[keep], index.ends[keep], stream,
                       data.encoding)


# ---------------------------------------------------------------------------
# 'tfds': lm1b.
# ---------------------------------------------------------------------------

# TFDS sets of plain text -> their text feature.
TFDS_SETS = {'lm1b': 'text'}
_TFDS_VALID_BUCKETS = 10  # bucket 0 of 10: ~10% of train held out


def tfds_held_out(count: int) -> np.ndarray:
  """Which of `count` training records are held out for validation (bool):
  bucket 0 of 10 of a stable hash (splitmix64) of the record index, the
  same on every machine. Vectorised: lm1b's train split has 30M records."""
  z = np.arange(count, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  z ^= z >> np.uint64(31)
  return z % np.uint64(_TFDS_VALID_BUCKETS) == 0


class TfdsDocuments(Sequence[str]):
  """The text feature of a TFDS data source's records (some of them)."""

  def __init__(self, data_source, feature: str,
               indices: np.ndarray | None = None):
    self.data_source = data_source
    self.feature = feature
    self.indices = indices

  def __len__(self) -> int:
    return len(self.data_source if self.indices is None else self.indices)

  def __getitem__(self, index: int) -> str:
    # A data source may not check the index.
    index = _position(index, len(self), 'record')
    if self.indices is not None:
      index = self.indices[index]
    return corpus.tfds_text(self.data_source[int(index)][self.feature])


def _tfds(config: Config, split: str) -> TfdsDocuments:
  # Here, not at the top: importing TFDS takes seconds, and only this
  # source needs it.
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  name = config.data.tfds_name
  if name not in TFDS_SETS:
    raise DataError(f'data.tfds_name={name!r} is not a text set for '
                    'task=language_model: expected one of '
                    f'{", ".join(TFDS_SETS)} (--set=data.tfds_name=lm1b)')
  tfds_split = 'test' if split == 'test' else 'train'
  data_dir = config.data.tfds_data_dir
  try:
    source = tfds.data_source(name, split=tfds_split, download=False,
                              data_dir=os.path.expanduser(data_dir) or None)
  except Exception as error:  # pylint: disable=broad-except
    # Missing data, a TFRecord-only preparation, a wrong version: tfds
    # raises several types; all mean "not usable as it is".
    raise DataError(
        f'data.tfds_name={name!r} split {tfds_split!r} is not available as '
        f'ArrayRecord in {data_dir or "~/tensorflow_datasets"} '
        f'({type(error).__name__}: {str(error).splitlines()[0]}). '
        + corpus.tfds_prepare_hint(name, data_dir)) from None
  if split == 'test':
    return TfdsDocuments(source, TFDS_SETS[name])
  held_out = tfds_held_out(len(source))
  keep = held_out if split == 'valid' else ~held_out
  indices = np.flatnonzero(keep)  # int32 where it fits: lm1b has 30M
  if len(keep) < 2**31:
    indices = indices.astype(np.int32)
  return TfdsDocuments(source, TFDS_SETS[name], indices)


# ---------------------------------------------------------------------------
# 'toy': counting in words.
# ---------------------------------------------------------------------------

TOY_NUMBERS = ('zero one two three four five six seven eight nine ten eleven '
               'twelve thirteen fourteen fifteen sixteen seventeen eighteen '
               'nineteen twenty').split()
TOY_DOCUMENTS = {'train': 3000, 'valid': 300, 'test': 300}
TOY_LINES = (1, 4)  # lines per document
TOY_WORDS = (2, 6)  # words per line
_TOY_SEEDS = {'train': 1, 'valid': 2, 'test': 3}


def toy_documents(split: str, size: int | None = None) -> Documents:
  """Documents of 1-4 lines, each counting up 2-6 number words from a
  random start; the same on every call."""
  rng = np.random.default_rng([20_240_615, _TOY_SEEDS[split]])
  texts = []
  for _ in range(TOY_DOCUMENTS[split] if size is None else size):
    lines = []
    for _ in range(int(rng.integers(TOY_LINES[0], TOY_LINES[1] + 1))):
      length = int(rng.integers(TOY_WORDS[0], TOY_WORDS[1] + 1))
      start = int(rng.integers(0, len(TOY_NUMBERS) - length + 1))
      lines.append(' '.join(TOY_NUMBERS[start:start + length]))
    texts.append('\n'.join(lines))
  return Documents(texts)


# ---------------------------------------------------------------------------
# The interface.
# ---------------------------------------------------------------------------

_LOADERS = {'bible': _bible, 'text': _text, 'tfds': _tfds,
            'toy': lambda config, split: toy_documents(split)}


def load_documents(config: Config, split: str) -> Sequence[str]:
  """The documents (str) of one split of config.data.source (see the module
  docstring): random access, picklable. DataError if the data is missing or
  malformed, naming the file, line or setting at fault."""
  corpus.check_split(split)
  if config.data.source not in _LOADERS:
    raise DataError(f'data.source={config.data.source!r} has no text for '
                    f'task=language_model: expected one of '
                    f'{", ".join(_LOADERS)}')
  return _LOADERS[config.data.source](config, split)


def describe(config: Config) -> str:
  """One line naming the text, for logs."""
  data = config.data
  if data.source == 'bible':
    return (f'the {data.language!r} Bible (SWORD module '
            f'{bible_modules().get(data.language, "?")}), one document per '
            'chapter, split by chapter as the translation corpus')
  if data.source == 'text':
    return (f'text files in {data.text_dir or "(no data.text_dir)"}, '
            f'data.documents={data.documents!r}')
  if data.source == 'tfds':
    return f'TFDS {data.tfds_name} (valid = ~10% held out of train)'
  return f'data.source={data.source!r}'


def document_ids(tokenizer, text: str, stream: bool,
                 bos: bool = False) -> np.ndarray:
  """int32 token ids of one document: its pieces, then EOS unless stream;
  bos (and not stream): BOS first (a masked LM's [CLS])."""
  ids = tokenizer.encode(text)
  if stream:
    return np.asarray(ids, np.int32)
  return np.asarray([BOS_ID] * bos + ids + [EOS_ID], np.int32)


def pieces(ids: np.ndarray, max_length: int) -> list[np.ndarray]:
  """ids cut into consecutive pieces of max_length (the last shorter)."""
  return [ids[i:i + max_length] for i in range(0, len(ids), max_length)]


def tokenizer_corpus(config: Config, documents: Sequence[str] | None = None
                     ) -> Sequence[tuple[str, ...]]:
  """The training split (or `documents`) as tokenizer.load_or_train wants
  it: for data.tokenizer='char' each document whole (1-tuples), so that
  its newlines are counted; for SentencePiece its lines (a tuple per
  document), since SentencePiece trains on sentences."""
  if documents is None:
    documents = load_documents(config, 'train')
  return _CorpusTexts(documents, lines=config.data.tokenizer != 'char')


class _CorpusTexts(Sequence[tuple[str, ...]]):

  def __init__(self, documents: Sequence[str], lines: bool):
    self.documents, self.lines = documents, lines

  def __len__(self) -> int:
    return len(self.documents)

  def __getitem__(self, index: int) -> tuple[str, ...]:
    text = self.documents[index]
    return tuple(text.split('\n')) if self.lines else (text,)


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Encode(grain.transforms.Map):
  tokenizer: Any
  stream: bool
  bos: bool = False

  def map(self, text):
    return {'targets': document_ids(self.tokenizer, text, self.stream,
                                    self.bos)}


@dataclasses.dataclass(frozen=True)
class _Pieces(grain.experimental.FlatMapTransform):
  max_length: int
  max_fan_out: int = 1 << 30  # not enforced by FlatMapIterDataset

  def flat_map(self, element):
    return [{'targets': p} for p in pieces(element['targets'],
                                           self.max_length)]


class _Rows(grain.transforms.Map):
  """grain's packer names -> BATCH_KEYS."""

  def map(self, row):
    return {'targets': row['targets'],
            'targets_positions': row['targets_positions'],
            'targets_segmentation': row['targets_segment_ids']}


@dataclasses.dataclass(frozen=True)
class _OneRow(grain.transforms.Map):
  """data.pack=false: one piece per row, padded."""
  length: int

  def map(self, piece):
    tokens, segmentation, positions = grain_utils.pad_row(piece['targets'],
                                                          self.length)
    return {'targets': tokens, 'targets_positions': positions,
            'targets_segmentation': segmentation}


class _StreamRows(grain.transforms.Map):
  """A concat-then-split row: one segment, positions 0.. on real tokens."""

  def map(self, row):
    real = (row['targets_segment_ids'] > 0).astype(np.int32)
    return {'targets': row['targets'],
            'targets_positions': np.arange(len(real), dtype=np.int32) * real,
            'targets_segmentation': real}


def train_dataset(config: Config, tokenizer, *, process_index: int = 0,
                  process_count: int = 1, split: str = 'train',
                  num_epochs: int | None = None,
                  documents: Sequence[str] | None = None,
                  stream: bool | None = None,
                  bos: bool = False) -> grain.IterDataset:
  """This process's rows of every training batch (module docstring).

  Returns an IterDataset of dicts (BATCH_KEYS) of int32 [batch_size //
  process_count, max_length]; `iter(ds)` has get_state()/set_state().
  The data is split into data.shards shards (default one per process), shard
  s holding documents[s::shards] and making batch_size / shards rows of each
  batch; process p reads its own contiguous block of shards, so with a fixed
  data.shards the global batch does not depend on the number of processes.
  num_epochs: None repeats forever; a number stops after that many epochs and
  keeps the last, smaller batch (tests).
  documents, stream, bos: another family's text (the masked LM's): its
  documents (default: `load_documents`), whether they are one running text
  (default: `is_stream`), and whether each starts with BOS.
  """
  data = config.data
  mine, shards, rows = grain_utils.shards_of(data, process_index,
                                             process_count)
  if documents is None:
    documents = load_documents(config, split)
  stream = is_stream(config) if stream is None else stream
  per_shard = []
  for shard in mine:
    ds = grain_utils.shard(documents, shard, shards)
    if len(ds) == 0:
      raise DataError(f'the {split!r} split of data.source={data.source!r} '
                      f'has {len(documents)} documents: none for data shard '
                      f'{shard} of {shards}')
    ds = ds.shuffle(seed=config.seed % 2**32).repeat(num_epochs)
    ds = ds.map(_Encode(tokenizer, stream, bos)).to_iter_dataset(
        grain_utils.read_options())
    if stream:
      ds = grain.experimental.ConcatThenSplitIterDataset(
          ds, length_struct={'targets': data.max_length}).map(_StreamRows())
    else:
      ds = grain.experimental.FlatMapIterDataset(ds, _Pieces(data.max_length))
      ds = grain.experimental.FirstFitPackIterDataset(
          ds, length_struct={'targets': data.max_length},
          num_packing_bins=grain_utils.PACKING_BINS_PER_ROW * rows,
          seed=config.seed, shuffle_bins=True).map(_Rows()) if data.pack \
          else ds.map(_OneRow(data.max_length))
    per_shard.append(ds.batch(rows, drop_remainder=num_epochs is None))
  if len(per_shard) == 1:
    return per_shard[0]
  return grain.experimental.ZipIterDataset(per_shard).map(
      grain_utils.concatenate_rows)


# ---------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------


def _first(documents: Sequence[str], max_documents: int) -> range:
  count = len(documents)
  return range(count if max_documents <= 0 else min(max_documents, count))


def eval_batches(config: Config, tokenizer, split: str,
                 max_documents: int = 0, *,
                 documents: Sequence[str] | None = None,
                 stream: bool | None = None,
                 bos: bool = False) -> list[dict[str, np.ndarray]]:
  """Every token of `split` (or of its first max_documents documents)
  exactly once, in corpus order, for exact perplexity.

  Returns batches of EVAL_KEYS: int32 [eval_batch_size, max_length] arrays
  as in training, plus 'weights' float32, 1.0 on real tokens and 0.0 on
  padding (the last batch is filled with empty rows).
  documents, stream, bos: as in `train_dataset`.
  """
  data = config.data
  if documents is None:
    documents = load_documents(config, split)
  chosen = _first(documents, max_documents)
  if not chosen:
    raise DataError(f'the {split!r} split of data.source={data.source!r} is '
                    'empty: nothing to evaluate on')
  length = data.max_length
  stream = is_stream(config) if stream is None else stream
  ids = (document_ids(tokenizer, documents[i], stream, bos) for i in chosen)
  if stream:  # one running text, cut into consecutive rows
    rows = [[p] for p in pieces(np.concatenate(list(ids)), length)]
  else:
    rows, room = [], []
    for document in ids:
      for piece in pieces(document, length):
        open_rows = range(max(0, len(rows) - EVAL_OPEN_ROWS), len(rows))
        r = next((r for r in open_rows if room[r] >= len(piece)), None)
        if r is None:
          rows.append([])
          room.append(length)
          r = len(rows) - 1
        rows[r].append(piece)
        room[r] -= len(piece)
  size = data.eval_batch_size
  batches = []
  for start in range(0, len(rows), size):
    batch = {key: np.zeros((size, length), np.int32) for key in BATCH_KEYS}
    batch['targets'][:] = PAD_ID
    for r, row in enumerate(rows[start:start + size]):
      column = 0
      for segment, piece in enumerate(row, 1):
        span = slice(column, column + len(piece))
        batch['targets'][r, span] = piece
        batch['targets_positions'][r, span] = np.arange(len(piece))
        batch['targets_segmentation'][r, span] = segment
        column += len(piece)
    batch['weights'] = (batch['targets_segmentation'] > 0).astype(np.float32)
    batches.append(batch)
  return batches


def eval_text_size(config: Config, split: str, max_documents: int = 0
                   ) -> dict[str, int]:
  """{'characters', 'bytes' (UTF-8), 'documents'} of the text that
  eval_batches covers: each document plus one for its end (which EOS
  predicts); in 'stream' mode the text alone. Bits per character = total
  NLL (nats) / ln 2 / characters. Bytes are the text's in UTF-8 whatever
  data.encoding the file is in: bits per byte then compare across
  encodings."""
  documents = load_documents(config, split)
  chosen = _first(documents, max_documents)
  end = 0 if is_stream(config) else 1
  characters = size = 0
  for i in chosen:
    text = documents[i]
    characters += len(text) + end
    size += len(text.encode('utf-8')) + end
  return {'characters': characters, 'bytes': size, 'documents': len(chosen)}


__all__ = ['BATCH_KEYS', 'EVAL_KEYS', 'SOURCES', 'describe', 'document_ids',
           'eval_batches', 'eval_text_size', 'is_stream', 'load_documents',
           'tokenizer_corpus', 'train_dataset']
