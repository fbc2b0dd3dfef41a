"""Tests of the language model's data (tasks/language_model/data.py).

References are independent of the code under test: documents tokenized here
directly and cut into pieces by hand, users' files written here whose
documents are known, Bible chapters checked against bible.split_of and
verses known by heart, TFDS mocked with tfds.testing.mock_data (TFDS's own
data_source code on generated records). A character tokenizer keeps every
test fast. The Bible tests need diatheke.
"""

import collections
import dataclasses
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from transformer import tasks
from transformer.config import BOS_ID, EOS_ID, PAD_ID, Config, DataConfig
from transformer.data import bible
from transformer.data import tokenizer as tokenizer_lib
from transformer.data.corpus import DataError
from transformer.tasks.language_model import data as lm

SPLITS = ('train', 'valid', 'test')
needs_diatheke = pytest.mark.skipif(
    shutil.which('diatheke') is None, reason='diatheke is not installed')


def config(source='toy', seed=0, **data):
  data = {'max_length': 32, 'batch_size': 4, 'eval_batch_size': 4, **data}
  return Config(task='language_model', seed=seed,
                data=DataConfig(source=source, **data))


def char_tokenizer(texts, extra=8):
  """Every character of `texts` in the vocabulary (no UNK)."""
  chars = tokenizer_lib.char_vocabulary(texts, 10_000)
  return tokenizer_lib.CharTokenizer(chars, len(chars) + 4 + extra)


def all_docs(documents):
  return [documents[i] for i in range(len(documents))]


def reference_pieces(tokenizer, texts, length, eos=True):
  """Each text's ids (+ EOS) cut into pieces of `length`, as tuples."""
  result = []
  for text in texts:
    ids = tokenizer.encode(text) + ([EOS_ID] if eos else [])
    result += [tuple(ids[i:i + length]) for i in range(0, len(ids), length)]
  return result


def segments(batch):
  """The pieces of a batch's rows (row-major), checking the row layout:
  segments 1, 2, ... in order, positions 0.. within each, padding last."""
  found = []
  for tokens, seg, pos in zip(batch['targets'], batch['targets_segmentation'],
                              batch['targets_positions']):
    real = int(np.count_nonzero(seg))
    assert (seg[real:] == 0).all() and (tokens[real:] == PAD_ID).all()
    assert (tokens[:real] != PAD_ID).all() and (tokens != BOS_ID).all()
    ids = seg[:real]
    assert real == 0 or ids[0] == 1
    assert (np.diff(ids) >= 0).all() and (np.diff(ids) <= 1).all()
    for s in np.unique(ids):
      span = np.flatnonzero(ids == s)
      np.testing.assert_array_equal(pos[span], np.arange(len(span)))
      found.append(tuple(int(t) for t in tokens[span]))
  return found


@pytest.fixture(scope='module')
def toy_tokenizer():
  return char_tokenizer(all_docs(lm.toy_documents('train')))


# ---------------------------------------------------------------------------
# toy
# ---------------------------------------------------------------------------


def test_toy_is_deterministic_counting():
  train = all_docs(lm.toy_documents('train'))
  assert train == all_docs(lm.toy_documents('train'))
  assert len(train) == lm.TOY_DOCUMENTS['train']
  test = all_docs(lm.toy_documents('test'))
  assert len(test) == 300 and test != train[:300]
  for text in train[:200]:
    for line in text.split('\n'):
      numbers = [lm.TOY_NUMBERS.index(w) for w in line.split(' ')]
      assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
      assert 2 <= len(numbers) <= 6
  assert lm.load_documents(config(), 'valid')[0] == lm.toy_documents(
      'valid')[0]


def test_unknown_source_names_the_accepted_ones():
  with pytest.raises(DataError, match='bible, text, tfds, toy'):
    lm.load_documents(config('vader'), 'train')
  with pytest.raises(DataError, match='split'):
    lm.load_documents(config(), 'dev')


# ---------------------------------------------------------------------------
# Training batches
# ---------------------------------------------------------------------------


