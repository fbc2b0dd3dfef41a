"""Tests of the data pipeline: sources, tokenizer, training and eval batches.

References are computed independently: lines read with plain `open()`, ids
from `Tokenizer.encode` plus EOS, multisets with collections.Counter.
"""

import collections
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from transformer.config import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, Config,
                                DataConfig, ModelConfig)
from transformer.data import tokenizer as tokenizer_lib
from transformer.tasks.translation import pipeline, sources
from transformer.data.corpus import DataError
from transformer.data import corpus

TOY_VOCAB = 200  # SentencePiece can make at most 226 pieces of the toy words.


def toy_config(**data) -> Config:
  defaults = dict(source='toy', tokenizer_sentences=4000, max_length=32,
                  batch_size=8, eval_batch_size=16, eval_max_length=32)
  return Config(seed=0, model=ModelConfig(vocab_size=TOY_VOCAB),
                data=DataConfig(**(defaults | data)))


@pytest.fixture(scope='session')
def toy_tokenizer(tmp_path_factory):
  directory = tmp_path_factory.mktemp('toy_tokenizer')
  return tokenizer_lib.load_or_train(toy_config(), str(directory))


# A small parallel corpus with accents and punctuation ('text' source).
SPANISH = ('el niño come pan', '¿dónde está él?', 'la canción es muy bonita',
           'mañana llueve otra vez', 'ella leyó un libro', 'sí, señor',
           'el agua está fría', 'los árboles crecen', 'tú y yo', 'qué día')
ENGLISH = ('the child eats bread', 'where is he?', 'the song is very pretty',
           'tomorrow it rains again', 'she read a book', 'yes, sir',
           'the water is cold', 'the trees grow', 'you and I', 'what a day')


def write_corpus(directory, split, pairs):
  os.makedirs(directory, exist_ok=True)
  for ext, side in (('src', 0), ('tgt', 1)):
    with open(os.path.join(directory, f'{split}.{ext}'), 'w',
              encoding='utf-8') as f:
      f.writelines(pair[side] + '\n' for pair in pairs)


def text_pairs(n, seed=0):
  """n distinct pairs: numbered combinations of the sentences above."""
  rng = np.random.default_rng(seed)
  pairs = []
  for i in range(n):
    k = int(rng.integers(1, 4))
    idx = rng.integers(0, len(SPANISH), k)
    pairs.append((' '.join(SPANISH[j] for j in idx) + f' {i}',
                  ' '.join(ENGLISH[j] for j in idx) + f' {i}'))
  return pairs


def text_config(directory, **data) -> Config:
  defaults = dict(source='text', text_dir=str(directory), max_length=32,
                  batch_size=4, tokenizer_sentences=10_000,
                  eval_batch_size=8, eval_max_length=24)
  return Config(seed=0, model=ModelConfig(vocab_size=TOY_VOCAB),
                data=DataConfig(**(defaults | data)))


@pytest.fixture(scope='session')
def text_corpus(tmp_path_factory):
  directory = tmp_path_factory.mktemp('text_corpus')
  write_corpus(directory, 'train', text_pairs(120))
  write_corpus(directory, 'valid', text_pairs(21, seed=1))
  return directory


@pytest.fixture(scope='session')
def text_tokenizer(text_corpus):
  config = text_config(text_corpus, tokenizer='bpe')
  config = dataclasses.replace(config, model=ModelConfig(vocab_size=120))
  return tokenizer_lib.load_or_train(config, str(text_corpus / 'tok'))


def read_pairs(directory, split):
  with open(os.path.join(directory, f'{split}.src'), encoding='utf-8') as f:
    src = f.read().split('\n')[:-1]
  with open(os.path.join(directory, f'{split}.tgt'), encoding='utf-8') as f:
    tgt = f.read().split('\n')[:-1]
  return list(zip(src, tgt))


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def segments(batch):
  """(source ids, target ids) of every sentence in a batch of rows."""
  out = []
  for r in range(batch['inputs'].shape[0]):
    for s in range(1, batch['inputs_segmentation'][r].max() + 1):
      src = batch['inputs'][r][batch['inputs_segmentation'][r] == s]
      tgt = batch['targets'][r][batch['targets_segmentation'][r] == s]
      out.append((tuple(src.tolist()), tuple(tgt.tolist())))
  return out


# ---------------------------------------------------------------------------
# Sources.
# ---------------------------------------------------------------------------


