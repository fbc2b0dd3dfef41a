"""Tests of the character tokenizer (data.tokenizer='char').

References are computed independently: character counts with
collections.Counter over the same training lines, ids by hand.
"""

import collections
import dataclasses
import json
import os
import pickle

import numpy as np
import pytest

from transformer import config as config_lib
from transformer.config import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, Config,
                                DataConfig, ModelConfig)
from transformer.data import tokenizer as tokenizer_lib
from transformer.tasks.translation import sources
from transformer.data.corpus import DataError
from transformer.data.tokenizer import CharTokenizer

# Newlines, tabs, accents, Greek and an emoji (outside the BMP).
TEXT = 'Él dijo:\n\t«mañana»\nΑλφα βήτα 🙂 ñu é\n'
VOCAB = 64


def char_config(vocab_size: int = VOCAB, **data) -> Config:
  """The tests/test_data.py toy config, with characters."""
  defaults = dict(source='toy', tokenizer='char', tokenizer_sentences=500,
                  max_length=32, batch_size=8, eval_batch_size=16,
                  eval_max_length=32)
  return Config(seed=0, model=ModelConfig(vocab_size=vocab_size),
                data=DataConfig(**(defaults | data)))


def reference_vocabulary(lines, num_chars):
  """Most frequent first, ties by code point: what the tokenizer promises."""
  counts = collections.Counter(''.join(lines))
  return sorted(counts, key=lambda c: (-counts[c], ord(c)))[:num_chars]


@pytest.fixture
def text_tokenizer(tmp_path):
  path = str(tmp_path / tokenizer_lib.CHARS_FILENAME)
  return tokenizer_lib.train_chars([(TEXT,)], path, vocab_size=VOCAB)


def test_round_trip_newlines_tabs_non_ascii(text_tokenizer):
  ids = text_tokenizer.encode(TEXT)
  assert len(ids) == len(TEXT)  # one id per code point; the emoji is one
  assert UNK_ID not in ids and min(ids) >= 4
  assert text_tokenizer.decode(ids) == TEXT
  assert text_tokenizer.normalize(TEXT) == TEXT
  assert text_tokenizer.encode('\n\t') == [text_tokenizer.encode('\n')[0],
                                           text_tokenizer.encode('\t')[0]]
  assert text_tokenizer.encode_batch([TEXT, '', 'é']) == [
      ids, [], text_tokenizer.encode('é')]


def test_specials_fixed(text_tokenizer):
  assert [text_tokenizer.id_to_piece(i) for i in range(4)] == [
      '<pad>', '<unk>', '<s>', '</s>']
  assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
  # The specials' names are not characters: '<' encodes as UNK here.
  assert text_tokenizer.encode('<s>') == [UNK_ID] * 3


def test_unknown_characters_are_unk_and_decode_as_replacement(text_tokenizer):
  ids = text_tokenizer.encode('aZé')
  assert ids[0] != UNK_ID and ids[1] == UNK_ID and ids[2] != UNK_ID
  # UNK decodes as U+FFFD REPLACEMENT CHARACTER, as do unused ids.
  assert text_tokenizer.decode(ids) == 'a\ufffdé'
  assert tokenizer_lib.REPLACEMENT_CHAR == '\ufffd'
  unused = text_tokenizer.vocab_size - 1
  assert text_tokenizer.decode([unused]) == '\ufffd'
  assert text_tokenizer.id_to_piece(unused) == tokenizer_lib.UNUSED_PIECE
  with pytest.raises(IndexError):
    text_tokenizer.decode([text_tokenizer.vocab_size])
  with pytest.raises(IndexError):
    text_tokenizer.id_to_piece(-1)


def test_vocabulary_by_frequency_ties_by_code_point(tmp_path):
  lines = ['bbbaa\ncc', 'ddd\t\tzz', 'aé', 'yx']  # many ties
  pairs = [(line,) for line in lines]
  expected = reference_vocabulary(lines, VOCAB - 4)
  # Counts 3, 3, 3, 2, 2, 2, 1, ...: each tie in code point order.
  assert expected == ['a', 'b', 'd', '\t', 'c', 'z', '\n', 'x', 'y', 'é']
  first = tokenizer_lib.train_chars(pairs, str(tmp_path / 'a.json'),
                                    vocab_size=VOCAB)
  again = tokenizer_lib.train_chars(list(reversed(pairs)),
                                    str(tmp_path / 'b.json'), vocab_size=VOCAB)
  assert first.chars == expected == again.chars
  assert [first.id_to_piece(i) for i in range(4, 4 + len(expected))] == expected
  # More characters than ids: the rarest (last in the order) become UNK.
  small = tokenizer_lib.train_chars(pairs, str(tmp_path / 'c.json'),
                                    vocab_size=7)
  assert small.vocab_size == 7 and small.chars == expected[:3]
  assert small.encode('bdaé') == [5, 6, 4, UNK_ID]


