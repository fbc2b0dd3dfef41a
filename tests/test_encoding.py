"""data.encoding: users' text files in an encoding other than UTF-8.

Each test writes the same content twice, as UTF-8 and in another encoding
(Python's own codecs make the bytes), and checks that the readers give the
same texts; the references are the texts written, or those read with plain
`open(..., encoding=...)`. With the default UTF-8, a Latin-1 file is refused
with a message naming the line, the byte and data.encoding.
"""

import json

import numpy as np
import pytest

from transformer.config import Config, DataConfig
from transformer.data import corpus
from transformer.data.corpus import DataError
from transformer.tasks.labelled import files
from transformer.tasks.language_model import data as lm
from transformer.tasks.translation import sources

WORDS = ('café', 'niño', 'über', 'mañana', 'façade', 'naïve', 'crème',
         'señor', 'Müller', 'año', 'plain', 'word', 'ÀÉÎÕÜ', '½ · ±')
LABELS = ('pos', 'neg', 'neu')


def sentences(n, seed=0):
  """n distinct sentences of 2-6 words, the first one accented, numbered."""
  rng = np.random.default_rng(seed)
  return [' '.join([WORDS[i % 10]] + [
      WORDS[int(j)] for j in rng.integers(0, len(WORDS),
                                          int(rng.integers(1, 6)))])
          + f' {i}' for i in range(n)]


def write(path, text, encoding):
  path.write_bytes(text.encode(encoding))
  return str(path)


def both(tmp_path, name, text, encoding='latin-1'):
  """`text` written as tmp_path/utf8/name and tmp_path/other/name (in
  `encoding`); returns the two directories."""
  directories = tmp_path / 'utf8', tmp_path / 'other'
  for directory, codec in zip(directories, ('utf-8', encoding)):
    directory.mkdir(exist_ok=True)
    write(directory / name, text, codec)
  return directories


def test_the_content_differs_in_bytes():
  text = '\n'.join(sentences(5))
  assert text.encode('latin-1') != text.encode('utf-8')
  with pytest.raises(UnicodeDecodeError):
    text.encode('latin-1').decode('utf-8')


# ---------------------------------------------------------------------------
# The message for bytes that do not decode.
# ---------------------------------------------------------------------------


def test_utf8_error_names_line_byte_and_the_key(tmp_path):
  path = write(tmp_path / 'f.txt', 'plain\nalso plain\nun café\n', 'latin-1')
  with pytest.raises(DataError) as error:
    corpus.TextLines(path)
  message = str(error.value)
  # 'é' is byte 0xe9 in Latin-1, the 7th byte of line 3.
  assert message.startswith(f'{path}: line 3: invalid UTF-8 (byte 0xe9 at '
                            'byte 6 of the line')
  assert '--set=data.encoding=latin-1' in message and 'cp1252' in message
  assert '\n' not in message


def test_other_encoding_error_names_the_encoding(tmp_path):
  # 0x81 has no character in cp1252 (Latin-1 has one for every byte).
  path = tmp_path / 'f.txt'
  path.write_bytes(b'ok\n\x81 no\n')
  with pytest.raises(DataError, match=rf'{path}: line 2: invalid cp1252 '
                     r"\(byte 0x81 at byte 0.*data.encoding='cp1252'"):
    corpus.TextLines(str(path), 'cp1252')
  assert list(corpus.TextLines(str(path), 'latin-1')) == ['ok', '\x81 no']


def test_text_lines_across_index_chunks(tmp_path, monkeypatch):
  monkeypatch.setattr(corpus, '_INDEX_CHUNK', 3)
  lines = sentences(20) + ['', 'último\r']
  path = write(tmp_path / 'f.txt', '\n'.join(lines), 'cp1252')
  text = corpus.TextLines(path, 'cp1252')
  assert list(text) == [line.rstrip('\r') for line in lines]


def test_encoding_kinds():
  assert corpus.encoding_kind('UTF8') == 'utf-8'
  assert corpus.encoding_kind('latin-1') == 'single'
  assert corpus.encoding_kind('cp1252') == 'single'
  assert corpus.encoding_kind('shift_jis') == 'multi'


