"""Training and evaluation batches, built on grain.

Training (`train_dataset`), one grain pipeline:

  source pairs (sources.load_split)
  -> data shards: pairs[s::shards]; a process reads only its own shards
  -> global shuffle with config.seed, a new order every epoch; repeat
  -> tokenize, append EOS; drop empty pairs; over-long ones dropped or
     truncated per data.overlong
  -> pack several pairs per row (grain's first-fit packer), or one per row
  -> batch: dicts of int32 numpy arrays [batch_size // process_count,
     max_length] with the keys in BATCH_KEYS.

Its iterator is checkpointable: `it.get_state()` is a JSON-serialisable dict,
and `set_state` on a fresh iterator continues exactly where it left off.
With data.overlong='drop', process 0 prints at the start how many training
pairs are dropped as over-long (`overlong_note`).

Evaluation (`eval_dataset`): every example in corpus order, one per row, the
last batch padded with PAD rows marked invalid, raw source and reference
strings kept for BLEU.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable

from absl import flags
import grain
import numpy as np

from transformer.config import EOS_ID, Config, DataConfig
from transformer.data import grain_utils
from transformer.data.corpus import DataError
from transformer.tasks.translation import sources

# The batch keys; positions are named like Transformer.__call__'s arguments,
# so `model.apply(variables, **batch)` works.
BATCH_KEYS = ('inputs', 'targets', 'inputs_segmentation',
              'targets_segmentation', 'inputs_positions', 'targets_positions')
# Evaluation rows are padded to the split's longest sentence, rounded up to a
# multiple of this.
EVAL_LENGTH_MULTIPLE = 8


# ---------------------------------------------------------------------------
# Tokenizing and filtering one pair.
# ---------------------------------------------------------------------------

# Why a pair was dropped or changed (keys of `filter_counts`).
KEPT, EMPTY, OVERLONG_DROPPED, OVERLONG_TRUNCATED = (
    'kept', 'empty', 'overlong_dropped', 'overlong_truncated')
# overlong_note tokenizes at most this many training pairs: every pair of a
# corpus the size of the Bible's (28k pairs, well under a second), an even
# sample of a larger one (WMT's 4.5M would take minutes).
OVERLONG_SAMPLE = 50_000


def _truncate(ids: list[int], max_length: int) -> list[int]:
  """ids + EOS, cut to max_length tokens with EOS kept last."""
  return ids[:max_length - 1] + [EOS_ID]


def encode_pair(tokenizer, pair: tuple[str, str], max_length: int,
                overlong: str) -> tuple[dict[str, np.ndarray] | None, str]:
  """Token ids of a pair with EOS appended, and what happened to it.

  Returns ({'inputs', 'targets'} int32 arrays or None if dropped, outcome):
  outcome is KEPT, EMPTY (either side is blank), OVERLONG_DROPPED or
  OVERLONG_TRUNCATED (a side had more than max_length tokens with EOS).
  """
  source, target = pair
  if not source.strip() or not target.strip():
    return None, EMPTY
  src, tgt = tokenizer.encode(source), tokenizer.encode(target)
  if not src or not tgt:
    return None, EMPTY
  outcome = KEPT
  if len(src) + 1 > max_length or len(tgt) + 1 > max_length:
    if overlong == 'drop':
      return None, OVERLONG_DROPPED
    outcome = OVERLONG_TRUNCATED
  return ({'inputs': np.asarray(_truncate(src, max_length), np.int32),
           'targets': np.asarray(_truncate(tgt, max_length), np.int32)},
          outcome)


@dataclasses.dataclass(frozen=True)
class _Encode(grain.transforms.Map):
  """Pair -> {'inputs', 'targets'}, or None (grain skips it)."""
  tokenizer: Any
  max_length: int
  overlong: str

  def map(self, pair):
    return encode_pair(self.tokenizer, pair, self.max_length,
                       self.overlong)[0]


def _one_row(example: dict[str, np.ndarray], length: int
             ) -> dict[str, np.ndarray]:
  """One example (unpacked) padded to `length`, with BATCH_KEYS."""
  row = {}
  for key in ('inputs', 'targets'):
    (row[key], row[f'{key}_segmentation'],
     row[f'{key}_positions']) = grain_utils.pad_row(example[key], length)
  return row


@dataclasses.dataclass(frozen=True)
class _PadRow(grain.transforms.Map):
  length: int

  def map(self, example):
    return _one_row(example, self.length)


class _RenamePacked(grain.transforms.Map):
  """grain's packer names: *_segment_ids -> *_segmentation."""

  def map(self, row):
    return {'inputs': row['inputs'], 'targets': row['targets'],
            'inputs_segmentation': row['inputs_segment_ids'],
            'targets_segmentation': row['targets_segment_ids'],
            'inputs_positions': row['inputs_positions'],
            'targets_positions': row['targets_positions']}


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------