def test_one_epoch_holds_every_piece_once(toy_tokenizer):
  cfg = config(max_length=16, batch_size=8)
  ds = lm.train_dataset(cfg, toy_tokenizer, num_epochs=1)
  found = []
  for batch in ds:
    assert set(batch) == set(lm.BATCH_KEYS)
    for key in lm.BATCH_KEYS:
      assert batch[key].dtype == np.int32 and batch[key].shape[1] == 16
    found += segments(batch)
  expected = reference_pieces(toy_tokenizer,
                              all_docs(lm.toy_documents('train')), 16)
  assert collections.Counter(found) == collections.Counter(expected)
  # Long documents were cut: full pieces exist, and only last pieces end
  # with EOS.
  assert any(len(p) == 16 and p[-1] != EOS_ID for p in found)
  assert sum(p[-1] == EOS_ID for p in found) == lm.TOY_DOCUMENTS['train']


def test_unpacked_rows_hold_one_piece(toy_tokenizer):
  cfg = config(max_length=16, batch_size=8, pack=False)
  found = []
  for batch in lm.train_dataset(cfg, toy_tokenizer, num_epochs=1):
    assert batch['targets_segmentation'].max(axis=1).tolist() == [1] * len(
        batch['targets'])
    found += segments(batch)
  assert collections.Counter(found) == collections.Counter(reference_pieces(
      toy_tokenizer, all_docs(lm.toy_documents('train')), 16))


def test_rows_are_packed_and_full_batches(toy_tokenizer):
  cfg = config(max_length=64, batch_size=8)
  it = iter(lm.train_dataset(cfg, toy_tokenizer))
  batches = [next(it) for _ in range(10)]
  for batch in batches:
    assert batch['targets'].shape == (8, 64)
    segments(batch)
  fill = np.mean([np.count_nonzero(b['targets_segmentation'])
                  for b in batches]) / (8 * 64)
  assert fill > 0.8
  assert max(int(b['targets_segmentation'].max()) for b in batches) >= 2


def test_a_new_order_every_epoch(toy_tokenizer):
  cfg = config(max_length=512, batch_size=1)  # every document in one piece
  texts = all_docs(lm.toy_documents('train'))
  found = [p for b in lm.train_dataset(cfg, toy_tokenizer, num_epochs=2)
           for p in segments(b)]
  expected = reference_pieces(toy_tokenizer, texts, 512)
  n = len(expected)
  assert collections.Counter(found) == collections.Counter(expected * 2)
  # Not the corpus order, and another order in the second epoch (the
  # packer's few open rows only mix the documents around the boundary).
  assert found[:n] != expected and found[n:] != found[:n]
  assert sum(a == b for a, b in zip(found[:n], found[n:])) < 0.05 * n


def test_seed_changes_the_order(toy_tokenizer):
  a = next(iter(lm.train_dataset(config(seed=0), toy_tokenizer)))
  b = next(iter(lm.train_dataset(config(seed=1), toy_tokenizer)))
  assert not np.array_equal(a['targets'], b['targets'])


@pytest.mark.parametrize('skip', [0, 3, 17])
def test_resume_from_state_continues_exactly(toy_tokenizer, skip):
  cfg = config()
  it = iter(lm.train_dataset(cfg, toy_tokenizer))
  for _ in range(skip):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # as in a checkpoint
  expected = [next(it) for _ in range(6)]
  fresh = iter(lm.train_dataset(cfg, toy_tokenizer))
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    for key in lm.BATCH_KEYS:
      np.testing.assert_array_equal(got[key], want[key])


def test_two_processes_equal_one(toy_tokenizer):
  cfg = config(batch_size=8, shards=2)
  one = iter(lm.train_dataset(cfg, toy_tokenizer))
  two = [iter(lm.train_dataset(cfg, toy_tokenizer, process_index=p,
                               process_count=2)) for p in range(2)]
  for _ in range(5):
    whole = next(one)
    halves = [next(it) for it in two]
    for key in lm.BATCH_KEYS:
      assert halves[0][key].shape == (4, 32)
      np.testing.assert_array_equal(
          whole[key], np.concatenate([h[key] for h in halves]))


def test_batch_size_must_split_over_shards(toy_tokenizer):
  with pytest.raises(DataError, match='divisible'):
    lm.train_dataset(config(batch_size=6, shards=4), toy_tokenizer)


