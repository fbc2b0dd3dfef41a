"""Host <-> mesh helpers that every task's evaluation and prediction share.

Evaluation and prediction hold a whole global batch on every process (each
reads the same split or lines); `to_mesh` keeps this process's rows and
splits them over the mesh's data axis, `to_host` gathers a result back onto
every process.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from transformer import train as train_lib


def to_mesh(rows: np.ndarray, mesh: Mesh) -> jax.Array:
  """A global batch every process holds in full -> an array split over the
  mesh's data axis."""
  per_process = rows.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  return jax.make_array_from_process_local_data(
      train_lib.batch_sharding(mesh), rows[start:start + per_process])


def to_host(array: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-host) array, on every process."""
  if jax.process_count() == 1:
    return np.asarray(array)
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def padded_batch_size(size: int, mesh: Mesh) -> int:
  """`size` rounded up to a multiple of the mesh's data-parallel ways."""
  ways = train_lib.data_parallel_size(mesh)
  return -(-size // ways) * ways