def test_toy_source_is_deterministic_and_reversed():
  train = sources.load_split(toy_config().data, 'train')
  assert len(train) == 20_000
  assert len(sources.load_split(toy_config().data, 'valid')) == 500
  again = sources.Toy('train')
  for i in (0, 1, 777, 19_999):
    source, target = train[i]
    assert (source, target) == again[i]
    words = source.split()
    assert 3 <= len(words) <= 12
    assert set(words) <= set(sources.TOY_WORDS)
    assert target.split() == words[::-1]
  assert train[0] != sources.Toy('valid')[0]


def test_text_lines_index_matches_reference(tmp_path, monkeypatch):
  # Tiny chunks: lines and multi-byte characters straddle chunk boundaries.
  monkeypatch.setattr(corpus, '_INDEX_CHUNK', 5)
  lines = ['uno', '', 'dós ñandú', 'tres\r', '¿cuatro?', 'x' * 23, 'último']
  path = tmp_path / 'f.txt'
  path.write_bytes('\n'.join(lines).encode('utf-8'))  # no final newline
  text = corpus.TextLines(str(path))
  expected = [line.rstrip('\r') for line in lines]
  assert len(text) == len(expected)
  assert [text[i] for i in range(len(text))] == expected
  assert text[-1] == 'último'
  # Survives pickling (grain worker processes).
  import pickle  # pylint: disable=import-outside-toplevel
  assert pickle.loads(pickle.dumps(text))[2] == 'dós ñandú'
  empty = tmp_path / 'empty.txt'
  empty.write_bytes(b'')
  assert len(corpus.TextLines(str(empty))) == 0


def test_text_different_line_counts(tmp_path):
  write_corpus(tmp_path, 'train', [('a', 'b'), ('c', 'd'), ('e', 'f')])
  with open(tmp_path / 'train.tgt', 'a', encoding='utf-8') as f:
    f.write('extra\n')
  with pytest.raises(DataError) as error:
    sources.load_split(text_config(tmp_path).data, 'train')
  message = str(error.value)
  assert str(tmp_path / 'train.src') in message and '3' in message
  assert str(tmp_path / 'train.tgt') in message and '4' in message


def test_text_invalid_utf8_names_file_and_line(tmp_path, monkeypatch):
  monkeypatch.setattr(corpus, '_INDEX_CHUNK', 4)
  write_corpus(tmp_path, 'train', [('bien', 'good')] * 5)
  path = tmp_path / 'train.tgt'
  path.write_bytes(b'good\ngood\ngood\ngo\xff\xfeod\ngood\n')
  with pytest.raises(DataError, match=rf'{path}: line 4: invalid UTF-8'):
    sources.load_split(text_config(tmp_path).data, 'train')


def test_text_missing_files(tmp_path, text_corpus):
  with pytest.raises(DataError, match=str(text_corpus / 'test.src')):
    sources.load_split(text_config(text_corpus).data, 'test')
  with pytest.raises(DataError, match='text_dir'):
    sources.load_split(DataConfig(source='text'), 'train')
  with pytest.raises(DataError, match='split'):
    sources.load_split(toy_config().data, 'dev')


def test_tfds_mock_data_source():
  tfds = pytest.importorskip('tensorflow_datasets')
  config = DataConfig(source='tfds', tfds_name='wmt14_translate/de-en',
                      direction='de-en')
  with tfds.testing.mock_data(num_examples=6):
    valid = sources.load_split(config, 'valid')
    reverse = sources.load_split(
        dataclasses.replace(config, direction='en-de'), 'valid')
    assert len(valid) == 6
    for i in range(6):
      source, target = valid[i]
      assert isinstance(source, str) and isinstance(target, str)
      assert reverse[i] == (target, source)
    with pytest.raises(DataError, match='de-en'):
      sources.load_split(dataclasses.replace(config, direction='fr-en'),
                         'train')