def _first_kept(shard: grain.MapDataset, tokenizer, data: DataConfig,
                split: str, index: int, count: int) -> None:
  """Raises DataError if no pair of the shard survives filtering."""
  for i in range(len(shard)):
    if encode_pair(tokenizer, shard[i], data.max_length,
                   data.overlong)[0] is not None:
      return
  where = f' (data shard {index} of {count})' if count > 1 else ''
  raise DataError(
      f'the {split!r} split of data.source={data.source!r}{where} has no '
      f'usable sentence pair: all {len(shard)} are empty'
      + (f' or longer than data.max_length={data.max_length} tokens '
         "(data.overlong='drop'; raise max_length or set overlong="
         "'truncate')" if data.overlong == 'drop' else ''))


def train_dataset(config: Config, tokenizer, *, process_index: int = 0,
                  process_count: int = 1, split: str = 'train',
                  num_epochs: int | None = None) -> grain.IterDataset:
  """Batches for training this host: an infinite, checkpointable IterDataset.

  Args:
    config: seed and data settings (max_length, batch_size, pack, overlong,
      worker_count).
    tokenizer: a `Tokenizer` (picklable, for grain worker processes).
    process_index, process_count: this process and the number of processes.
      The data is split into data.shards shards (default: one per process),
      shard s holding pairs[s::shards] and making batch_size / shards rows of
      each batch; process p reads only its own contiguous block of shards.
    split: 'train' normally.
    num_epochs: None repeats forever. A number stops after that many epochs
      and keeps the last, smaller batch (for tests and measurements).
  Returns:
    An IterDataset of dicts (BATCH_KEYS) of int32 [batch_size //
    process_count, max_length]: this process's rows of the global batch.
    `iter(ds)` gives a fresh iterator with get_state()/set_state().
  Raises:
    DataError: batch_size not divisible by the number of shards, shards not
      by process_count, or nothing left after filtering.
  """
  data = config.data
  mine, shards, rows = grain_utils.shards_of(data, process_index,
                                             process_count)
  pairs = sources.load_split(data, split)  # once: shards are views of it
  if process_index == 0 and split == 'train':
    note = overlong_note(config, tokenizer, pairs)
    if note:
      print(note, flush=True)
  per_shard = [_shard_batches(config, tokenizer, pairs, split, shard, shards,
                              rows, num_epochs) for shard in mine]
  if len(per_shard) == 1:
    ds = per_shard[0]
  else:  # this process's rows of each batch: its shards' rows, in order
    ds = grain.experimental.ZipIterDataset(per_shard).map(
        grain_utils.concatenate_rows)
  if data.worker_count > 0:
    # grain's worker processes read absl flags, which absl.app (launch.py)
    # parses; a program of one's own must parse them first.
    if not flags.FLAGS.is_parsed():
      raise DataError(
          f'data.worker_count={data.worker_count} starts grain worker '
          'processes, which read absl flags, and this program has not parsed '
          'them. Start it through absl.app.run (as launch.py does), call '
          'absl.flags.FLAGS.mark_as_parsed() first, or set '
          'data.worker_count=0.')
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=data.worker_count))
  return ds


