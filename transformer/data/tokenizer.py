"""Tokenizers: SentencePiece (one joint source+target vocabulary), or
characters (data.tokenizer='char', for language models).

Fixed ids, the same in every model this codebase trains (see config.py):

  0 = <pad>  PAD_ID  padding in batches
  1 = <unk>  UNK_ID  a piece not in the vocabulary
  2 = <s>    BOS_ID  the decoder's start token (added by the model)
  3 = </s>   EOS_ID  ends every source and target sentence

`encode` adds neither BOS nor EOS (the pipeline appends EOS); `decode` stops
at the first EOS and ignores PAD and BOS. The vocabulary size always equals
`model.vocab_size` exactly (no soft limit), so the embedding table fits.

`load_or_train(config, directory)` loads `directory/tokenizer.model` (or
`tokenizer.chars.json` for characters), or trains it on the training split
(up to `data.tokenizer_sentences` lines, sampled with `config.seed`) and
writes it atomically.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import tempfile
import time
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from transformer.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Config
from transformer.data.corpus import DataError
from transformer.huggingface import vocabulary as hf_vocabulary
from transformer.huggingface.tokenizer import HuggingFaceTokenizer

MODEL_FILENAME = 'tokenizer.model'
CHARS_FILENAME = 'tokenizer.chars.json'
HF_FILENAME = 'tokenizer.json'  # data.tokenizer='huggingface'
CHARS_FORMAT = 'transformer-char-tokenizer'
CHARS_VERSION = 1
SPECIAL_PIECES = ('<pad>', '<unk>', '<s>', '</s>')  # ids 0-3, as SentencePiece
# What CharTokenizer.decode shows for UNK and for ids no character has.
REPLACEMENT_CHAR = '\ufffd'
UNUSED_PIECE = '<unused>'
# SentencePiece skips longer training sentences (bytes); verses and news
# sentences are far shorter.
MAX_SENTENCE_BYTES = 8192


class Tokenizer:
  """A SentencePiece model with the fixed special ids above."""

  def __init__(self, path: str):
    self.path = path
    self.training_seconds: float | None = None  # set by load_or_train
    self._sp = spm.SentencePieceProcessor(model_file=path)
    ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(),
           self._sp.eos_id())
    if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
      raise DataError(
          f'{path}: special ids (pad, unk, bos, eos) are {ids}, expected '
          f'{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; delete the file to retrain')

  @property
  def vocab_size(self) -> int:
    return self._sp.vocab_size()

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS or EOS."""
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self._sp.encode(list(texts))

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` up to the first EOS; PAD and BOS are ignored."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return self._sp.decode([i for i in ids if i not in (PAD_ID, BOS_ID)])

  def normalize(self, text: str) -> str:
    """`text` as the tokenizer sees it (NFKC, whitespace collapsed): what
    decode(encode(text)) returns when every character is in the vocabulary."""
    return self._sp.decode(self._sp.encode(text, out_type=str))

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def __getstate__(self):
    return {'path': self.path,
            'proto': self._sp.serialized_model_proto()}

  def __setstate__(self, state):
    self.path = state['path']
    self.training_seconds = None
    self._sp = spm.SentencePieceProcessor(model_proto=state['proto'])

  def __repr__(self) -> str:
    return f'Tokenizer({self.path!r}, vocab_size={self.vocab_size})'


class CharTokenizer:
  """One id per character (Unicode code point), after the fixed specials.

  Ids 4.. are the training text's most frequent characters, most frequent
  first (ties by code point), after the `reserved` pieces if any (a masked
  LM's '<mask>' at id 4; no text encodes to them). Ids past the last
  character, up to vocab_size, belong to no character: the vocabulary is
  still exactly model.vocab_size, like SentencePiece's. Characters outside
  it encode as UNK_ID. No normalisation: newlines, tabs and any other
  character are kept as they are, so decode(encode(text)) == text when
  every character is in the vocabulary; UNK and unused ids decode as
  U+FFFD.
  """

  def __init__(self, chars: Sequence[str], vocab_size: int, path: str = '',
               reserved: Sequence[str] = ()):
    if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
      raise ValueError('chars must be distinct single characters')
    specials = list(SPECIAL_PIECES) + list(reserved)
    if len(specials) + len(chars) > vocab_size:
      raise ValueError(f'{len(chars)} characters and {len(specials)} '
                       f'specials do not fit in vocab_size={vocab_size}')
    self.path = path
    self.training_seconds: float | None = None  # set by load_or_train
    self.reserved = tuple(reserved)
    self._pieces = specials + list(chars)
    self._vocab_size = vocab_size
    self._ids = {c: i for i, c in enumerate(chars, len(specials))}

  @property
  def vocab_size(self) -> int:
    return self._vocab_size

  @property
  def chars(self) -> list[str]:
    """The characters in id order, from id 4 (after the reserved pieces)."""
    return self._pieces[len(SPECIAL_PIECES) + len(self.reserved):]

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, one per character, without BOS or EOS."""
    return [self._ids.get(c, UNK_ID) for c in text]

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self.encode(text) for text in texts]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` up to the first EOS; PAD and BOS are ignored, UNK and
    unused ids show as U+FFFD. Raises IndexError outside the vocabulary."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return ''.join(self._char(i) for i in ids if i not in (PAD_ID, BOS_ID))

  def _char(self, i: int) -> str:
    self._check_id(i)
    if i == UNK_ID or i >= len(self._pieces):
      return REPLACEMENT_CHAR
    return self._pieces[i]

  def _check_id(self, i: int) -> None:
    if not 0 <= i < self._vocab_size:
      raise IndexError(f'id {i} is outside the vocabulary of '
                       f'{self._vocab_size}')

  def normalize(self, text: str) -> str:
    """`text` as the tokenizer sees it: unchanged (no normalisation)."""
    return text

  def id_to_piece(self, i: int) -> str:
    i = int(i)
    self._check_id(i)
    return self._pieces[i] if i < len(self._pieces) else UNUSED_PIECE

  def save(self, path: str) -> None:
    """Writes the vocabulary to `path` as JSON, atomically."""
    state = {'format': CHARS_FORMAT, 'version': CHARS_VERSION,
             'vocab_size': self._vocab_size, 'chars': self.chars}
    if self.reserved:  # files without the key have none (as before)
      state['reserved'] = list(self.reserved)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tokenizer-tmp-', dir=directory)
    try:
      with os.fdopen(fd, 'w', encoding='ascii') as f:
        # ASCII escapes: any character (even a lone surrogate) survives.
        json.dump(state, f, ensure_ascii=True, indent=1)
      os.replace(tmp, path)
    except BaseException:
      os.remove(tmp)
      raise
    self.path = path

  @classmethod
  def load(cls, path: str) -> CharTokenizer:
    """The tokenizer `save` wrote to `path`; DataError if it is damaged."""
    try:
      with open(path, encoding='ascii') as f:
        state = json.load(f)
      if (state['format'], state['version']) != (CHARS_FORMAT, CHARS_VERSION):
        raise ValueError(f"format {state['format']!r} version "
                         f"{state['version']!r}, expected {CHARS_FORMAT!r} "
                         f'version {CHARS_VERSION}')
      reserved = state.get('reserved', [])
      if not isinstance(state['vocab_size'], int) or not all(
          isinstance(v, list) and all(isinstance(c, str) for c in v)
          for v in (state['chars'], reserved)):
        raise ValueError('vocab_size must be an integer, chars and reserved '
                         'lists of strings')
      return cls(state['chars'], state['vocab_size'], path, reserved)
    except (UnicodeError, ValueError, KeyError, TypeError) as error:
      raise DataError(f'{path} is not a character tokenizer this code can '
                      f'read ({error}); delete it to rebuild') from None

  def __repr__(self) -> str:
    return (f'CharTokenizer({self.path!r}, vocab_size={self.vocab_size}, '
            f'chars={len(self.chars)})')