@pytest.fixture(scope='session')
def tiny_tfds_dir(tmp_path_factory):
  """A real TFDS translation dataset in ArrayRecord files (no TensorFlow)."""
  tfds = pytest.importorskip('tensorflow_datasets')

  class TransformerTestTranslate(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.Translation(languages=('de', 'en')))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {'train': self._generate_examples(5),
              'validation': self._generate_examples(3)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {'de': f'Grüße, Welt {i}', 'en': f'greetings, world {i}'}

  directory = str(tmp_path_factory.mktemp('tfds'))
  TransformerTestTranslate(data_dir=directory,
                           file_format='array_record').download_and_prepare()
  return directory


def test_tfds_array_record_files(tiny_tfds_dir):
  config = DataConfig(source='tfds', tfds_name='transformer_test_translate',
                      tfds_data_dir=tiny_tfds_dir, direction='en-de')
  valid = sources.load_split(config, 'valid')
  assert len(valid) == 3 and len(sources.load_split(config, 'train')) == 5
  assert sorted(valid[i] for i in range(3)) == [
      (f'greetings, world {i}', f'Grüße, Welt {i}') for i in range(3)]


def test_tfds_missing_data_fails_fast(tmp_path):
  config = DataConfig(source='tfds', tfds_name='wmt14_translate/de-en',
                      tfds_data_dir=str(tmp_path), direction='de-en')
  # A DataError that says how to build the data, not a download attempt.
  with pytest.raises(DataError) as error:
    sources.load_split(config, 'train')
  message = str(error.value)
  assert 'tfds build wmt14_translate/de-en' in message
  assert 'array_record' in message and str(tmp_path) in message
  assert 'pip install -e .[wmt]' in message


# ---------------------------------------------------------------------------
# Tokenizer.
# ---------------------------------------------------------------------------


def test_tokenizer_special_ids_and_size(toy_tokenizer):
  assert toy_tokenizer.vocab_size == TOY_VOCAB
  assert [toy_tokenizer.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID,
                                                 EOS_ID)] == [
                                                     '<pad>', '<unk>', '<s>',
                                                     '</s>']
  ids = toy_tokenizer.encode('dad hold from dark')
  assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
  # decode stops at EOS and ignores PAD and BOS.
  noisy = [BOS_ID] + ids + [EOS_ID] + ids + [PAD_ID, PAD_ID]
  assert toy_tokenizer.decode(noisy) == 'dad hold from dark'
  assert toy_tokenizer.decode(np.array([PAD_ID] + ids)) == 'dad hold from dark'


def test_tokenizer_round_trip_on_corpus(text_tokenizer, text_corpus):
  assert text_tokenizer.vocab_size == 120
  pairs = read_pairs(text_corpus, 'train')
  for source, target in pairs:
    for text in (source, target):
      assert text_tokenizer.decode(text_tokenizer.encode(text)) == text
  # Normalisation: NFKC and collapsed whitespace.
  assert text_tokenizer.normalize('el  niño\u00a0come ') == 'el niño come'
  assert text_tokenizer.decode(text_tokenizer.encode(' el  niño ')) == 'el niño'


def test_tokenizer_is_loaded_not_retrained(tmp_path):
  config = toy_config(tokenizer_sentences=500)
  first = tokenizer_lib.load_or_train(config, str(tmp_path))
  assert first.training_seconds is not None
  mtime = os.path.getmtime(first.path)
  second = tokenizer_lib.load_or_train(config, str(tmp_path))
  assert second.training_seconds is None
  assert os.path.getmtime(second.path) == mtime
  assert sorted(os.listdir(tmp_path)) == ['tokenizer.model',
                                          'tokenizer.vocab']
  # Training is deterministic: same seed and corpus, same pieces.
  again = tokenizer_lib.load_or_train(config, str(tmp_path / 'again'))
  assert ([again.id_to_piece(i) for i in range(TOY_VOCAB)] ==
          [first.id_to_piece(i) for i in range(TOY_VOCAB)])
  wrong = dataclasses.replace(config, model=ModelConfig(vocab_size=150))
  with pytest.raises(DataError, match='model.vocab_size=150'):
    tokenizer_lib.load_or_train(wrong, str(tmp_path))


def test_tokenizer_vocab_too_large(tmp_path):
  config = dataclasses.replace(toy_config(tokenizer_sentences=200),
                               model=ModelConfig(vocab_size=5000))
  with pytest.raises(DataError, match=r'model.vocab_size=5000.*at most \d+'):
    tokenizer_lib.load_or_train(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'tokenizer.model')
  assert not os.listdir(tmp_path)  # no temporary directory left behind