def _shard_batches(config: Config, tokenizer, all_pairs, split: str,
                   shard: int, shards: int, rows: int,
                   num_epochs: int | None) -> grain.IterDataset:
  """One shard's pipeline: shuffle, tokenize, filter, pack, batch `rows`."""
  data = config.data
  pairs = grain_utils.shard(all_pairs, shard, shards)
  _first_kept(pairs, tokenizer, data, split, shard, shards)
  ds = pairs.shuffle(seed=config.seed % 2**32).repeat(num_epochs)
  ds = ds.map(_Encode(tokenizer, data.max_length, data.overlong))
  if not data.pack:
    ds = ds.map(_PadRow(data.max_length))
  ds = ds.to_iter_dataset(grain_utils.read_options())
  if data.pack:
    ds = grain.experimental.FirstFitPackIterDataset(
        ds, length_struct={'inputs': data.max_length,
                           'targets': data.max_length},
        num_packing_bins=grain_utils.PACKING_BINS_PER_ROW * rows,
        seed=config.seed, shuffle_bins=True)
    ds = ds.map(_RenamePacked())
  return ds.batch(rows, drop_remainder=num_epochs is None)


def overlong_note(config: Config, tokenizer, pairs) -> str | None:
  """The line saying how many of `pairs` data.overlong='drop' drops; None
  when it drops none (or truncates instead). Exact up to OVERLONG_SAMPLE
  pairs; beyond, estimated from that many evenly spaced ones."""
  data = config.data
  total = len(pairs)
  if data.overlong != 'drop' or total == 0:
    return None
  chosen = (range(total) if total <= OVERLONG_SAMPLE else
            np.linspace(0, total - 1, OVERLONG_SAMPLE).round().astype(int))
  dropped = sum(encode_pair(tokenizer, pairs[int(i)], data.max_length,
                            'drop')[1] == OVERLONG_DROPPED for i in chosen)
  if not dropped:
    return None
  share = dropped / len(chosen)
  percent = f'{share:.2%}' if share >= 5e-5 else '<0.01%'
  how_many = (f'{dropped:,} of {total:,} training pairs ({percent})'
              if len(chosen) == total else
              f'about {percent} of the {total:,} training pairs ({dropped:,} '
              f'of {len(chosen):,} evenly spaced ones)')
  return (f'Note: {how_many} are longer than data.max_length='
          f"{data.max_length} tokens and are dropped (data.overlong='drop'; "
          'set data.overlong=truncate or raise data.max_length to keep '
          'them).')


def filter_counts(config: Config, tokenizer, split: str = 'train', *,
                  process_index: int = 0, process_count: int = 1
                  ) -> dict[str, int]:
  """What filtering does to a split (this host's shard): one full pass.

  Returns {'pairs', 'kept', 'empty', 'overlong_dropped',
  'overlong_truncated'}; kept counts truncated pairs too.
  """
  shard = grain_utils.shard(sources.load_split(config.data, split),
                            process_index, process_count)
  counts = {'pairs': len(shard), KEPT: 0, EMPTY: 0, OVERLONG_DROPPED: 0,
            OVERLONG_TRUNCATED: 0}
  for i in range(len(shard)):
    example, outcome = encode_pair(tokenizer, shard[i],
                                   config.data.max_length,
                                   config.data.overlong)
    counts[outcome] += 1
    if outcome == OVERLONG_TRUNCATED:
      counts[KEPT] += 1
  return counts


# ---------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class EvalBatch:
  """One evaluation batch.

  batch: BATCH_KEYS -> int32 [eval_batch_size, L]; L is the same for the
    whole split, a multiple of 8, at most eval_max_length (sources and
    targets may differ in L); one example per row (segmentation 1 on tokens,
    0 on padding).
  valid: bool [eval_batch_size]; False on the PAD rows that fill the last
    batch.
  sources, references: the raw strings of the valid rows, in order.
  """
  batch: dict[str, np.ndarray]
  valid: np.ndarray
  sources: list[str]
  references: list[str]


