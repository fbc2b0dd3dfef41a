"""data.source='text': the users' labelled TSV, CSV or JSON Lines files.

The files are in data.text_dir: train.tsv, train.csv or train.jsonl, and
optionally valid.* and test.* in the same format. TSV and CSV start with a
header row naming the columns; TSV rows are split on tabs with no quote
processing (as GLUE's files are), CSV follows RFC 4180 (Python's csv module:
a quoted field may hold commas, quotes as "" and newlines); JSON Lines hold
one object per line. The text is in column data.text_column, the label in
data.label_column: a class name, or a number for regression;
data.label_column='a,b' names several numeric columns, one regression output
each. With data.multi_label the label field holds any number of class names
separated by data.label_separator (',' by default; empty = no label), or a
JSON list in JSON Lines. The files are in data.encoding (UTF-8 by default;
any encoding that writes ASCII as ASCII, e.g. latin-1 or cp1252, since
lines, tabs and commas are found by their bytes). Files are never loaded
whole: one pass checks every record (its encoding, field count, label) and
records where it starts, and records are then read by byte offset. Without
valid.*, the training records whose text hashes to bucket 0 of 10 (~10%,
deterministic, identical texts on the same side) are held out for
validation and left out of training; without test.*, the test split is an
error.

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
from typing import Any, Iterator, Sequence

import numpy as np

from transformer.config import Config
from transformer.data import corpus
from transformer.data.corpus import DataError
from transformer.tasks.labelled.sources import Example, Label

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


# No label column: the texts alone (text_examples' spec).
TEXT_ONLY = LabelSpec(columns=())


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


class _LineFeed:
  """Decoded lines of a binary file for csv.reader, counting lines and
  bytes. csv.reader takes one line at a time and no more than a record
  needs, so the offset before each record is where that record starts."""

  def __init__(self, f, path: str, encoding: str):
    self._f = f
    self._path = path
    self._encoding = encoding
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
    text = corpus.decode(raw, self._encoding, self._path, self.line - 1)
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


def _scan(path: str, fmt: str, encoding: str
          ) -> Iterator[tuple[int, int, int, Any]]:
  """(line number, start byte, end byte, parsed record) of each record of
  the file, the header included; empty lines are skipped."""
  with open(path, 'rb') as f:
    if fmt == 'csv':
      feed = _LineFeed(f, path, encoding)
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
      text = corpus.decode(raw, encoding, path, line - 1)
      if line == 1 and text.startswith(_BOM):
        start, text = start + len(_BOM.encode(encoding)), text[1:]
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


def index_file(path: str, fmt: str, text_column: str, spec: LabelSpec,
               encoding: str = 'utf-8') -> FileIndex:
  """One pass over the file: checks every record, records its bytes."""
  records = _scan(path, fmt, encoding)
  header = None
  if fmt != 'jsonl':
    first = next(records, None)
    if first is None:
      raise DataError(f'{path}: empty file: expected a header row naming the '
                      f'columns ({text_column!r}, {spec.columns[0]!r}, ...) '
                      'and then one row per example')
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
                  text_column: str, spec: LabelSpec, encoding: str
                  ) -> FileIndex:
  """index_file, once per process for train and the valid slice held out of
  it; size and mtime in the key, so a changed file is indexed again, and the
  encoding, since the same bytes decode to other texts (and hold-outs)."""
  del size, mtime_ns  # only the cache key
  return index_file(path, fmt, text_column, spec, encoding)


class LabelledFile(Sequence[Example]):
  """Some records of an indexed file in `encoding`, read by byte offset
  with os.pread (thread-safe); picklable (the file is reopened after
  unpickling)."""

  def __init__(self, path: str, index: FileIndex, spec: LabelSpec,
               keep: np.ndarray | None = None, encoding: str = 'utf-8'):
    self.path = path
    self.encoding = encoding
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
    data = self._file.read(start, end).decode(self.encoding)
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


def missing_split(config: Config, split: str) -> str | None:
  """'text': the test file is optional; the message when it is absent."""
  data = config.data
  if data.source != 'text' or split != 'test' or not data.text_dir:
    return None
  directory = os.path.expanduser(data.text_dir)
  if not os.path.isdir(directory) or _find_file(directory, split):
    return None
  return (f'{directory} has no test.tsv, test.csv or test.jsonl')


def text_examples(config: Config, split: str,
                  spec: LabelSpec | None = None) -> LabelledFile:
  """The split of the files in data.text_dir (module docstring).

  spec: what the label fields hold (default: `LabelSpec.of(config)`);
  `TEXT_ONLY` reads the texts alone, with no label column (a masked LM's
  documents): each example is (text, ()).
  """
  directory, files = _text_files(config)
  spec = LabelSpec.of(config) if spec is None else spec
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
  encoding = config.data.encoding
  index = _cached_index(path, stat.st_size, stat.st_mtime_ns, fmt,
                        config.data.text_column, spec, encoding)
  if not holding_out:
    return LabelledFile(path, index, spec, encoding=encoding)
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
  return LabelledFile(path, index, spec, keep, encoding)