@pytest.mark.parametrize('model_type', ['unigram', 'bpe'])
def test_tokenizer_vocab_too_small_for_the_characters(tmp_path, model_type):
  """Each character of the corpus (and the word boundary) needs a piece of
  its own beside the 4 specials: one fewer is a DataError naming the
  number, exactly that many trains."""
  letters = 'abcdefghijklmnopqrstuvwxyzáéíóúñü0123456789'
  words = [''.join(letters[(7 * i + 3 * j) % len(letters)]
                   for j in range(2 + i % 5)) for i in range(300)]
  pairs = [(' '.join(words[i:i + 5]), ' '.join(words[i + 5:i + 8]))
           for i in range(290)]
  characters = set(''.join(s + t for s, t in pairs)) - {' '}
  assert len(characters) == len(letters)
  needed = len(characters) + 1 + 4  # + the word boundary, + the specials
  config = dataclasses.replace(
      text_config(tmp_path, tokenizer=model_type),
      model=ModelConfig(vocab_size=needed - 1))
  with pytest.raises(DataError) as error:
    tokenizer_lib.load_or_train(config, str(tmp_path), lambda: pairs)
  message = str(error.value)
  assert message.startswith(f'model.vocab_size={needed - 1} is too small')
  assert f'its {needed - 4} characters' in message
  assert f'at least {needed} pieces' in message
  assert 'data.character_coverage' in message
  assert 'data.tokenizer=char' in message
  assert not os.listdir(tmp_path)  # nothing left behind
  enough = dataclasses.replace(config, model=ModelConfig(vocab_size=needed))
  assert tokenizer_lib.load_or_train(enough, str(tmp_path),
                                     lambda: pairs).vocab_size == needed


# ---------------------------------------------------------------------------
# Training batches.
# ---------------------------------------------------------------------------


def check_packed_row(tokens, segmentation, positions, max_length):
  assert tokens.shape == (max_length,) and tokens.dtype == np.int32
  used = np.flatnonzero(segmentation)
  n = len(used)
  # Padding only at the end, with segment 0, position 0 and PAD.
  assert np.array_equal(used, np.arange(n))
  assert not segmentation[n:].any() and not positions[n:].any()
  assert (tokens[n:] == PAD_ID).all() and (tokens[:n] != PAD_ID).all()
  # Segments 1, 2, ... consecutive; positions restart at 0; EOS last.
  ids = segmentation[:n]
  assert ids[0] == 1 and set(np.diff(ids)) <= {0, 1}
  for s in range(1, ids.max() + 1):
    span = np.flatnonzero(ids == s)
    assert np.array_equal(positions[span], np.arange(len(span)))
    assert tokens[span[-1]] == EOS_ID
    assert EOS_ID not in tokens[span[:-1]]


def test_packed_batches_invariants(toy_tokenizer):
  config = toy_config()
  batches = take(iter(pipeline.train_dataset(config, toy_tokenizer)), 10)
  for batch in batches:
    assert sorted(batch) == sorted(pipeline.BATCH_KEYS)
    for key in pipeline.BATCH_KEYS:
      assert batch[key].shape == (8, 32) and batch[key].dtype == np.int32
    for r in range(8):
      for side in ('inputs', 'targets'):
        check_packed_row(batch[side][r], batch[f'{side}_segmentation'][r],
                         batch[f'{side}_positions'][r], 32)
      # Both sides hold the same sentences.
      assert (batch['inputs_segmentation'][r].max() ==
              batch['targets_segmentation'][r].max())
  assert pipeline.packing_efficiency(batches) > 0.8
  # The target of every packed pair reverses its source (the toy task).
  for src, tgt in segments(batches[0]):
    source = toy_tokenizer.decode(list(src))
    assert toy_tokenizer.decode(list(tgt)).split() == source.split()[::-1]


def reference_examples(tokenizer, pairs, max_length, overlong):
  """Counter of (source ids, target ids), computed without the pipeline."""
  counter = collections.Counter()
  for source, target in pairs:
    if not source.strip() or not target.strip():
      continue
    src = tokenizer.encode(source) + [EOS_ID]
    tgt = tokenizer.encode(target) + [EOS_ID]
    if max(len(src), len(tgt)) > max_length:
      if overlong == 'drop':
        continue
      if len(src) > max_length:
        src = src[:max_length - 1] + [EOS_ID]
      if len(tgt) > max_length:
        tgt = tgt[:max_length - 1] + [EOS_ID]
    counter[(tuple(src), tuple(tgt))] += 1
  return counter