# ---------------------------------------------------------------------------
# Translation: text_dir/{split}.{src,tgt}.
# ---------------------------------------------------------------------------


def translation_config(directory, encoding='utf-8'):
  return DataConfig(source='text', text_dir=str(directory), encoding=encoding)


@pytest.mark.parametrize('encoding', ['latin-1', 'cp1252'])
def test_translation_files(tmp_path, encoding):
  src, tgt = sentences(30), sentences(30, seed=1)
  utf8, other = both(tmp_path, 'train.src', '\n'.join(src) + '\n', encoding)
  both(tmp_path, 'train.tgt', '\r\n'.join(tgt) + '\r\n', encoding)
  expected = list(zip(src, tgt))
  assert list(sources.load_split(translation_config(utf8), 'train')) == \
      expected
  pairs = sources.load_split(translation_config(other, encoding), 'train')
  assert list(pairs) == expected
  with pytest.raises(DataError, match=r'train\.src: line 1: invalid UTF-8 '
                     r'\(byte 0x.*--set=data.encoding='):
    sources.load_split(translation_config(other), 'train')


# ---------------------------------------------------------------------------
# Labelled files: tsv, csv, jsonl.
# ---------------------------------------------------------------------------


def labelled_config(directory, encoding='utf-8'):
  return Config(task='classification',
                data=DataConfig(source='text', text_dir=str(directory),
                                encoding=encoding))


def labelled_content(fmt, texts, labels):
  if fmt == 'tsv':
    return 'text\tlabel\n' + ''.join(f'{t}\t{l}\n'
                                     for t, l in zip(texts, labels))
  if fmt == 'csv':  # the texts quoted: one holds a comma and a newline
    return 'label,text\r\n' + ''.join(
        f'{l},"{t}"\r\n' for t, l in zip(texts, labels))
  return ''.join(json.dumps({'text': t, 'label': l}, ensure_ascii=False)
                 + '\n' for t, l in zip(texts, labels))


@pytest.mark.parametrize('fmt', ['tsv', 'csv', 'jsonl'])
def test_labelled_files(tmp_path, fmt):
  texts = sentences(40)
  if fmt == 'csv':
    texts[3] = 'una canción, con coma\ny línea nueva ñ'
  labels = [LABELS[i % 3] for i in range(40)]
  content = labelled_content(fmt, texts, labels)
  utf8, other = both(tmp_path, f'train.{fmt}', content)
  for split in ('valid', 'test'):
    both(tmp_path, f'{split}.{fmt}', labelled_content(fmt, texts[:5],
                                                      labels[:5]))
  expected = list(zip(texts, labels))
  assert list(files.text_examples(labelled_config(utf8), 'train')) == expected
  latin = files.text_examples(labelled_config(other, 'latin-1'), 'train')
  assert list(latin) == expected
  assert list(files.text_examples(labelled_config(other, 'latin-1'),
                                  'test')) == expected[:5]
  first = 1 if fmt == 'jsonl' else 2  # after the header
  with pytest.raises(DataError, match=rf'train\.{fmt}: line {first}: invalid '
                     r'UTF-8 '
                     r'\(byte 0x[0-9a-f]{2} at byte \d+ of the line.*'
                     r'--set=data.encoding=latin-1'):
    files.text_examples(labelled_config(other), 'train')


def test_labelled_hold_out_is_of_the_decoded_text(tmp_path):
  """Without valid.*, the held-out records are those whose decoded text
  hashes to bucket 0; the same bytes read in another encoding are other
  texts, so the index cached for one encoding must not serve the other."""
  texts = sentences(300)
  content = labelled_content('tsv', texts, ['a'] * 300)
  path = tmp_path / 'train.tsv'
  write(path, content, 'utf-8')  # valid UTF-8 and valid Latin-1

  def held_out(encoding):
    with open(path, encoding=encoding) as f:
      rows = [line.rstrip('\n').split('\t')[0] for line in f][1:]
    return [t for t in rows if corpus.bucket(
        files._HOLD_OUT_SALT, corpus.normalise(t), 10) == 0]

  assert held_out('utf-8') != held_out('latin-1')
  for encoding in ('utf-8', 'latin-1', 'utf-8'):
    valid = files.text_examples(labelled_config(tmp_path, encoding), 'valid')
    assert [text for text, _ in valid] == held_out(encoding)