# ---------------------------------------------------------------------------
# Evaluation batches and the character count
# ---------------------------------------------------------------------------


def test_eval_covers_every_token_once(toy_tokenizer):
  cfg = config(max_length=16, eval_batch_size=8)
  batches = lm.eval_batches(cfg, toy_tokenizer, 'valid')
  texts = all_docs(lm.toy_documents('valid'))
  found = []
  for batch in batches:
    assert set(batch) == set(lm.EVAL_KEYS)
    assert batch['weights'].dtype == np.float32
    assert batch['targets'].shape == (8, 16)
    np.testing.assert_array_equal(batch['weights'],
                                  batch['targets_segmentation'] > 0)
    found += segments(batch)
  expected = reference_pieces(toy_tokenizer, texts, 16)
  assert collections.Counter(found) == collections.Counter(expected)
  # Characters: each document plus its end; with one token per character
  # that is exactly the number of predicted tokens.
  size = lm.eval_text_size(cfg, 'valid')
  assert size['characters'] == sum(len(t) + 1 for t in texts)
  assert size['bytes'] == sum(len(t.encode()) + 1 for t in texts)
  assert sum(b['weights'].sum() for b in batches) == size['characters']
  # Deterministic, and max_documents takes the first ones.
  again = lm.eval_batches(cfg, toy_tokenizer, 'valid')
  assert all(np.array_equal(a['targets'], b['targets'])
             for a, b in zip(batches, again))
  first = lm.eval_batches(cfg, toy_tokenizer, 'valid', max_documents=5)
  assert sum(b['weights'].sum() for b in first) == sum(
      len(t) + 1 for t in texts[:5]) == lm.eval_text_size(
          cfg, 'valid', 5)['characters']


def test_tokenizer_corpus_keeps_newlines_for_characters(tmp_path):
  cfg = dataclasses.replace(
      config(), model=dataclasses.replace(config().model, vocab_size=40),
      data=dataclasses.replace(config().data, tokenizer='char'))
  corpus = lm.tokenizer_corpus(cfg)
  assert corpus[0] == (lm.toy_documents('train')[0],)
  tokenizer = tokenizer_lib.load_or_train(cfg, str(tmp_path),
                                          lambda: lm.tokenizer_corpus(cfg))
  assert '\n' in tokenizer.chars
  spm = dataclasses.replace(cfg, data=dataclasses.replace(
      cfg.data, tokenizer='unigram'))
  assert lm.tokenizer_corpus(spm)[0] == tuple(
      lm.toy_documents('train')[0].split('\n'))


# ---------------------------------------------------------------------------
# text: users' files
# ---------------------------------------------------------------------------


def write(directory, name, content):
  path = os.path.join(directory, name)
  with open(path, 'wb') as f:
    f.write(content if isinstance(content, bytes) else content.encode())
  return path


def text_config(directory, documents='lines', **data):
  return config('text', text_dir=str(directory), documents=documents, **data)


SAMPLE = (b'\xef\xbb\xbfFirst line\r\nof the first paragraph\n\n   \t\n'
          + 'Second paragraph, caf\u00e9\n\n\n'.encode()
          + b'Third, with no newline at the end')


def test_text_documents_by_mode(tmp_path):
  for split in SPLITS:
    write(tmp_path, f'{split}.txt', SAMPLE)
  lines = all_docs(lm.load_documents(text_config(tmp_path, 'lines'), 'test'))
  assert lines == ['First line', 'of the first paragraph',
                   'Second paragraph, caf\u00e9',
                   'Third, with no newline at the end']
  paragraphs = all_docs(lm.load_documents(
      text_config(tmp_path, 'paragraphs'), 'valid'))
  assert paragraphs == ['First line\nof the first paragraph',
                        'Second paragraph, caf\u00e9',
                        'Third, with no newline at the end']
  stream = all_docs(lm.load_documents(text_config(tmp_path, 'stream'),
                                      'train'))
  assert ''.join(stream) == SAMPLE[3:].decode().replace('\r\n', '\n')
  docs = lm.load_documents(text_config(tmp_path, 'paragraphs'), 'train')
  assert pickle.loads(pickle.dumps(docs))[1] == 'Second paragraph, caf\u00e9'
  assert lm.eval_text_size(text_config(tmp_path, 'lines'), 'test') == {
      'characters': sum(len(t) + 1 for t in lines),
      'bytes': sum(len(t.encode()) + 1 for t in lines), 'documents': 4}
  assert lm.eval_text_size(text_config(tmp_path, 'stream'), 'test')[
      'characters'] == len(''.join(stream))