@pytest.mark.parametrize('overlong', ['drop', 'truncate'])
def test_one_epoch_holds_every_pair_exactly_once(tmp_path, text_tokenizer,
                                                 overlong):
  pairs = text_pairs(90, seed=3)
  pairs[5] = ('', 'no source')
  pairs[6] = ('   ', '   ')
  pairs[7] = (pairs[7][0] + ' ' + ' '.join(SPANISH * 3), pairs[7][1])
  pairs[8] = pairs[9]  # a duplicate is kept twice
  write_corpus(tmp_path, 'train', pairs)
  config = text_config(tmp_path, overlong=overlong, max_length=40)
  reference = reference_examples(text_tokenizer,
                                 read_pairs(tmp_path, 'train'), 40, overlong)
  ds = pipeline.train_dataset(config, text_tokenizer, num_epochs=1)
  batches = list(ds)
  got = collections.Counter(s for b in batches for s in segments(b))
  assert got == reference
  for b in batches:
    for r in range(b['inputs'].shape[0]):
      check_packed_row(b['inputs'][r], b['inputs_segmentation'][r],
                       b['inputs_positions'][r], 40)
  counts = pipeline.filter_counts(config, text_tokenizer)
  assert counts['pairs'] == 90 and counts['empty'] == 2
  assert counts['kept'] == sum(reference.values())
  key = 'overlong_dropped' if overlong == 'drop' else 'overlong_truncated'
  overlong_pairs = sum(
      1 for s, t in pairs if s.strip() and t.strip() and
      max(len(text_tokenizer.encode(s)), len(text_tokenizer.encode(t))) >= 40)
  assert counts[key] == overlong_pairs >= 1


def overlong_corpus(directory, tokenizer, long_at, max_length):
  """text_pairs(60) with ~280 more tokens on the source or the target at
  `long_at`; checks with the tokenizer that exactly those are over-long."""
  pairs = text_pairs(60, seed=4)
  long = ' '.join(SPANISH * 3)
  for n, i in enumerate(long_at):
    pairs[i] = ((pairs[i][0] + ' ' + long, pairs[i][1]) if n % 2 else
                (pairs[i][0], pairs[i][1] + ' ' + long))
  write_corpus(directory, 'train', pairs)
  over = [i for i, (s, t) in enumerate(pairs) if max(
      len(tokenizer.encode(s)), len(tokenizer.encode(t))) + 1 > max_length]
  assert over == sorted(long_at)
  return pairs


def test_dropped_overlong_pairs_are_counted_at_the_start(tmp_path, capsys,
                                                          text_tokenizer):
  long_at = [2, 11, 12, 30, 47, 58, 59]
  overlong_corpus(tmp_path, text_tokenizer, long_at, 64)
  config = text_config(tmp_path, max_length=64)
  pipeline.train_dataset(config, text_tokenizer)
  assert capsys.readouterr().out == (
      'Note: 7 of 60 training pairs (11.67%) are longer than '
      "data.max_length=64 tokens and are dropped (data.overlong='drop'; set "
      'data.overlong=truncate or raise data.max_length to keep them).\n')
  # Only process 0 says so; nothing is dropped with 'truncate'.
  pipeline.train_dataset(config, text_tokenizer, process_index=1,
                         process_count=2)
  truncate = text_config(tmp_path, max_length=64, overlong='truncate')
  pipeline.train_dataset(truncate, text_tokenizer)
  # Nothing over-long, nothing said.
  pipeline.train_dataset(text_config(tmp_path, max_length=512),
                         text_tokenizer)
  assert capsys.readouterr().out == ''


def test_overlong_count_of_a_large_corpus_is_sampled(tmp_path, monkeypatch,
                                                     text_tokenizer):
  long_at = list(range(0, 60, 4))  # 15 of 60
  overlong_corpus(tmp_path, text_tokenizer, long_at, 64)
  monkeypatch.setattr(pipeline, 'OVERLONG_SAMPLE', 30)
  config = text_config(tmp_path, max_length=64)
  pairs = sources.load_split(config.data, 'train')
  # 30 evenly spaced of the 60 pairs: round(i * 59 / 29).
  sampled = [round(i * 59 / 29) for i in range(30)]
  assert len(set(sampled)) == 30
  dropped = sum(i in long_at for i in sampled)
  assert pipeline.overlong_note(config, text_tokenizer, pairs).startswith(
      f'Note: about {dropped / 30:.2%} of the 60 training pairs ({dropped} '
      'of 30 evenly spaced ones) are longer than data.max_length=64 tokens')


