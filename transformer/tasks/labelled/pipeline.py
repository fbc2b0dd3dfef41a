"""Batches of labelled text (classification, regression), built on grain.

Training (`train_dataset`), one grain pipeline, as translation's:

  (text, label) examples (load_split, in __init__.py)
  -> optional re-sampling of the classes (data.class_sampling)
  -> data shards: examples[s::shards]; a process reads only its own shards
  -> global shuffle with config.seed, a new order every epoch; repeat
  -> tokenize: [BOS if model.pooling='first'] + pieces + EOS, cut to
     data.max_length; empty texts dropped
  -> one text per row, padded with PAD_ID
  -> batch: {'inputs': int32 [rows, max_length], 'labels': int32 [rows]
     (class ids) or float32 [rows, 1] (standardised targets)}.

Its iterator is checkpointable like translation's (get_state / set_state);
the shards and the read options are transformer/data/grain_utils.py's.
Evaluation (`eval_batches`): every example in order, the last batch padded
with rows of weight 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import grain
import numpy as np

from transformer.config import BOS_ID, EOS_ID, PAD_ID, Config
from transformer.data import grain_utils
from transformer.data.corpus import DataError

# Re-sampled epochs are drawn for this many epochs at once (then repeated):
# undersampling thus sees this many different subsets of the large classes.
SAMPLED_EPOCHS = 16


def starts_with_bos(config: Config) -> bool:
  """Whether a text's ids start with BOS, BERT's [CLS] (Devlin et al.
  2019, sec. 3): with model.pooling='first' it is the token pooled; and a
  Hugging Face (BERT-family) tokenizer's models were pretrained with [CLS]
  first, so mean pooling keeps it too, as sentence-transformers does."""
  return (config.model.pooling == 'first' or
          config.data.tokenizer == 'huggingface')


def encode_text(tokenizer, text: str, max_length: int, cls: bool
                ) -> np.ndarray:
  """[BOS] + pieces + EOS, at most max_length ids (EOS kept last)."""
  ids = ([BOS_ID] if cls else []) + tokenizer.encode(text)
  return np.asarray(ids[:max_length - 1] + [EOS_ID], np.int32)


def _row(ids: np.ndarray, length: int) -> np.ndarray:
  row = np.full(length, PAD_ID, np.int32)
  row[:len(ids)] = ids
  return row


@dataclasses.dataclass(frozen=True)
class _Encode(grain.transforms.Map):
  """(text, label) -> {'inputs', 'labels'}, or None for an empty text."""
  tokenizer: Any
  encode_label: Callable[[Any], np.ndarray]
  max_length: int
  cls: bool

  def map(self, example):
    text, label = example
    if not text.strip():
      return None
    ids = encode_text(self.tokenizer, text, self.max_length, self.cls)
    return {'inputs': _row(ids, self.max_length),
            'labels': self.encode_label(label)}


class _Indexed(Sequence):
  """examples[indices[i]]: a re-sampled view, picklable for grain."""

  def __init__(self, examples: Sequence, indices: np.ndarray):
    self.examples, self.indices = examples, indices

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int):
    return self.examples[int(self.indices[index])]


def resample(class_ids: np.ndarray, how: str, seed: int,
             epochs: int = SAMPLED_EPOCHS) -> np.ndarray:
  """Indices of `epochs` re-sampled epochs, each with equal class counts.

  'oversample': every class drawn up to the largest class's count (all of
  its examples, then random repeats); 'undersample': every class cut to the
  smallest count, a new random subset each epoch. Deterministic in `seed`.
  """
  rng = np.random.default_rng([seed, 7])
  members = [np.flatnonzero(class_ids == k) for k in np.unique(class_ids)]
  sizes = [len(m) for m in members]
  target = max(sizes) if how == 'oversample' else min(sizes)
  epochs_out = []
  for _ in range(epochs):
    chosen = []
    for m in members:
      if target >= len(m):
        extra = rng.choice(m, target - len(m), replace=True)
        chosen.append(np.concatenate([m, extra]))
      else:
        chosen.append(rng.choice(m, target, replace=False))
    epochs_out.append(np.sort(np.concatenate(chosen)))
  return np.concatenate(epochs_out)


def train_dataset(config: Config, tokenizer, examples: Sequence,
                  encode_label: Callable[[Any], np.ndarray], *,
                  class_ids: np.ndarray | None = None,
                  process_index: int = 0, process_count: int = 1,
                  num_epochs: int | None = None) -> grain.IterDataset:
  """This process's rows of every training batch (see the module docstring).

  Args:
    examples: the training split's (text, label) pairs.
    encode_label: label -> its array in the batch (a class id, a target).
    class_ids: [len(examples)] class of each example; needed for
      data.class_sampling other than 'none'.
  """
  data = config.data
  mine, shards, rows = grain_utils.shards_of(data, process_index,
                                             process_count)
  if data.class_sampling != 'none':
    if class_ids is None:
      raise DataError(f'data.class_sampling={data.class_sampling!r} needs '
                      'classes: it is for task=classification')
    examples = _Indexed(examples, resample(class_ids, data.class_sampling,
                                           config.seed))
  encode = _Encode(tokenizer, encode_label, data.max_length,
                   starts_with_bos(config))
  per_shard = []
  for shard in mine:
    ds = grain.MapDataset.source(examples)[shard::shards]
    if len(ds) == 0:
      raise DataError(f'the training split of data.source={data.source!r} '
                      f'has no example for data shard {shard} of {shards}')
    ds = ds.shuffle(seed=config.seed % 2**32).repeat(num_epochs).map(encode)
    ds = ds.to_iter_dataset(grain_utils.read_options())
    per_shard.append(ds.batch(rows, drop_remainder=num_epochs is None))
  if len(per_shard) == 1:
    return per_shard[0]
  return grain.experimental.ZipIterDataset(per_shard).map(
      grain_utils.concatenate_rows)


@dataclasses.dataclass
class EvalBatch:
  """inputs: int32 [eval_batch_size, L] (L: the split's longest text, a
  multiple of 8); weights: float32 [eval_batch_size], 0 on filler rows;
  examples: the (text, label) pairs of the real rows, in order."""
  inputs: np.ndarray
  weights: np.ndarray
  examples: list


def eval_batches(config: Config, tokenizer, examples: Sequence,
                 num_examples: int = 0) -> list[EvalBatch]:
  """Every example (or the first num_examples) in order, none dropped: an
  empty text is a lone EOS, a long one is cut to data.eval_max_length."""
  data = config.data
  count = len(examples) if num_examples <= 0 else min(num_examples,
                                                       len(examples))
  cls = starts_with_bos(config)
  chosen = [examples[i] for i in range(count)]
  ids = [encode_text(tokenizer, text, data.eval_max_length, cls)
         for text, _ in chosen]
  length = min(data.eval_max_length, -(-max(map(len, ids), default=1) // 8) * 8)
  size, batches = data.eval_batch_size, []
  for start in range(0, count, size):
    rows = np.full((size, length), PAD_ID, np.int32)
    rows[:, 0] = EOS_ID  # filler rows: a lone EOS, weight 0
    chunk = ids[start:start + size]
    for r, row in enumerate(chunk):
      rows[r] = _row(row, length)
    weights = (np.arange(size) < len(chunk)).astype(np.float32)
    batches.append(EvalBatch(rows, weights, chosen[start:start + size]))
  return batches


def line_batches(config: Config, tokenizer, lines: Iterator[str], size: int
                 ) -> Iterator[tuple[np.ndarray, list[bool]]]:
  """--mode=predict's input: ([size, L] rows, which lines are non-empty) for
  every `size` lines; empty lines get a filler row."""
  cls = starts_with_bos(config)
  cap = config.data.eval_max_length
  chunk: list[str] = []
  for line in lines:
    chunk.append(line.rstrip('\n').rstrip('\r'))
    if len(chunk) == size:
      yield _line_rows(tokenizer, chunk, size, cap, cls)
      chunk = []
  if chunk:
    yield _line_rows(tokenizer, chunk, size, cap, cls)


def _line_rows(tokenizer, chunk: list[str], size: int, cap: int, cls: bool):
  ids = [encode_text(tokenizer, line, cap, cls) for line in chunk]
  length = min(cap, max(16, 1 << (max(map(len, ids)) - 1).bit_length()))
  rows = np.full((size, length), PAD_ID, np.int32)
  rows[:, 0] = EOS_ID
  for r, row in enumerate(ids):
    rows[r] = _row(row, length)
  return rows, [bool(line.strip()) for line in chunk]