def long_text(lines=400):
  rng = np.random.default_rng(0)
  words = ['alpha', 'beta', 'gamma', 'd\u00e9lta', '\u00fcber', '\u4e2d\u6587']
  return ''.join(' '.join(rng.choice(words, rng.integers(1, 12))) + '\n'
                 for _ in range(lines))


def test_stream_chunks_rejoin_to_the_file(tmp_path, monkeypatch):
  monkeypatch.setattr(lm, 'STREAM_CHUNK_BYTES', 100)
  # One line of 3,000 bytes of 3-byte characters: cut inside it.
  text = long_text(50) + '\u4e2d' * 1000 + '\n' + long_text(50)
  write(tmp_path, 'train.txt', text)
  write(tmp_path, 'valid.txt', text)
  docs = all_docs(lm.load_documents(text_config(tmp_path, 'stream'), 'valid'))
  assert ''.join(docs) == text and len(docs) > 30
  assert all(100 <= len(d.encode()) <= 200 for d in docs[:-1])
  # Where a line start is near, the cut is there.
  assert sum(d.endswith('\n') for d in docs) >= len(docs) // 2


def test_stream_rows_are_full_single_segments(tmp_path, monkeypatch):
  monkeypatch.setattr(lm, 'STREAM_CHUNK_BYTES', 200)
  text = long_text()
  for split in SPLITS:
    write(tmp_path, f'{split}.txt', text)
  cfg = text_config(tmp_path, 'stream', batch_size=4, max_length=32)
  tokenizer = char_tokenizer([text])
  chunks = all_docs(lm.load_documents(cfg, 'train'))
  batches = list(lm.train_dataset(cfg, tokenizer, num_epochs=1))
  tokens = np.concatenate([b['targets'][b['targets_segmentation'] > 0]
                           for b in batches])
  # No EOS in a stream; every character once; rows full but the last.
  assert EOS_ID not in tokens and len(tokens) == len(text)
  assert collections.Counter(tokens.tolist()) == collections.Counter(
      tokenizer.encode(text))
  for batch in batches[:-1]:
    assert (batch['targets_segmentation'] == 1).all()
    np.testing.assert_array_equal(batch['targets_positions'],
                                  np.tile(np.arange(32), (4, 1)))
  # The chunks are shuffled: rows do not follow the file.
  assert not np.array_equal(
      batches[0]['targets'][0], tokenizer.encode(chunks[0])[:32])
  # Resume.
  it = iter(lm.train_dataset(cfg, tokenizer))
  for _ in range(7):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  want = [next(it) for _ in range(5)]
  fresh = iter(lm.train_dataset(cfg, tokenizer))
  fresh.set_state(state)
  for w in want:
    np.testing.assert_array_equal(next(fresh)['targets'], w['targets'])
  # Evaluation: the text in order, cut into rows; characters = the text.
  evals = lm.eval_batches(cfg, tokenizer, 'test')
  ordered = np.concatenate([b['targets'][b['weights'] > 0] for b in evals])
  np.testing.assert_array_equal(ordered, tokenizer.encode(text))
  assert lm.eval_text_size(cfg, 'test')['characters'] == len(text)
  assert '\n' in char_tokenizer(
      [t for (t,) in lm.tokenizer_corpus(
          dataclasses.replace(cfg, data=dataclasses.replace(
              cfg.data, tokenizer='char')))]).chars