def test_unpacked_rows_and_reshuffle_each_epoch(text_corpus, text_tokenizer):
  config = text_config(text_corpus, pack=False, batch_size=5)
  batches = list(pipeline.train_dataset(config, text_tokenizer, num_epochs=2))
  rows = [s for b in batches for s in segments(b)]
  assert all(b['inputs_segmentation'].max(axis=1).max() == 1 for b in batches)
  reference = reference_examples(text_tokenizer,
                                 read_pairs(text_corpus, 'train'), 32, 'drop')
  n = sum(reference.values())
  assert len(rows) == 2 * n
  first, second = rows[:n], rows[n:]
  assert collections.Counter(first) == reference
  assert collections.Counter(second) == reference
  assert first != second  # a new order in the second epoch


def test_deterministic_and_seeded(toy_tokenizer):
  config = toy_config()
  a = take(iter(pipeline.train_dataset(config, toy_tokenizer)), 6)
  b = take(iter(pipeline.train_dataset(config, toy_tokenizer)), 6)
  assert_batches_equal(a, b)
  other = dataclasses.replace(config, seed=1)
  c = take(iter(pipeline.train_dataset(other, toy_tokenizer)), 6)
  assert not np.array_equal(a[0]['inputs'], c[0]['inputs'])


@pytest.mark.parametrize('pack', [True, False])
def test_resume_from_state(toy_tokenizer, pack):
  config = toy_config(pack=pack)
  ds = pipeline.train_dataset(config, toy_tokenizer)
  uninterrupted = take(iter(ds), 12)
  for k in (1, 5, 9):
    it = iter(ds)
    take(it, k)
    state = json.loads(json.dumps(it.get_state()))  # as in a checkpoint
    fresh = iter(pipeline.train_dataset(config, toy_tokenizer))
    fresh.set_state(state)
    assert_batches_equal(take(fresh, 3), uninterrupted[k:k + 3])


def test_host_shards_partition_the_data(text_corpus, text_tokenizer):
  config = text_config(text_corpus, pack=False, batch_size=4)
  reference = reference_examples(text_tokenizer,
                                 read_pairs(text_corpus, 'train'), 32, 'drop')
  shards = []
  for index in range(2):
    ds = pipeline.train_dataset(config, text_tokenizer, process_index=index,
                                process_count=2, num_epochs=1)
    batches = list(ds)
    assert all(b['inputs'].shape[0] <= 2 for b in batches)
    assert batches[0]['inputs'].shape == (2, 32)
    shards.append(collections.Counter(s for b in batches for s in segments(b)))
  assert not set(shards[0]) & set(shards[1])  # pairs are distinct (numbered)
  assert shards[0] + shards[1] == reference
  assert [pipeline.filter_counts(config, text_tokenizer, process_index=i,
                                 process_count=2)['pairs']
          for i in range(2)] == [60, 60]
  with pytest.raises(DataError, match='batch_size=4 must be divisible'):
    pipeline.train_dataset(config, text_tokenizer, process_count=3)


def test_fixed_shards_give_the_same_batches_for_any_process_count(
    toy_tokenizer):
  config = toy_config(shards=4, batch_size=8)
  one = take(iter(pipeline.train_dataset(config, toy_tokenizer)), 4)
  two = [take(iter(pipeline.train_dataset(config, toy_tokenizer,
                                          process_index=p, process_count=2)),
              4) for p in range(2)]
  for step in range(4):
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(
          np.concatenate([two[0][step][key], two[1][step][key]]),
          one[step][key])
  # Resuming a process that reads two shards restores both.
  it = iter(pipeline.train_dataset(config, toy_tokenizer, process_index=1,
                                   process_count=2))
  take(it, 2)
  fresh = iter(pipeline.train_dataset(config, toy_tokenizer, process_index=1,
                                      process_count=2))
  fresh.set_state(json.loads(json.dumps(it.get_state())))
  assert_batches_equal(take(fresh, 2), two[1][2:4])
  with pytest.raises(DataError, match='data.shards=4 must be a multiple'):
    pipeline.train_dataset(config, toy_tokenizer, process_count=3)


def test_empty_after_filtering_is_an_error(tmp_path, text_tokenizer):
  long = ' '.join(SPANISH * 4)
  write_corpus(tmp_path, 'train', [('', 'x'), (long, 'y'), ('z', '  ')])
  with pytest.raises(DataError, match='no usable sentence pair'):
    pipeline.train_dataset(text_config(tmp_path, max_length=16),
                           text_tokenizer)
  write_corpus(tmp_path, 'train', [])
  with pytest.raises(DataError, match='no usable sentence pair'):
    pipeline.train_dataset(text_config(tmp_path), text_tokenizer)