@dataclasses.dataclass
class EvalData:
  """Every example of a split, batched in corpus order."""
  batches: list[EvalBatch]
  num_examples: int
  truncated: int  # pairs with a side longer than eval_max_length tokens

  def __iter__(self):
    return iter(self.batches)

  def __len__(self) -> int:
    return len(self.batches)

  @property
  def sources(self) -> list[str]:
    return [s for b in self.batches for s in b.sources]

  @property
  def references(self) -> list[str]:
    return [r for b in self.batches for r in b.references]


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def eval_dataset(config: Config, tokenizer, split: str,
                 num_examples: int = 0) -> EvalData:
  """Every example of `split` (or the first num_examples), in order.

  Nothing is dropped: empty lines stay (as a lone EOS), longer sentences are
  truncated to data.eval_max_length tokens (counted in `truncated`).
  """
  data = config.data
  pairs = sources.load_split(data, split)
  count = len(pairs) if num_examples <= 0 else min(num_examples, len(pairs))
  if count == 0:
    raise DataError(f'the {split!r} split of data.source={data.source!r} is '
                    'empty: nothing to evaluate on')
  size, max_len = data.eval_batch_size, data.eval_max_length
  examples, truncated = [], 0
  for i in range(count):
    source, target = pairs[i]
    src, tgt = tokenizer.encode(source), tokenizer.encode(target)
    if len(src) + 1 > max_len or len(tgt) + 1 > max_len:
      truncated += 1
    examples.append((source, target, {'inputs': _truncate(src, max_len),
                                      'targets': _truncate(tgt, max_len)}))
  # One length per split (not per batch): the eval step and beam search then
  # compile once, not once per batch.
  lengths = {key: min(max_len, _round_up(
      max(len(e[key]) for _, _, e in examples), EVAL_LENGTH_MULTIPLE))
             for key in ('inputs', 'targets')}
  batches = []
  for start in range(0, count, size):
    chunk = examples[start:start + size]
    batch = {key: np.zeros((size, lengths[key.split('_')[0]]), np.int32)
             for key in BATCH_KEYS}
    for r, (_, _, example) in enumerate(chunk):
      for key in ('inputs', 'targets'):
        (batch[key][r], batch[f'{key}_segmentation'][r],
         batch[f'{key}_positions'][r]) = grain_utils.pad_row(example[key],
                                                             lengths[key])
    valid = np.arange(size) < len(chunk)
    batches.append(EvalBatch(batch, valid, [s for s, _, _ in chunk],
                             [t for _, t, _ in chunk]))
  return EvalData(batches, count, truncated)


# ---------------------------------------------------------------------------
# Measurements.
# ---------------------------------------------------------------------------


def packing_efficiency(batches: Iterable[dict[str, np.ndarray]]) -> float:
  """Real tokens / token slots, over sources and targets together."""
  real = slots = 0
  for batch in batches:
    for key in ('inputs', 'targets'):
      real += int(np.count_nonzero(batch[f'{key}_segmentation']))
      slots += batch[key].size
  return real / slots if slots else 0.0


def measure_input_pipeline(config: Config, tokenizer, num_batches: int = 100,
                           warmup_batches: int = 5) -> dict[str, float]:
  """Speed and fill of the training pipeline in this process.

  Returns batches_per_second and tokens_per_second (real tokens, sources +
  targets) after `warmup_batches`, packing_efficiency of the timed batches,
  and startup_seconds (building the dataset and the warm-up).
  """
  start = time.perf_counter()
  it = iter(train_dataset(config, tokenizer))
  for _ in range(warmup_batches):
    next(it)
  timed_start = time.perf_counter()
  batches = [next(it) for _ in range(num_batches)]
  elapsed = time.perf_counter() - timed_start
  real = sum(int(np.count_nonzero(b[f'{k}_segmentation']))
             for b in batches for k in ('inputs', 'targets'))
  if hasattr(it, 'close'):
    it.close()
  return {'batches_per_second': num_batches / elapsed,
          'tokens_per_second': real / elapsed,
          'packing_efficiency': packing_efficiency(batches),
          'startup_seconds': timed_start - start,
          'num_batches': num_batches}


__all__ = ['BATCH_KEYS', 'EvalBatch', 'EvalData', 'encode_pair',
           'eval_dataset', 'filter_counts', 'measure_input_pipeline',
           'overlong_note', 'packing_efficiency', 'train_dataset']
