"""A Hugging Face `tokenizer.json` behind the project's tokenizer interface.

The `tokenizers` library reads the file (BERT's WordPiece, GPT-2's
byte-level BPE); ids pass through the vocabulary map (`vocabulary.py`), so
the project's fixed ids hold: [CLS] is BOS and [SEP] EOS for BERT, which
the pipelines add (encode adds nothing: no post-processing template), and
GPT-2's <|endoftext|> is EOS. Same methods as `transformer.data.tokenizer`'s
Tokenizer: vocab_size, encode, encode_batch, decode (stops at EOS, ignores
PAD and BOS), normalize, id_to_piece; picklable (grain workers).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tokenizers

from transformer.config import BOS_ID, EOS_ID, PAD_ID
from transformer.data.corpus import DataError
from transformer.huggingface.vocabulary import VocabularyMap

FILENAME = 'tokenizer.json'
# What decode shows for a new row HF has no token for (GPT-2's UNK).
REPLACEMENT_CHAR = '\ufffd'
UNUSED_PIECE = '<unused>'


class HuggingFaceTokenizer:
  """`tokenizer.json` with the vocabulary map's ids."""

  def __init__(self, tokenizer: tokenizers.Tokenizer,
               vocab_map: VocabularyMap, path: str = ''):
    self.path = path
    self.training_seconds: float | None = None  # never trained here
    self._tok = tokenizer
    # The pipelines cut and pad rows themselves.
    self._tok.no_truncation()
    self._tok.no_padding()
    self._map = vocab_map
    if tokenizer.get_vocab_size(with_added_tokens=True) > vocab_map.hf_size:
      raise DataError(
          f'{path or FILENAME} has {tokenizer.get_vocab_size()} tokens, more '
          f'than the model\'s vocabulary of {vocab_map.hf_size}: the '
          'tokenizer and the model do not belong together')

  @classmethod
  def load(cls, path: str, map_path: str) -> HuggingFaceTokenizer:
    """`path` (tokenizer.json) with the map saved at `map_path`."""
    try:
      tokenizer = tokenizers.Tokenizer.from_file(path)
    except Exception as error:  # tokenizers raises plain Exception
      raise DataError(f'{path} is not a tokenizer.json the `tokenizers` '
                      f'library can read ({error})') from None
    if not os.path.exists(map_path):
      raise DataError(f'{map_path} is missing beside {path}: install the '
                      'tokenizer again from the Hugging Face directory '
                      '(train.init_from)')
    with open(map_path, encoding='utf-8') as f:
      vocab_map = VocabularyMap.from_json(f.read(), map_path)
    return cls(tokenizer, vocab_map, path)

  @property
  def vocab_size(self) -> int:
    return self._map.size

  @property
  def vocabulary_map(self) -> VocabularyMap:
    return self._map

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS or EOS ([CLS]/[SEP])."""
    return self._map.ids_to_project(
        self._tok.encode(text, add_special_tokens=False).ids)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self._map.ids_to_project(e.ids) for e in self._tok.encode_batch(
        list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` up to the first EOS; PAD and BOS are ignored, rows HF
    has no token for show as U+FFFD."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    runs, run = [], []
    for hf in self._map.ids_to_hf([i for i in ids if i not in (PAD_ID,
                                                               BOS_ID)]):
      if hf < 0:
        runs.append(run)
        run = []
      else:
        run.append(hf)
    runs.append(run)
    return REPLACEMENT_CHAR.join(
        self._tok.decode(r, skip_special_tokens=False) for r in runs)

  def normalize(self, text: str) -> str:
    """`text` as the tokenizer sees it (e.g. lowercased, accents stripped
    for uncased BERT): decode(encode(text)) when every word is known."""
    return self.decode(self.encode(text))

  def id_to_piece(self, i: int) -> str:
    hf = self._map.ids_to_hf([int(i)])[0]
    if hf < 0:
      return self._map.name(i)
    # Rows past the tokenizer's vocabulary (models padded to a round size).
    return self._tok.id_to_token(hf) or UNUSED_PIECE

  def __getstate__(self):
    return {'path': self.path, 'json': self._tok.to_str(),
            'map': self._map.to_json()}

  def __setstate__(self, state):
    self.__init__(tokenizers.Tokenizer.from_str(state['json']),
                  VocabularyMap.from_json(state['map']), state['path'])

  def __repr__(self) -> str:
    return (f'HuggingFaceTokenizer({self.path!r}, '
            f'vocab_size={self.vocab_size})')