# ---------------------------------------------------------------------------
# Language models: train.txt, valid.txt, test.txt.
# ---------------------------------------------------------------------------


def lm_config(directory, documents, encoding='utf-8'):
  return Config(task='language_model',
                data=DataConfig(source='text', text_dir=str(directory),
                                documents=documents, encoding=encoding))


def documents_of(directory, documents, encoding='utf-8', split='train'):
  docs = lm.load_documents(lm_config(directory, documents, encoding), split)
  return [docs[i] for i in range(len(docs))]


def test_lm_documents(tmp_path):
  lines = sentences(60)
  paragraphs = ['\n'.join(lines[i:i + 3]) for i in range(0, 60, 3)]
  text = '\n\n'.join(paragraphs) + '\n'
  utf8, other = both(tmp_path, 'train.txt', text)
  for directory, codec in ((utf8, 'utf-8'), (other, 'latin-1')):
    write(directory / 'valid.txt', 'la última\n', codec)
  assert documents_of(utf8, 'paragraphs') == paragraphs
  assert documents_of(other, 'paragraphs', 'latin-1') == paragraphs
  assert documents_of(other, 'lines', 'latin-1') == lines
  assert ''.join(documents_of(other, 'stream', 'latin-1')) == text
  assert documents_of(other, 'lines', 'latin-1', 'valid') == ['la última']
  with pytest.raises(DataError, match=r'train\.txt: line 1: invalid UTF-8.*'
                     r'--set=data.encoding=latin-1'):
    documents_of(other, 'lines')


def test_lm_text_size_counts_utf8_bytes(tmp_path):
  """Bits per byte are per UTF-8 byte of the text, whatever the file's
  encoding: both files give the same characters and bytes."""
  lines = sentences(20)
  utf8, other = both(tmp_path, 'valid.txt', '\n'.join(lines) + '\n')
  for directory in (utf8, other):
    write(directory / 'train.txt', 'x\n', 'utf-8')
  expected = {'characters': sum(len(l) + 1 for l in lines),
              'bytes': sum(len(l.encode('utf-8')) + 1 for l in lines),
              'documents': 20}
  assert lm.eval_text_size(lm_config(utf8, 'lines'), 'valid') == expected
  assert lm.eval_text_size(lm_config(other, 'lines', 'latin-1'),
                           'valid') == expected


@pytest.mark.parametrize('encoding', ['latin-1', 'shift_jis'])
def test_lm_stream_cut_at_characters(tmp_path, encoding):
  """'stream' cuts a file into chunks of ~16 KiB, inside long lines too:
  Latin-1 anywhere, UTF-8 at a character start, a multi-byte encoding such
  as Shift JIS only at line starts. The chunks give back the whole text."""
  words = (WORDS if encoding == 'latin-1' else
           ('日本語', 'かな', 'テキスト', 'abc', '漢字'))
  rng = np.random.default_rng(0)
  long_line = ' '.join(words[int(i)] for i in rng.integers(0, 5, 12_000))
  short = [' '.join(words[int(i)] for i in rng.integers(0, 5, 8))
           for _ in range(3000)]
  text = long_line + '\n' + '\n'.join(short) + '\n' + long_line
  utf8, other = both(tmp_path, 'train.txt', text, encoding)
  for directory in (utf8, other):
    write(directory / 'valid.txt', 'v\n', 'utf-8')
  for directory, codec in ((utf8, 'utf-8'), (other, encoding)):
    chunks = documents_of(directory, 'stream', codec)
    assert len(chunks) > 3 and ''.join(chunks) == text
  # Shift JIS: the long lines are whole chunks; Latin-1 cuts inside them.
  lengths = [len(c) for c in documents_of(other, 'stream', encoding)]
  assert (max(lengths) >= len(long_line)) == (encoding == 'shift_jis')
