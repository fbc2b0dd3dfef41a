"""Orbax checkpoints of the train state and the input pipeline's position.

A checkpoint `workdir/checkpoints/<step>/` holds:
  state/  parameters, optimizer state and step (Orbax, sharded arrays);
  data/   every host's grain iterator state (one JSON file per process).
Dropout's RNG is a function of config.seed and the step, and the config is
saved beside the checkpoints as workdir/config.json, so together they restart
a run exactly where it stopped.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a save killed half-way is never listed. A listed checkpoint that
fails to restore (a truncated or damaged file) is skipped with a warning,
renamed to <step>.damaged, and the next older one is tried.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils


class _IteratorSnapshot:
  """An iterator state frozen at save time (Orbax may write it later)."""

  def __init__(self, iterator):
    self._state = json.dumps(iterator.get_state(), indent=1).encode()

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  """Saves and restores (TrainState, data iterator) pairs in a directory."""

  def __init__(self, directory: str, *, keep: int = 5,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'data'))

  def steps(self) -> list[int]:
    """Steps of complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, state, iterator, *, step: int) -> None:
    """Starts an asynchronous save; `wait` blocks until it is on disk."""
    items = {'state': ocp.args.StandardSave(state)}
    if iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(iterator))
    # Orbax skips a save while the previous one is still being written; wait
    # for it instead, so that no requested checkpoint is lost.
    self._manager.wait_until_finished()
    if not self._manager.save(step, args=ocp.args.Composite(**items),
                              force=True):
      raise RuntimeError(f'Orbax declined to save step {step} in '
                         f'{self.directory}')

  def restore(self, abstract_state, iterator=None, *,
              step: int | None = None) -> tuple[Any, int] | None:
    """Restores the newest good checkpoint (or `step`); None if there is none.

    Args:
      abstract_state: a TrainState of jax.ShapeDtypeStruct with shardings
        (what `jax.eval_shape` gives), describing where arrays should live.
      iterator: a grain iterator whose position is restored in place.
      step: restore exactly this step (no fallback).
    Returns:
      (state, step), or None when the directory holds no usable checkpoint.
    """
    candidates = [step] if step is not None else self.steps()[::-1]
    for candidate in candidates:
      items = {'state': ocp.args.StandardRestore(abstract_state)}
      if iterator is not None:
        items['data'] = grain.checkpoint.CheckpointRestore(iterator)
      try:
        restored = self._manager.restore(candidate,
                                         args=ocp.args.Composite(**items))
        state = restored['state']
        _check_finite(state)
      except Exception as error:  # pylint: disable=broad-except
        if step is not None:
          raise
        logging.warning('Checkpoint %s/%d is unreadable or damaged (%s: %s); '
                        'trying the previous one.', self.directory, candidate,
                        type(error).__name__, str(error).splitlines()[0][:200])
        self._set_aside(candidate)
        print(f'WARNING: skipping damaged checkpoint {self.directory}/'
              f'{candidate} ({type(error).__name__}); moved it to '
              f'{candidate}.damaged and trying an older one.', flush=True)
        continue
      return state, candidate
    return None

  def _set_aside(self, step: int) -> None:
    """Renames a damaged checkpoint so it is neither listed nor overwritten."""
    if jax.process_index() == 0:
      path = os.path.join(self.directory, str(step))
      target = f'{path}.damaged'
      suffix = 1
      while os.path.exists(target):
        target, suffix = f'{path}.damaged{suffix}', suffix + 1
      os.rename(path, target)
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _check_finite(state) -> None:
  """A checkpoint with NaN/Inf parameters counts as damaged."""
  for leaf in jax.tree.leaves(state.params if hasattr(state, 'params') else
                              state):
    if np.issubdtype(leaf.dtype, np.floating) and not bool(
        jax.numpy.isfinite(leaf).all()):
      raise ValueError('parameters are not finite')