def training_sentences(pairs: Sequence[tuple[str, ...]], max_sentences: int,
                       seed: int) -> Iterator[str]:
  """Every string of the tuples in `pairs` (source and target lines, or one
  text), at most `max_sentences` lines in all.

  When the corpus has more, a random subset of tuples (seeded) is taken,
  read in corpus order; every string of a chosen tuple is used.
  """
  width = len(pairs[0]) if len(pairs) else 1
  num_pairs = min(len(pairs), max(1, max_sentences // width))
  if num_pairs == len(pairs):
    indices = range(len(pairs))
  else:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(pairs), num_pairs, replace=False))
  for i in indices:
    for line in pairs[int(i)]:
      if line.strip():
        yield line


def train(pairs: Sequence[tuple[str, str]], path: str, *, vocab_size: int,
          model_type: str = 'unigram', character_coverage: float = 1.0,
          max_sentences: int = 2_000_000, seed: int = 0,
          reserved: Sequence[str] = ()) -> Tokenizer:
  """Trains a SentencePiece model on `pairs` and writes it to `path`.

  reserved: pieces given the ids right after the four specials (4, ...),
  e.g. a masked LM's '<mask>' (SentencePiece's user-defined symbols).

  Written atomically: trained in a temporary directory next to `path`, then
  renamed, so a crash never leaves a half-written model behind.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix='.tokenizer-tmp-', dir=directory)
  try:
    prefix = os.path.join(tmp_dir, 'spm')
    spm.set_random_generator_seed(seed % 2**32)
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=training_sentences(pairs, max_sentences, seed),
          model_prefix=prefix, model_type=model_type, vocab_size=vocab_size,
          character_coverage=character_coverage,
          pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
          pad_piece='<pad>', unk_piece='<unk>', bos_piece='<s>',
          eos_piece='</s>', user_defined_symbols=list(reserved),
          max_sentence_length=MAX_SENTENCE_BYTES,
          num_threads=os.cpu_count() or 1, minloglevel=2)
    except RuntimeError as error:
      fixable = _training_error(error, vocab_size, model_type,
                                character_coverage,
                                len(SPECIAL_PIECES) + len(reserved))
      if fixable is None:
        raise
      raise fixable from None
    os.replace(prefix + '.model', path)
    vocab_path = os.path.splitext(path)[0] + '.vocab'
    os.replace(prefix + '.vocab', vocab_path)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return Tokenizer(path)


def _training_error(error: RuntimeError, vocab_size: int, model_type: str,
                    character_coverage: float,
                    specials: int = len(SPECIAL_PIECES)) -> DataError | None:
  """A DataError for SentencePiece's errors that the config can fix (the
  vocabulary too large or too small for the corpus, no text); else None."""
  message = str(error)
  too_high = re.search(r'Vocabulary size too high \((\d+)\)\. Please set '
                       r'it to a value <= (\d+)', message)
  if too_high:
    return DataError(
        f'model.vocab_size={vocab_size} is too large for this training '
        f'corpus: at most {too_high.group(2)} pieces are possible with '
        f"data.tokenizer='{model_type}'. Set model.vocab_size to "
        f'{too_high.group(2)} or less, or use a larger corpus')
  # Every character kept by the coverage needs a piece of its own, beside
  # the special pieces: "... smaller than required_chars. 20 vs 64."
  too_small = re.search(r'smaller than required_chars\. (\d+) vs (\d+)',
                        message)
  if too_small:
    needed = int(too_small.group(2))
    return DataError(
        f'model.vocab_size={vocab_size} is too small for this training '
        f'corpus: with data.character_coverage={character_coverage} its '
        f'{needed - specials} characters (the word boundary '
        f'included) and the {specials} special tokens need at '
        f"least {needed} pieces with data.tokenizer='{model_type}'. Set "
        f'model.vocab_size to {needed} or more, lower '
        'data.character_coverage (e.g. 0.9995: the rarest characters become '
        '<unk>), or use data.tokenizer=char (one id per character, those '
        'beyond model.vocab_size as <unk>)')
  if 'no sentences' in message.lower() or 'empty' in message.lower():
    return DataError('the training split has no non-empty lines to train '
                     f'the tokenizer on ({error})')
  return None


def char_vocabulary(lines: Iterable[str], num_chars: int) -> list[str]:
  """The `num_chars` most frequent characters of `lines`, most frequent
  first; equal counts in code point order, so the result is deterministic."""
  counts = collections.Counter()
  for line in lines:
    counts.update(line)
  ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return [char for char, _ in ranked[:num_chars]]


def train_chars(pairs: Sequence[tuple[str, ...]], path: str, *,
                vocab_size: int, max_sentences: int = 2_000_000,
                seed: int = 0, reserved: Sequence[str] = ()
                ) -> CharTokenizer:
  """A CharTokenizer of the characters of `pairs` (the lines SentencePiece
  would train on), written to `path`; `reserved` pieces take ids 4, ...."""
  specials = len(SPECIAL_PIECES) + len(reserved)
  num_chars = vocab_size - specials
  if num_chars <= 0:
    raise DataError(
        f"model.vocab_size={vocab_size} leaves no ids for characters with "
        f"data.tokenizer='char' (ids 0-{specials - 1} are the special "
        f'tokens): set it to {specials + 1} or more')
  chars = char_vocabulary(training_sentences(pairs, max_sentences, seed),
                          num_chars)
  if not chars:
    raise DataError('the training split has no non-empty lines to build the '
                    'character vocabulary from')
  tokenizer = CharTokenizer(chars, vocab_size, reserved=reserved)
  tokenizer.save(path)
  return tokenizer


def reserved_pieces(config: Config) -> tuple[str, ...]:
  """The pieces config's task reserves at ids 4, ... (its class's
  RESERVED_PIECES: a masked LM's '<mask>' at MASK_ID); usually none."""
  # Imported here: the task families' modules import this one.
  from transformer import tasks  # pylint: disable=g-import-not-at-top
  return tuple(tasks.family(config).task_class.RESERVED_PIECES)


