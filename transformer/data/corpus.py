"""Data I/O that every task family shares.

`DataError`, the one exception for data problems a user can fix (its message
names the file, line or key at fault and what would be accepted); the split
names; the data root; text files read by byte range without loading them
whole (`ByteRanges`, `TextLines`) in data.encoding, with the one message
for bytes that do not decode; the stable hash that assigns items to
splits; and prepared corpora (one TSV per split plus a versioned meta.json,
written atomically).
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import os
import shutil
import tempfile
from typing import Sequence

import numpy as np

from transformer.config import DataConfig

SPLITS = ('train', 'valid', 'test')
# Where prepared corpora live when data.data_dir is ''.
DEFAULT_DATA_ROOT = os.path.join('~', '.cache', 'transformer')
# Bytes read at a time while indexing a text file.
_INDEX_CHUNK = 16 << 20


class DataError(Exception):
  """A data problem the user can fix: the message says where and how."""


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise DataError(f'unknown split {split!r}: expected one of '
                    f'{", ".join(SPLITS)}')


# ---------------------------------------------------------------------------
# Encodings (data.encoding): any codec that writes ASCII as ASCII, so that
# lines, tabs and commas are found by their bytes before decoding.
# ---------------------------------------------------------------------------

UTF8_BOM = b'\xef\xbb\xbf'


@functools.lru_cache(maxsize=None)
def encoding_kind(encoding: str) -> str:
  """'utf-8' (UTF-8, with or without signature), 'single' (one byte per
  character: latin-1, cp1252, ...; any byte offset is a character start),
  or 'multi' (other multi-byte codecs: shift_jis, gb18030, ...; only line
  starts are known to be character starts)."""
  name = codecs.lookup(encoding).name
  if name in ('utf-8', 'utf-8-sig'):
    return 'utf-8'
  decoder = codecs.getincrementaldecoder(name)(errors='ignore')
  for byte in range(256):
    # A lead byte of a longer sequence decodes to nothing until the rest
    # comes; a single-byte codec gives a character (or nothing, for a byte
    # it has no character for).
    decoder.reset()
    if not decoder.decode(bytes([byte])) and decoder.getstate()[0]:
      return 'multi'
  return 'single'


def _encoding_label(encoding: str) -> str:
  return 'UTF-8' if encoding_kind(encoding) == 'utf-8' else encoding


def decoding_error(path: str, encoding: str, error: UnicodeDecodeError,
                   data: bytes, line_before: int) -> DataError:
  """The DataError for bytes of `path` that `encoding` cannot decode.

  data: the bytes that failed, which start at a line start; line_before:
  the lines of the file before `data`."""
  line = line_before + data.count(b'\n', 0, error.start) + 1
  column = error.start - data.rfind(b'\n', 0, error.start) - 1
  byte = data[error.start]
  if encoding_kind(encoding) == 'utf-8':
    hint = ('if the file is in another encoding, set it with '
            '--set=data.encoding=latin-1 (or cp1252, shift_jis, ...: any '
            'encoding that writes ASCII as ASCII), or convert the file to '
            'UTF-8')
  else:
    hint = (f'data.encoding={encoding!r} has no character for it: set '
            'data.encoding to the encoding the file was saved in (utf-8 by '
            'default; latin-1 decodes any byte)')
  return DataError(
      f'{path}: line {line}: invalid {_encoding_label(encoding)} (byte '
      f'0x{byte:02x} at byte {column} of the line: {error.reason}); {hint}')


def decode(data: bytes, encoding: str, path: str, line_before: int) -> str:
  """`data` (bytes of `path` from a line start) decoded; DataError naming
  the line and data.encoding if they are not valid in it."""
  try:
    return data.decode(encoding)
  except UnicodeDecodeError as error:
    raise decoding_error(path, encoding, error, data, line_before) from None


# ---------------------------------------------------------------------------
# Text files: a line-offset index, lines read with pread.
# ---------------------------------------------------------------------------


class ByteRanges:
  """Reads byte ranges of a file through one descriptor, opened on first use.

  Picklable (grain copies sources into worker processes): the descriptor is
  not pickled, each copy opens its own.
  """

  def __init__(self, path: str):
    self.path = path
    self._fd: int | None = None

  def read(self, start: int, end: int) -> bytes:
    if self._fd is None:
      self._fd = os.open(self.path, os.O_RDONLY)
    return os.pread(self._fd, end - start, start)

  def __getstate__(self):
    return {'path': self.path, '_fd': None}

  def __del__(self):
    if getattr(self, '_fd', None) is not None:
      try:
        os.close(self._fd)
      except OSError:
        pass


class TextLines(Sequence[str]):
  """The lines of a text file, read by index without loading the file.

  One pass over the file records where each line starts (numpy int64) and
  checks that it decodes in `encoding` (data.encoding for users' files).
  '\\n' ends a line; a trailing '\\r' is dropped; a last line without
  '\\n' counts. Reading uses os.pread, so several threads may read at once.
  Picklable (the file is reopened after unpickling).
  """

  def __init__(self, path: str, encoding: str = 'utf-8'):
    self.path = path
    self.encoding = encoding
    if not os.path.isfile(path):
      raise DataError(f'{path}: file not found')
    self._offsets = self._index(path, encoding)
    self._file = ByteRanges(path)

  @staticmethod
  def _index(path: str, encoding: str) -> np.ndarray:
    starts = [np.zeros(1, np.int64)]
    position = 0  # bytes consumed so far
    lines_before = 0  # complete lines before `pending`
    pending = b''  # the start of a line that continues in the next chunk
    with open(path, 'rb') as f:
      while True:
        chunk = f.read(_INDEX_CHUNK)
        if not chunk:
          break
        newlines = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
        if len(newlines):
          complete = pending + chunk[:newlines[-1] + 1]
          decode(complete, encoding, path, lines_before)
          starts.append(newlines.astype(np.int64) + (position + 1))
          lines_before += len(newlines)
          pending = chunk[newlines[-1] + 1:]
        else:
          pending += chunk
        position += len(chunk)
    if pending:
      decode(pending, encoding, path, lines_before)
      starts.append(np.array([position], np.int64))
    offsets = np.concatenate(starts)
    # offsets[i]: start of line i; offsets[-1]: end of the last line.
    return offsets

  @property
  def offsets(self) -> np.ndarray:
    """offsets[i]: where line i starts; offsets[-1]: the end of the file
    (int64; the index itself: copy it before changing it)."""
    return self._offsets

  def __len__(self) -> int:
    return len(self._offsets) - 1

  def __getitem__(self, index: int) -> str:
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f'line {index} out of range for {self.path} '
                       f'({len(self)} lines)')
    start, end = int(self._offsets[index]), int(self._offsets[index + 1])
    data = self._file.read(start, end)
    return data.decode(self.encoding).rstrip('\n').rstrip('\r')


def data_root(config: DataConfig) -> str:
  return os.path.expanduser(config.data_dir or DEFAULT_DATA_ROOT)


def tfds_prepare_hint(name: str, data_dir: str) -> str:
  dir_flag = f' --data_dir={data_dir}' if data_dir else ''
  return (f'Prepare it once (needs TensorFlow and the network):\n'
          f'  pip install -e .[wmt]\n'
          f'  tfds build {name} --file_format=array_record{dir_flag}\n'
          f'or in Python: tfds.builder({name!r}, '
          f'data_dir={data_dir or None!r}, file_format="array_record")'
          '.download_and_prepare(). The data is never downloaded at run time.')


def tfds_text(value) -> str:
  """A TFDS text feature (bytes, str, or a 0-d numpy array of either) as
  str."""
  if isinstance(value, np.ndarray):
    value = value.item()
  if isinstance(value, bytes):
    return value.decode('utf-8')
  return str(value)


# The toy tasks' vocabulary (translation's word reversal, the labelled toy
# task's filler words).
TOY_WORDS = tuple('''
a able about above act add after again age ago air all also am an and animal
any are area arm art as ask at away baby back bad bag ball bank bar base be
bear beat bed been before begin best big bird bit black blue boat body book
born both box boy bring brown build busy but buy by call came can car card
care carry case cat cause cell chair child city class clear close cold come
cook cool copy corn cost could count cross cry cup cut dad dance dark day dead
deal dear deep did die dog door down draw dream dress drink drive drop dry
duck each ear early earth east easy eat edge egg end even ever eye face fact
fall far farm fast fat feel few field fill find fine fire first fish five fly
food foot for form four free from full fun game gas get girl give glad go god
gold good got gray great green grow had hair half hand hard has hat have he
head hear heat help her here high hill him his hit hold hole home hope horse
hot hour house how huge hunt
'''.split())


def normalise(text: str) -> str:
  """The form in which two texts count as the same: case-folded, runs of
  whitespace made one space."""
  return ' '.join(text.casefold().split())


def bucket(salt: str, key: str, buckets: int) -> int:
  # sha256, not hash(): Python randomises str hashes per process.
  digest = hashlib.sha256(f'{salt}|{key}'.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') % buckets


# Prepared corpora: one TSV per split plus meta.json, written last, whose
# format_version says which preparation wrote them.


def read_meta(directory: str, version: int) -> dict | None:
  """The directory's meta.json if it and every split file are from
  preparation `version`, else None (rebuild)."""
  paths = [os.path.join(directory, f'{s}.tsv') for s in SPLITS]
  meta_path = os.path.join(directory, 'meta.json')
  if not all(os.path.exists(p) for p in paths + [meta_path]):
    return None
  try:
    with open(meta_path, encoding='utf-8') as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return None
  return meta if meta.get('format_version') == version else None


def write_prepared(directory: str, header: tuple[str, ...],
                    tables: dict[str, list[tuple]], meta: dict) -> None:
  """Writes directory/{split}.tsv and meta.json atomically: into a temporary
  directory first, then renamed, meta.json last, so an interrupted run never
  leaves files that look complete."""
  os.makedirs(directory, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix='.tmp-', dir=directory)
  try:
    for split, rows in tables.items():
      with open(os.path.join(tmp_dir, f'{split}.tsv'), 'w', encoding='utf-8',
                newline='\n') as f:
        f.write('\t'.join(header) + '\n')
        f.writelines('\t'.join(map(str, row)) + '\n' for row in rows)
    with open(os.path.join(tmp_dir, 'meta.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f, indent=2, ensure_ascii=False)
      f.write('\n')
    meta_path = os.path.join(directory, 'meta.json')
    if os.path.exists(meta_path):  # invalid until the new one lands
      os.remove(meta_path)
    for split in tables:
      os.replace(os.path.join(tmp_dir, f'{split}.tsv'),
                 os.path.join(directory, f'{split}.tsv'))
    os.replace(os.path.join(tmp_dir, 'meta.json'), meta_path)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)


def read_prepared(directory: str, split: str) -> list[list[str]]:
  """The rows (header dropped) of a file that write_prepared wrote."""
  with open(os.path.join(directory, f'{split}.tsv'), encoding='utf-8',
            newline='') as f:
    lines = f.read().split('\n')[1:-1]
  return [line.split('\t') for line in lines]
