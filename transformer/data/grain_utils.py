"""Grain helpers that every family's training pipeline shares.

Data shards: the data is split into data.shards shards (default: one per
process), shard s holding items[s::shards] and making batch_size / shards
rows of each batch; process p reads only its own contiguous block of
shards, and its rows of a batch are its shards' rows, in order
(`concatenate_rows`). Rows are padded token ids with their segmentation
(1 on tokens, 0 on padding) and positions (`pad_row`).
"""

from __future__ import annotations

from typing import Sequence

import grain
import numpy as np

from transformer.config import PAD_ID, DataConfig
from transformer.data.corpus import DataError

# First-fit packing keeps this many rows open per batch of rows: more bins,
# fuller rows (each row is emitted once a sentence fits in none of them).
PACKING_BINS_PER_ROW = 4
# Threads that read and tokenize in each process (grain ReadOptions).
READ_THREADS = 0
READ_BUFFER = 64


def read_options() -> grain.ReadOptions:
  """The ReadOptions of every training pipeline (READ_THREADS, READ_BUFFER)."""
  return grain.ReadOptions(num_threads=READ_THREADS,
                           prefetch_buffer_size=READ_BUFFER)


def pad_row(ids: Sequence[int], length: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ids padded to `length`: tokens, segmentation (1, then 0), positions."""
  n = len(ids)
  tokens = np.full(length, PAD_ID, np.int32)
  tokens[:n] = ids
  segmentation = np.zeros(length, np.int32)
  segmentation[:n] = 1
  positions = np.zeros(length, np.int32)
  positions[:n] = np.arange(n, dtype=np.int32)
  return tokens, segmentation, positions


def shards_of(data: DataConfig, process_index: int,
              process_count: int) -> tuple[range, int, int]:
  """(this process's shard indices, total shards, rows per shard)."""
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise DataError(f'process_index={process_index} must be in '
                    f'[0, process_count={process_count})')
  shards = data.shards or process_count
  if shards % process_count:
    raise DataError(f'data.shards={shards} must be a multiple of the number '
                    f'of processes ({process_count})')
  if data.batch_size % shards:
    raise DataError(
        f'data.batch_size={data.batch_size} must be divisible by the number '
        f'of data shards ({shards}: data.shards, or one per process): each '
        'shard makes batch_size / shards rows. Use a multiple of '
        f'{shards}')
  per_process = shards // process_count
  start = process_index * per_process
  return range(start, start + per_process), shards, data.batch_size // shards


def shard(items, index: int, shards: int) -> grain.MapDataset:
  """Shard `index` of `shards` of a random-access sequence:
  items[index::shards]."""
  return grain.MapDataset.source(items)[index::shards]


def concatenate_rows(batches: tuple[dict[str, np.ndarray], ...]
                     ) -> dict[str, np.ndarray]:
  """One batch of several shards' batches: their rows, in order."""
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


__all__ = ['PACKING_BINS_PER_ROW', 'READ_BUFFER', 'READ_THREADS',
           'concatenate_rows', 'pad_row', 'read_options', 'shard',
           'shards_of']