def check_reserved(config: Config, tokenizer: Tokenizer | CharTokenizer,
                   path: str) -> None:
  """DataError unless a loaded tokenizer holds the pieces config's task
  reserves at their ids (e.g. a language model's tokenizer copied into a
  masked LM's workdir: its id 4 is text, not [MASK])."""
  reserved = reserved_pieces(config)
  first = len(SPECIAL_PIECES)
  found = tuple(tokenizer.id_to_piece(i) for i in range(
      first, min(first + len(reserved), tokenizer.vocab_size)))
  if found != reserved:
    raise DataError(
        f'{path} has {", ".join(found) or "nothing"} at ids {first}..'
        f'{first + len(reserved) - 1}, where task={config.task} needs '
        f'{", ".join(reserved)}: it was trained for another task. Delete it '
        'to retrain, or use a fresh workdir')


def filename(config: Config) -> str:
  """The tokenizer's file in a workdir, by data.tokenizer."""
  return {'char': CHARS_FILENAME, 'huggingface': HF_FILENAME}.get(
      config.data.tokenizer, MODEL_FILENAME)


def load_huggingface(path: str) -> HuggingFaceTokenizer:
  """data.tokenizer='huggingface': `path` (tokenizer.json) and the
  vocabulary map beside it, which train.init_from installs from a Hugging
  Face directory (`transformer.huggingface.install_tokenizer`); never
  trained here."""
  if not os.path.exists(path):
    raise DataError(
        f"data.tokenizer='huggingface' reads {path}, which is missing: it "
        'comes with train.init_from=DIR, a Hugging Face model directory '
        '(config.json, model.safetensors, tokenizer.json). Set '
        'train.init_from, or choose another data.tokenizer (unigram, bpe, '
        'char) to train one')
  return HuggingFaceTokenizer.load(path, os.path.join(
      os.path.dirname(path), hf_vocabulary.FILENAME))


