"""The vocabulary map between a Hugging Face checkpoint's token ids and ours.

The project reserves PAD 0, UNK 1, BOS 2, EOS 3 and MASK 4 (config.py) and
its model code and pipelines use those ids throughout (padding masks,
[CLS]-style BOS, shift_right's BOS, generation). A Hugging Face vocabulary
puts its special tokens elsewhere (BERT: [PAD] 0, [UNK] 100, [CLS] 101,
[SEP] 102, [MASK] 103; GPT-2: <|endoftext|> 50256 and nothing else). So
the ids are renumbered at the bridge, once: project id = map[HF id].

  BERT: [PAD] -> 0, [UNK] -> 1, [CLS] -> 2 (BOS), [SEP] -> 3 (EOS),
    [MASK] -> 4; the HF tokens that had ids 1..4 take the ids the specials
    vacated. A permutation: the vocabulary keeps its size.
  GPT-2: <|endoftext|> -> 3 (EOS); PAD, UNK and BOS are new rows at 0, 1, 2
    (the vocabulary grows by 3, as `resize_token_embeddings` does when a
    user adds a pad token), and the HF tokens 0..3 move to the vacated id
    and the three appended ones. BOS's row is a copy of <|endoftext|>'s
    (GPT-2 conditions on <|endoftext|> as its start), PAD's and UNK's the
    mean of every row (HF's `mean_resizing`, without its random draw).

Every other token keeps its id, so the logits over HF's own tokens are
exactly HF's, in other columns. `to_project` / `to_hf` move embedding (and
output-bias) rows; `ids_to_project` / `ids_to_hf` move token ids; the map
is saved beside the tokenizer as a small JSON description (`to_json`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, NamedTuple, Sequence

import numpy as np

from transformer.config import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID
from transformer.data.corpus import DataError

FORMAT = 'transformer-vocabulary-map'
VERSION = 1
FILENAME = 'tokenizer.vocabulary.json'


class NewRow(NamedTuple):
  """A project token the HF vocabulary lacks: its row is `copy_of`'s (an HF
  id) or, when copy_of is None, the mean of the HF rows."""
  name: str
  copy_of: int | None = None


@dataclasses.dataclass(frozen=True)
class VocabularyMap:
  """HF id -> project id, a bijection onto ids 0..size-1 minus new rows.

  hf_size: rows of the HF embedding (config.json's vocab_size).
  assigned: {project id: HF id} of the special tokens that move.
  new: {project id: NewRow} of the rows HF does not have.
  """
  hf_size: int
  assigned: dict[int, int]
  new: dict[int, NewRow]
  forward: np.ndarray = dataclasses.field(init=False, repr=False,
                                          compare=False)  # [hf_size]
  inverse: np.ndarray = dataclasses.field(init=False, repr=False,
                                          compare=False)  # [size], -1 new

  def __post_init__(self):
    self._check()
    # The permutation: specials to their ids, every other HF token keeps its
    # id unless a reserved one holds it; those take the ids left free
    # (the vacated specials' and the appended rows'), in increasing order.
    reserved = set(self.assigned) | set(self.new)
    special = set(self.assigned.values())
    forward = np.full(self.hf_size, -1, np.int64)
    for project, hf in self.assigned.items():
      forward[hf] = project
    movers = [h for h in range(self.hf_size)
              if h not in special and h in reserved]
    stay = [h for h in range(self.hf_size)
            if h not in special and h not in reserved]
    forward[stay] = stay
    free = sorted(set(range(self.size)) - reserved - set(stay))
    forward[movers] = free  # as many: each reserved id not an HF special's
    inverse = np.full(self.size, -1, np.int64)
    inverse[forward] = np.arange(self.hf_size)
    object.__setattr__(self, 'forward', forward)
    object.__setattr__(self, 'inverse', inverse)

  def _check(self) -> None:
    """ValueError unless the description makes a bijection."""
    hf_ids = list(self.assigned.values()) + [
        row.copy_of for row in self.new.values() if row.copy_of is not None]
    if len(set(self.assigned.values())) != len(self.assigned) or any(
        not 0 <= h < self.hf_size for h in hf_ids):
      raise ValueError(f'special HF ids {hf_ids} must be distinct and in '
                       f'[0, {self.hf_size})')
    projects = list(self.assigned) + list(self.new)
    if len(set(projects)) != len(projects) or any(
        not 0 <= p < self.size for p in projects):
      raise ValueError(f'project ids {projects} must be distinct and in '
                       f'[0, {self.size})')

  @property
  def size(self) -> int:
    """The project's vocabulary size (model.vocab_size)."""
    return self.hf_size + len(self.new)

  def ids_to_project(self, ids: Sequence[int]) -> list[int]:
    return [int(i) for i in self.forward[np.asarray(ids, np.int64)]]

  def ids_to_hf(self, ids: Sequence[int]) -> list[int]:
    """HF ids; -1 for the new rows, which HF has no token for."""
    return [int(i) for i in self.inverse[np.asarray(ids, np.int64)]]

  def to_project(self, rows: np.ndarray) -> np.ndarray:
    """[hf_size, ...] rows (embedding, output bias) -> [size, ...]."""
    if rows.shape[0] != self.hf_size:
      raise DataError(f'a vocabulary table has {rows.shape[0]} rows, but '
                      f"config.json's vocab_size is {self.hf_size}")
    out = np.empty((self.size,) + rows.shape[1:], rows.dtype)
    out[self.forward] = rows
    for project, row in self.new.items():
      out[project] = (rows.mean(axis=0) if row.copy_of is None else
                      rows[row.copy_of])
    return out

  def to_hf(self, rows: np.ndarray) -> np.ndarray:
    """[size, ...] rows -> [hf_size, ...]: the new rows dropped."""
    return rows[self.forward]

  def name(self, project_id: int) -> str | None:
    """The name of a new row; None for HF's own tokens."""
    row = self.new.get(int(project_id))
    return row.name if row else None

  def to_json(self) -> str:
    return json.dumps({
        'format': FORMAT, 'version': VERSION, 'hf_size': self.hf_size,
        'assigned': {str(p): h for p, h in sorted(self.assigned.items())},
        'new': {str(p): list(row) for p, row in sorted(self.new.items())},
    }, indent=1)

  @classmethod
  def from_json(cls, text: str, path: str = 'the vocabulary map'
                ) -> VocabularyMap:
    """The map `to_json` wrote; DataError naming `path` if it is not one."""
    try:
      state = json.loads(text)
      if (state['format'], state['version']) != (FORMAT, VERSION):
        raise ValueError(f"format {state['format']!r} version "
                         f"{state['version']!r}, expected {FORMAT!r} "
                         f'version {VERSION}')
      return cls(int(state['hf_size']),
                 {int(p): int(h) for p, h in state['assigned'].items()},
                 {int(p): NewRow(name, None if copy is None else int(copy))
                  for p, (name, copy) in state['new'].items()})
    except (ValueError, KeyError, TypeError) as error:
      raise DataError(f'{path} is not a vocabulary map this code can read '
                      f'({error}); install the tokenizer again from the '
                      'Hugging Face directory (train.init_from)') from None


def _special(token_to_id: Callable[[str], int | None], token: str,
             hf_size: int, where: str) -> int:
  """The HF id of `token`, checked to lie inside the model's vocabulary."""
  i = token_to_id(token)
  if i is None:
    raise DataError(f'{where} has no {token} token: the import needs a '
                    f'BERT-family or GPT-2 tokenizer.json, which has one')
  if not 0 <= i < hf_size:
    raise DataError(f'{where} puts {token} at id {i}, outside the model\'s '
                    f"vocabulary (config.json's vocab_size is {hf_size}): "
                    'the tokenizer and the model do not belong together')
  return i


BERT_SPECIALS = {PAD_ID: '[PAD]', UNK_ID: '[UNK]', BOS_ID: '[CLS]',
                 EOS_ID: '[SEP]', MASK_ID: '[MASK]'}
GPT2_END = '<|endoftext|>'


def for_bert(hf_size: int, token_to_id: Callable[[str], int | None],
             where: str = 'tokenizer.json') -> VocabularyMap:
  """[PAD] [UNK] [CLS] [SEP] [MASK] -> PAD UNK BOS EOS MASK: a permutation."""
  return VocabularyMap(hf_size, {
      project: _special(token_to_id, token, hf_size, where)
      for project, token in BERT_SPECIALS.items()}, {})


def for_gpt2(hf_size: int, token_to_id: Callable[[str], int | None],
             where: str = 'tokenizer.json') -> VocabularyMap:
  """<|endoftext|> -> EOS; PAD, UNK (mean rows) and BOS (a copy of
  <|endoftext|>) appended."""
  end = _special(token_to_id, GPT2_END, hf_size, where)
  return VocabularyMap(hf_size, {EOS_ID: end}, {
      PAD_ID: NewRow('<pad>'), UNK_ID: NewRow('<unk>'),
      BOS_ID: NewRow('<s>', copy_of=end)})


BUILDERS = {'bert': for_bert, 'gpt2': for_gpt2}