def test_vocab_size_equals_model_vocab_size_with_few_characters(
    text_tokenizer):
  assert len(set(TEXT)) + 4 < VOCAB
  assert text_tokenizer.vocab_size == VOCAB
  assert len(text_tokenizer.chars) == len(set(TEXT))
  assert max(text_tokenizer.encode(TEXT)) < 4 + len(set(TEXT))


def test_save_load_identical(text_tokenizer, tmp_path):
  path = text_tokenizer.path
  with open(path, encoding='ascii') as f:
    state = json.load(f)
  assert state == {'format': tokenizer_lib.CHARS_FORMAT,
                   'version': tokenizer_lib.CHARS_VERSION,
                   'vocab_size': VOCAB, 'chars': text_tokenizer.chars}
  loaded = CharTokenizer.load(path)
  assert loaded.chars == text_tokenizer.chars
  assert loaded.vocab_size == VOCAB
  probe = TEXT + 'xyz<>'
  assert loaded.encode(probe) == text_tokenizer.encode(probe)
  assert [loaded.id_to_piece(i) for i in range(VOCAB)] == [
      text_tokenizer.id_to_piece(i) for i in range(VOCAB)]
  assert os.listdir(tmp_path) == [tokenizer_lib.CHARS_FILENAME]  # no temp
  assert 'vocab_size=64' in repr(loaded) and path in repr(loaded)


def test_damaged_or_wrong_format_file_is_a_clear_error(tmp_path):
  path = tmp_path / tokenizer_lib.CHARS_FILENAME
  good = {'format': tokenizer_lib.CHARS_FORMAT,
          'version': tokenizer_lib.CHARS_VERSION, 'vocab_size': 8,
          'chars': ['a', 'b']}
  bad_files = ['{"format": "transformer-char', '[1, 2]', 'ñ',
               json.dumps(good | {'version': 99}),
               json.dumps(good | {'format': 'other'}),
               json.dumps(good | {'chars': ['a', 'a']}),
               json.dumps(good | {'chars': ['ab']}),
               json.dumps(good | {'chars': 'ab'}),
               json.dumps(good | {'vocab_size': 5}),
               json.dumps({k: v for k, v in good.items() if k != 'chars'})]
  for text in bad_files:
    path.write_bytes(text.encode('utf-8'))
    with pytest.raises(DataError, match='delete it to rebuild') as error:
      CharTokenizer.load(str(path))
    assert str(path) in str(error.value)
  path.write_text(json.dumps(good))
  assert CharTokenizer.load(str(path)).chars == ['a', 'b']


def test_pickle(text_tokenizer):
  copy = pickle.loads(pickle.dumps(text_tokenizer))
  assert copy.encode(TEXT) == text_tokenizer.encode(TEXT)
  assert copy.decode(copy.encode(TEXT)) == TEXT
  assert copy.vocab_size == VOCAB and copy.path == text_tokenizer.path


def test_decode_stops_at_eos_ignores_pad_and_bos(text_tokenizer):
  hello = text_tokenizer.encode('maña\n')
  ids = [BOS_ID] + hello[:2] + [PAD_ID] + hello[2:] + [EOS_ID] + hello
  assert text_tokenizer.decode(ids) == 'maña\n'
  assert text_tokenizer.decode(np.array([ids, ids])) == 'maña\n'
  assert text_tokenizer.decode([EOS_ID] + hello) == ''


def test_load_or_train_char_writes_then_loads(tmp_path):
  config = char_config()
  first = tokenizer_lib.load_or_train(config, str(tmp_path))
  assert isinstance(first, CharTokenizer)
  assert first.training_seconds is not None
  assert np.isfinite(first.training_seconds) and first.training_seconds >= 0
  assert sorted(os.listdir(tmp_path)) == [tokenizer_lib.CHARS_FILENAME]
  assert first.vocab_size == VOCAB
  # The same lines SentencePiece would train on (seeded sample).
  lines = tokenizer_lib.training_sentences(
      sources.load_split(config.data, 'train'),
      config.data.tokenizer_sentences, config.seed)
  assert first.chars == reference_vocabulary(list(lines), VOCAB - 4)
  mtime = os.path.getmtime(first.path)
  second = tokenizer_lib.load_or_train(config, str(tmp_path))
  assert second.training_seconds is None
  assert os.path.getmtime(second.path) == mtime
  assert second.chars == first.chars
  source, target = sources.load_split(config.data, 'valid')[0]
  for text in (source, target):
    assert second.decode(second.encode(text)) == text
  wrong = dataclasses.replace(config, model=ModelConfig(vocab_size=50))
  with pytest.raises(DataError, match='model.vocab_size=50'):
    tokenizer_lib.load_or_train(wrong, str(tmp_path))


def test_load_or_train_char_vocab_too_small(tmp_path):
  with pytest.raises(DataError, match='model.vocab_size=4 leaves no ids'):
    tokenizer_lib.load_or_train(char_config(vocab_size=4), str(tmp_path))
  assert not os.listdir(tmp_path)


def test_chosen_with_set_data_tokenizer_char():
  config = config_lib.override(Config(), 'data.tokenizer=char')
  assert config.data.tokenizer == 'char'