def load_or_train(config: Config, directory: str,
                  corpus: Callable[[], Sequence[tuple[str, ...]]] | None = None
                  ) -> Tokenizer | CharTokenizer | HuggingFaceTokenizer:
  """`directory/tokenizer.model` (data.tokenizer='char':
  `tokenizer.chars.json`), trained on the training split if missing;
  data.tokenizer='huggingface': `tokenizer.json`, installed, never trained
  (`load_huggingface`).

  corpus: gives the texts to train on when needed, as tuples of strings
    (the task's `tokenizer_corpus`); default: that of the config's task
    (`tasks.for_benchmark`: built from the config alone).
  Training: every string of the corpus (source+target lines), at most
  data.tokenizer_sentences (sampled with config.seed), model type
  data.tokenizer, exactly model.vocab_size pieces, data.character_coverage
  (SentencePiece only; characters keep the most frequent).
  Raises DataError if the vocabulary size does not match model.vocab_size.
  """
  chars = config.data.tokenizer == 'char'
  path = os.path.join(directory, filename(config))
  if config.data.tokenizer == 'huggingface':
    tokenizer = load_huggingface(path)
  elif os.path.exists(path):
    tokenizer = CharTokenizer.load(path) if chars else Tokenizer(path)
    check_reserved(config, tokenizer, path)
  else:
    if corpus is None:
      # Imported here: the task families' modules import this one.
      from transformer import tasks  # pylint: disable=g-import-not-at-top
      corpus = tasks.for_benchmark(config).tokenizer_corpus
    pairs = corpus()
    if len(pairs) == 0:
      raise DataError('the training split is empty: there is nothing to '
                      'train the tokenizer on')
    start = time.perf_counter()
    if chars:
      tokenizer = train_chars(
          pairs, path, vocab_size=config.model.vocab_size,
          max_sentences=config.data.tokenizer_sentences, seed=config.seed,
          reserved=reserved_pieces(config))
    else:
      tokenizer = train(
          pairs, path, vocab_size=config.model.vocab_size,
          model_type=config.data.tokenizer,
          character_coverage=config.data.character_coverage,
          max_sentences=config.data.tokenizer_sentences, seed=config.seed,
          reserved=reserved_pieces(config))
    tokenizer.training_seconds = time.perf_counter() - start
  if tokenizer.vocab_size != config.model.vocab_size:
    raise DataError(
        f'{path} has {tokenizer.vocab_size} pieces but model.vocab_size='
        f'{config.model.vocab_size}: delete it to retrain, or set '
        f'model.vocab_size={tokenizer.vocab_size}')
  return tokenizer