def test_worker_process_gives_the_same_batches(toy_tokenizer):
  config = toy_config()
  expected = take(iter(pipeline.train_dataset(config, toy_tokenizer)), 4)
  workers = dataclasses.replace(
      config, data=dataclasses.replace(config.data, worker_count=1))
  it = iter(pipeline.train_dataset(workers, toy_tokenizer))
  try:
    assert_batches_equal(take(it, 3), expected[:3])
    state = json.loads(json.dumps(it.get_state()))
  finally:
    it.close()
  # The state of a pipeline with workers restores one with as many workers.
  fresh = iter(pipeline.train_dataset(workers, toy_tokenizer))
  try:
    fresh.set_state(state)
    assert_batches_equal([next(fresh)], expected[3:])
  finally:
    fresh.close()


def test_measure_input_pipeline(toy_tokenizer):
  result = pipeline.measure_input_pipeline(toy_config(), toy_tokenizer,
                                           num_batches=5, warmup_batches=1)
  assert result['batches_per_second'] > 0
  assert 0.5 < result['packing_efficiency'] <= 1.0


# ---------------------------------------------------------------------------
# Evaluation batches.
# ---------------------------------------------------------------------------


def test_eval_keeps_every_example_in_order(text_corpus, text_tokenizer):
  config = text_config(text_corpus, eval_batch_size=8, eval_max_length=20)
  pairs = read_pairs(text_corpus, 'valid')  # 21 pairs: 8 + 8 + 5
  data = pipeline.eval_dataset(config, text_tokenizer, 'valid')
  assert data.num_examples == len(pairs) == 21 and len(data) == 3
  assert data.sources == [s for s, _ in pairs]
  assert data.references == [t for _, t in pairs]
  truncated = 0
  for b, eval_batch in enumerate(data):
    chunk = pairs[8 * b:8 * b + 8]
    assert eval_batch.valid.tolist() == [True] * len(chunk) + [False] * (
        8 - len(chunk))
    for side, texts in (('inputs', [s for s, _ in chunk]),
                        ('targets', [t for _, t in chunk])):
      tokens = eval_batch.batch[side]
      # Lengths: a multiple of 8, or the cap eval_max_length=20.
      assert tokens.shape[0] == 8 and tokens.shape[1] in (8, 16, 20)
      assert not tokens[len(chunk):].any()  # PAD rows
      for r, text in enumerate(texts):
        ids = text_tokenizer.encode(text) + [EOS_ID]
        if len(ids) > 20:
          ids = ids[:19] + [EOS_ID]
        row = tokens[r][eval_batch.batch[f'{side}_segmentation'][r] == 1]
        assert row.tolist() == ids
    truncated += sum(
        max(len(text_tokenizer.encode(s)), len(text_tokenizer.encode(t))) + 1
        > 20 for s, t in chunk)
  assert data.truncated == truncated > 0
  first = pipeline.eval_dataset(config, text_tokenizer, 'valid',
                                num_examples=10)
  assert first.references == [t for _, t in pairs[:10]]
  assert [b.valid.sum() for b in first] == [8, 2]


# ---------------------------------------------------------------------------
# The Bible corpus (needs diatheke and the SWORD modules).
# ---------------------------------------------------------------------------


def _bible_skip_reason():
  from transformer.data import bible  # pylint: disable=import-outside-toplevel
  return ('diatheke is not on PATH; install the Bible corpus with: '
          f'{bible.INSTALL_COMMAND}')


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('diatheke') is None,
                    reason=_bible_skip_reason())
def test_bible_packing_efficiency(tmp_path):
  config = Config(seed=0, model=ModelConfig(vocab_size=2000),
                  data=DataConfig(source='bible', direction='es-en',
                                  max_length=128, batch_size=64,
                                  tokenizer_sentences=10_000))
  train = sources.load_split(config.data, 'train')
  assert len(train) > 20_000
  assert 'Dios' in train[0][0] and 'God' in train[0][1]  # es -> en
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path))
  batches = take(iter(pipeline.train_dataset(config, tokenizer)), 20)
  assert batches[0]['inputs'].shape == (64, 128)
  assert pipeline.packing_efficiency(batches) >= 0.90