@pytest.mark.parametrize('documents', ['lines', 'paragraphs'])
def test_valid_held_out_of_train(tmp_path, capsys, documents):
  text = ''.join(f'document {i} line\nmore of {i}\n\n' for i in range(300))
  write(tmp_path, 'train.txt', text)
  cfg = text_config(tmp_path, documents)
  train = all_docs(lm.load_documents(cfg, 'train'))
  valid = all_docs(lm.load_documents(cfg, 'valid'))
  lm.load_documents(cfg, 'train')
  expected = (text.replace('\n\n', '\n').splitlines() if documents == 'lines'
              else text.rstrip('\n').split('\n\n'))
  assert sorted(train + valid) == sorted(expected)
  assert not set(train) & set(valid)
  assert 0.05 * len(expected) < len(valid) < 0.15 * len(expected)
  out = capsys.readouterr().out
  assert out.count('holding out') == 1 and 'valid.txt' in out
  with pytest.raises(DataError, match=r'test\.txt.*eval\.final=false'):
    lm.load_documents(cfg, 'test')


def test_stream_holds_out_the_end(tmp_path):
  text = long_text()
  write(tmp_path, 'train.txt', text)
  cfg = text_config(tmp_path, 'stream')
  train = ''.join(all_docs(lm.load_documents(cfg, 'train')))
  valid = ''.join(all_docs(lm.load_documents(cfg, 'valid')))
  assert train + valid == text and valid.startswith(
      text.splitlines(True)[text[:len(train)].count('\n')])
  assert 0.08 < len(valid.encode()) / len(text.encode()) < 0.12


def test_text_errors_name_the_file(tmp_path):
  with pytest.raises(DataError, match='needs data.text_dir'):
    lm.load_documents(config('text'), 'train')
  with pytest.raises(DataError, match='is not a directory'):
    lm.load_documents(text_config(tmp_path / 'nowhere'), 'train')
  with pytest.raises(DataError, match=r'train\.txt: file not found'):
    lm.load_documents(text_config(tmp_path), 'train')
  path = write(tmp_path, 'train.txt', ' \n\n\t\n')
  with pytest.raises(DataError, match=f'{path}: empty file'):
    lm.load_documents(text_config(tmp_path), 'train')
  path = write(tmp_path, 'train.txt', b'good\nfine\nbad \xff here\n')
  with pytest.raises(DataError, match=f'{path}: line 3: invalid UTF-8'):
    lm.load_documents(text_config(tmp_path), 'train')
  write(tmp_path, 'train.txt', 'one line only\n')
  with pytest.raises(DataError, match='too small to hold out.*valid.txt'):
    lm.load_documents(text_config(tmp_path), 'valid')
  path = write(tmp_path, 'valid.txt', '')
  with pytest.raises(DataError, match=f'{path}: empty file'):
    lm.load_documents(text_config(tmp_path), 'valid')


# ---------------------------------------------------------------------------
# tfds (mocked: TFDS's own data_source code on generated records)
# ---------------------------------------------------------------------------


def test_tfds_lm1b_mocked(monkeypatch):
  asked = []
  original = tfds.data_source

  def data_source(name, split, **kwargs):
    asked.append((name, split, kwargs['download']))
    return original(name, split=split, **kwargs)
  monkeypatch.setattr(tfds, 'data_source', data_source)
  cfg = config('tfds', tfds_name='lm1b')
  with tfds.testing.mock_data(num_examples=200,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    splits = {s: lm.load_documents(cfg, s) for s in SPLITS}
    texts = {s: all_docs(d) for s, d in splits.items()}
    tokenizer = char_tokenizer(texts['train'] + texts['test'])
    batch = next(iter(lm.train_dataset(cfg, tokenizer)))
    evals = lm.eval_batches(cfg, tokenizer, 'test')
  assert asked[:3] == [('lm1b', 'train', False), ('lm1b', 'train', False),
                       ('lm1b', 'test', False)]
  assert all(isinstance(t, str) for d in texts.values() for t in d)
  assert len(texts['test']) == 200
  train_ids, valid_ids = set(splits['train'].indices), set(
      splits['valid'].indices)
  assert not train_ids & valid_ids and train_ids | valid_ids == set(range(200))
  assert 8 <= len(valid_ids) <= 35
  assert batch['targets'].shape == (4, 32)
  assert sum(b['weights'].sum() for b in evals) == sum(
      len(t) + 1 for t in texts['test'])


def test_tfds_held_out_is_stable():
  held = lm.tfds_held_out(100_000)
  assert abs(held.mean() - 0.1) < 0.005
  np.testing.assert_array_equal(held[:1000], lm.tfds_held_out(1000))


def test_tfds_missing_fails_fast(tmp_path):
  cfg = config('tfds', tfds_name='lm1b', tfds_data_dir=str(tmp_path))
  with pytest.raises(DataError) as error:
    lm.load_documents(cfg, 'train')
  assert 'tfds build lm1b --file_format=array_record' in str(error.value)
  assert f'--data_dir={tmp_path}' in str(error.value)
  with pytest.raises(DataError, match='lm1b'):
    lm.load_documents(config('tfds'), 'train')  # the translation default


# ---------------------------------------------------------------------------
# bible
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def bible_splits(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('bible_lm'))
  cfg = config('bible', data_dir=root)
  return cfg, {s: lm.load_documents(cfg, s) for s in SPLITS}


@needs_diatheke
def test_bible_no_test_chapter_is_trained_on(bible_splits):
  _, splits = bible_splits
  chapters = {s: [d.origin(i) for i in range(len(d))]
              for s, d in splits.items()}
  for split, keys in chapters.items():
    assert len(keys) == len(set(keys))
    assert all(bible.split_of(book, chapter) == split
               for book, chapter in keys), split
  assert not set(chapters['train']) & set(chapters['test'])
  assert len(chapters['test']) >= 50 and len(chapters['valid']) >= 50
  # Every chapter of the split's books, in canonical order.
  order = [(bible.BOOKS.index(b), c) for b, c in chapters['train']]
  assert order == sorted(order)
  test_texts = set(all_docs(splits['test']))
  assert not test_texts & set(all_docs(splits['train']))


@needs_diatheke
def test_bible_chapters_are_verses_on_lines(bible_splits):
  cfg, splits = bible_splits
  by_key = {d.origin(i): d[i] for d in splits.values() for i in range(len(d))}
  genesis = by_key[('Genesis', 1)].split('\n')
  assert genesis[0] == ('In the beginning, God created the heavens and the '
                        'earth.')
  assert len(genesis) == 31
  assert 'Jesus wept.' in by_key[('John', 11)].split('\n')
  assert ('Tobit', 1) in by_key  # the deuterocanon is in the English module
  tokenizer = tokenizer_lib.load_or_train(
      dataclasses.replace(cfg, data=dataclasses.replace(cfg.data,
                                                        tokenizer='char'),
                          model=dataclasses.replace(cfg.model,
                                                    vocab_size=128)),
      str(os.path.join(cfg.data.data_dir, 'tok')),
      lambda: lm.tokenizer_corpus(dataclasses.replace(
          cfg, data=dataclasses.replace(cfg.data, tokenizer='char'))))
  assert '\n' in tokenizer.chars
  size = lm.eval_text_size(cfg, 'test')
  texts = all_docs(splits['test'])
  assert size['characters'] == sum(len(t) + 1 for t in texts)


def test_bible_without_diatheke_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setattr(bible, 'DIATHEKE', 'no-such-diatheke-here')
  with pytest.raises(DataError, match='apt-get install'):
    lm.load_documents(config('bible', data_dir=str(tmp_path)), 'train')
  with pytest.raises(DataError, match="'en' and 'es'"):
    lm.load_documents(config('bible', language='fr'), 'train')


@pytest.mark.parametrize('task,name', [('language_model', 'test.txt'),
                                       ('classification', 'test.tsv')])
def test_missing_optional_test_file_is_named_before_training(tmp_path, task,
                                                              name):
  config = dataclasses.replace(
      Config(), task=task,
      data=dataclasses.replace(Config().data, source='text',
                               text_dir=str(tmp_path)))
  train = 'train.txt' if task == 'language_model' else 'train.tsv'
  (tmp_path / train).write_text('text\tlabel\nsome words\ta\n')
  missing = tasks.missing_split(config, 'test')
  assert missing is not None and str(tmp_path) in missing
  assert tasks.missing_split(config, 'valid') is None  # held out of train
  (tmp_path / name).write_text('text\tlabel\nother words\ta\n')
  assert tasks.missing_split(config, 'test') is None
  assert tasks.missing_split(dataclasses.replace(
      config, data=dataclasses.replace(config.data, source='toy')),
                             'test') is None
