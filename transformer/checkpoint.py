"""Orbax checkpoints of the train state and the input pipeline's position.

A checkpoint `workdir/checkpoints/<step>/` holds:
  state/  parameters, optimizer state and step (Orbax, sharded arrays);
  data/   every host's grain iterator state (one JSON file per process).
Dropout's RNG is a function of config.seed and the step, and the config is
saved beside the checkpoints as workdir/config.json, so together they restart
a run exactly where it stopped.

Orbax writes each checkpoint into a temporary directory and renames it when
complete, so a save killed half-way is never listed. Restoring tells three
kinds of failure apart, and only the first touches a checkpoint:
  damage     a file missing, truncated or unreadable as data, or parameters
             that are not finite: the checkpoint is renamed <step>.damaged
             and the next older one is tried;
  mismatch   the saved arrays are not the ones the requested config builds
             (another structure or shape): a user error, nothing is renamed;
  I/O error  the operating system refused a read (permission, a network file
             system): possibly transient, so the run stops and nothing is
             renamed.
On several hosts every process restores its shards; they agree on the worst
verdict before acting on it, so all of them make the same decision.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from transformer import train as train_lib
from transformer.best import BestMetric, best_of


class CheckpointError(Exception):
  """A checkpoint that cannot be used as asked; the message says why and what
  to do. Nothing was renamed unless the message says so."""


@dataclasses.dataclass(frozen=True)
class _Verdict:
  """What restoring one checkpoint on this process found. Ordered by rank:
  all processes act on the highest rank any of them saw."""
  OK, DAMAGED, MISMATCH, IO_ERROR = 0, 1, 2, 3
  rank: int
  reason: str = ''


class _IteratorSnapshot:
  """An iterator state frozen at save time (Orbax may write it later)."""

  def __init__(self, iterator):
    self._state = json.dumps(iterator.get_state(), indent=1).encode()

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  """Saves and restores (TrainState, data iterator) pairs in a directory.

  The newest `keep` checkpoints are kept; with `best` (eval.best_metric),
  also the one whose evaluation ranks best, for as long as it does. Each
  save may carry JSON metrics (transformer/best.py: early stopping's
  progress and the evaluation that ranks the checkpoint).
  """

  def __init__(self, directory: str, *, keep: int = 5,
               async_save: bool = True, best: BestMetric | None = None):
    self.directory = os.path.abspath(directory)
    self.best = best
    if best is None:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True,
          enable_async_checkpointing=async_save)
    else:
      keep_latest_and_best = ocp.checkpoint_managers.AnyPreservationPolicy([
          ocp.checkpoint_managers.LatestN(keep),
          ocp.checkpoint_managers.BestN(
              get_metric_fn=best.rank, n=1,
              keep_checkpoints_without_metrics=False)])
      # best_fn makes Orbax write each save's metrics; the policy decides.
      options = ocp.CheckpointManagerOptions(
          create=True, enable_async_checkpointing=async_save,
          best_fn=best.rank, best_mode='max',
          preservation_policy=keep_latest_and_best)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'data'))

  def steps(self) -> list[int]:
    """Steps of complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def damaged(self) -> list[str]:
    """Names of checkpoints set aside as damaged, by this or an earlier run."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(n for n in os.listdir(self.directory) if '.damaged' in n)

  def metrics(self, step: int) -> dict[str, Any] | None:
    """The metrics saved with checkpoint `step`, if any."""
    return self._manager.metrics(step)

  def save(self, state, iterator, *, step: int,
           metrics: dict[str, Any] | None = None) -> None:
    """Starts an asynchronous save; `wait` blocks until it is on disk.
    `metrics` are kept only by a Checkpointer with `best`."""
    items = {'state': ocp.args.StandardSave(state)}
    if iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(iterator))
    # Orbax skips a save while the previous one is still being written; wait
    # for it instead, so that no requested checkpoint is lost.
    self._manager.wait_until_finished()
    if not self._manager.save(step, args=ocp.args.Composite(**items),
                              metrics=metrics if self.best else None,
                              force=True):
      raise RuntimeError(f'Orbax declined to save step {step} in '
                         f'{self.directory}')

  def restore(self, abstract_state, iterator=None, *,
              step: int | None = None) -> tuple[Any, int] | None:
    """Restores the newest good checkpoint (or exactly `step`).

    Args:
      abstract_state: a TrainState of jax.ShapeDtypeStruct with shardings
        (what `jax.eval_shape` gives), describing where arrays should live.
      iterator: a grain iterator whose position is restored in place.
      step: restore exactly this step: no fallback, and a damaged checkpoint
        is reported, never renamed (evaluation may run beside training).
    Returns:
      (state, step), or None when the directory holds no checkpoint.
    Raises:
      CheckpointError: a mismatch with `abstract_state`, an I/O error, a
        damaged `step`, or every checkpoint damaged.
    """
    candidates = [step] if step is not None else self.steps()[::-1]
    set_aside = []
    for candidate in candidates:
      state, verdict = self._restore_one(candidate, abstract_state, iterator)
      verdict = _agree(verdict, candidate)
      where = f'{self.directory}/{candidate}'
      if verdict.rank == _Verdict.OK:
        return state, candidate
      if verdict.rank == _Verdict.MISMATCH:
        raise CheckpointError(
            f'The checkpoint {where} holds other arrays than this config '
            f'builds: {verdict.reason}. The checkpoint is fine and was not '
            'touched. Resume with the settings it was trained with (the '
            "workdir's config.json), use a new --workdir, or pass --restart "
            'to set this run aside and start over.')
      if verdict.rank == _Verdict.IO_ERROR:
        raise CheckpointError(
            f'Could not read the checkpoint {where}: {verdict.reason}. This '
            'may be a permission problem or a passing network file system '
            'error, so nothing was renamed; fix the access and run the same '
            'command again.')
      if step is not None:
        raise CheckpointError(
            f'The checkpoint {where} is damaged ({verdict.reason}). Choose '
            f'another --step; the checkpoints are {self.steps()}.')
      logging.warning('Checkpoint %s is damaged (%s); trying the previous '
                      'one.', where, verdict.reason)
      set_aside.append(self._set_aside(candidate))
      print(f'WARNING: skipping damaged checkpoint {where} '
            f'({verdict.reason}); moved it to {set_aside[-1]} and trying an '
            'older one.', flush=True)
    if set_aside:
      raise CheckpointError(
          f'Every checkpoint in {self.directory} is damaged; they are set '
          f'aside as {", ".join(set_aside)}. Nothing was trained. To start '
          'over in this workdir, run the same command with --restart.')
    return None

  def _restore_one(self, step: int, abstract_state, iterator
                   ) -> tuple[Any, _Verdict]:
    """(state or None, this process's verdict) for one checkpoint."""
    path = os.path.join(self.directory, str(step))
    try:
      saved = ocp.StandardCheckpointHandler().metadata(
          epath.Path(path) / 'state')
      difference = tree_difference(saved.tree, abstract_state)
      if difference:
        return None, _Verdict(_Verdict.MISMATCH, difference)
      items = {'state': ocp.args.StandardRestore(abstract_state)}
      if iterator is not None:
        items['data'] = grain.checkpoint.CheckpointRestore(iterator)
      state = self._manager.restore(step, args=ocp.args.Composite(**items))
      state = state['state']
    except Exception as error:  # pylint: disable=broad-except
      return None, _classify(error, path)
    if not all_finite(state.params):
      return None, _Verdict(_Verdict.DAMAGED, 'parameters are not finite')
    return state, _Verdict(_Verdict.OK)

  def _set_aside(self, step: int) -> str:
    """Renames a damaged checkpoint so it is neither listed nor overwritten."""
    path = os.path.join(self.directory, str(step))
    target = f'{path}.damaged'
    suffix = 1
    while os.path.exists(target):
      target, suffix = f'{path}.damaged{suffix}', suffix + 1
    if jax.process_index() == 0:
      os.rename(path, target)
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    self._manager.reload()
    return os.path.basename(target)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _classify(error: Exception, path: str) -> _Verdict:
  """An exception from restoring `path`: I/O error, or damage.

  Orbax and TensorStore wrap the operating system's errors in their own, so
  the files are read again here: if the OS refuses one, that is the
  (possibly transient) I/O error; if all read, their content is at fault.
  """
  if isinstance(error, (PermissionError, TimeoutError)):
    return _Verdict(_Verdict.IO_ERROR, f'{type(error).__name__}: {error}')
  unreadable = _first_unreadable_file(path)
  if unreadable:
    return _Verdict(_Verdict.IO_ERROR, unreadable)
  message = str(error).strip().splitlines()
  return _Verdict(_Verdict.DAMAGED, f'{type(error).__name__}: '
                  f'{message[0][:200] if message else ""}')


def _first_unreadable_file(path: str) -> str:
  """'<file>: <error>' for the first file under `path` the OS won't read."""
  for root, _, files in os.walk(path, onerror=_raise):
    for name in sorted(files):
      file = os.path.join(root, name)
      try:
        with open(file, 'rb') as f:
          while f.read(1 << 24):
            pass
      except OSError as error:
        return f'{file}: {error.strerror or error}'
  return ''


def _raise(error: OSError):
  raise error


def _agree(verdict: _Verdict, step: int) -> _Verdict:
  """The highest-ranked verdict of all processes (the same on each)."""
  if jax.process_count() == 1:
    return verdict
  ranks = multihost_utils.process_allgather(np.int32(verdict.rank))
  worst = int(np.max(ranks))
  if worst == verdict.rank:
    return verdict
  return _Verdict(worst, f'process {int(np.argmax(ranks))} could not restore '
                  f'checkpoint {step} (see its log)')


def _leaf_name(path) -> str:
  """A key path as Orbax names the saved array: 'opt_state.0.mu.decoder_0...'"""
  parts = []
  for key in path:
    for attribute in ('key', 'name', 'idx'):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
  return '.'.join(parts)


# Layer names of the two layouts of `model.scan_layers` (transformer/model.py):
# one module per layer ('encoder_0', 'decoder_3'), or one stacked module per
# stack ('encoder_layers', 'decoder_layers').
_UNROLLED_LAYER = re.compile(r'(^|\.)(encoder|decoder)_\d+(\.|$)')
_SCANNED_LAYER = re.compile(r'(^|\.)(encoder|decoder)_layers(\.|$)')


def scan_layers_of(names) -> bool | None:
  """The model.scan_layers setting that array names ('params.encoder_0...')
  were written with: True (stacked layers), False (one module per layer), or
  None if they hold no layers."""
  names = list(names)
  if any(_SCANNED_LAYER.search(n) for n in names):
    return True
  if any(_UNROLLED_LAYER.search(n) for n in names):
    return False
  return None


def scan_layers_hint(saved_names, wanted_names) -> str:
  """'' unless the two sides store their layers in different layouts; else
  what to set (the layouts are not interchangeable)."""
  saved, wanted = scan_layers_of(saved_names), scan_layers_of(wanted_names)
  if saved is None or wanted is None or saved == wanted:
    return ''
  value = str(saved).lower()
  layout = ('all layers of a stack in one array per parameter' if saved else
            'one module per layer')
  return (f'this checkpoint was written with model.scan_layers={value} '
          f'({layout}) and the config builds model.scan_layers='
          f'{str(wanted).lower()}; the two layouts cannot read each '
          f'other\'s checkpoints, so set --set=model.scan_layers={value}')


def tree_difference(saved_tree, abstract_state) -> str:
  """'' if the saved arrays match `abstract_state`, else what differs first:
  a path that only one side has, or a shape or dtype; led by what to set if
  the layers' layout (model.scan_layers) differs."""
  saved = {_leaf_name(p): leaf for p, leaf in
           jax.tree_util.tree_flatten_with_path(saved_tree)[0]}
  wanted = {_leaf_name(p): leaf for p, leaf in
            jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
  only_saved = sorted(set(saved) - set(wanted))
  only_wanted = sorted(set(wanted) - set(saved))
  problems = []
  hint = scan_layers_hint(saved, wanted)
  if hint:
    problems.append(hint)
  if only_saved:
    problems.append(f'the checkpoint has {len(only_saved)} array(s) the config '
                    f'does not build, the first {only_saved[0]!r}')
  if only_wanted:
    problems.append(f'the config builds {len(only_wanted)} array(s) the '
                    f'checkpoint lacks, the first {only_wanted[0]!r}')
  for name in (n for n in wanted if n in saved):  # params before opt_state
    have, want = saved[name], wanted[name]
    if tuple(have.shape) != tuple(want.shape) or np.dtype(
        have.dtype) != np.dtype(want.dtype):
      problems.append(f'{name!r} is saved as {have.dtype}{list(have.shape)} '
                      f'but the config builds {np.dtype(want.dtype)}'
                      f'{list(want.shape)}')
      break
  return '; '.join(problems)


def all_finite(tree) -> bool:
  """True if every floating-point leaf of `tree` is free of NaN and Inf."""
  return all(bool(jax.numpy.isfinite(leaf).all())
             for leaf in jax.tree.leaves(tree)
             if np.issubdtype(leaf.dtype, np.floating))


class NoCheckpointError(Exception):
  """The workdir holds nothing to evaluate; the message says what to run."""


def choose_step(workdir: str, choice: str = '') -> tuple[int, str]:
  """(step, note) of the checkpoint `choice` names.

  '' is the best checkpoint when the run keeps one (eval.best_metric), else
  the newest; 'best' the best (an error if none is kept); 'last' the newest;
  digits that step. The note says which, e.g. 'the best checkpoint (step
  600, valid accuracy 0.812)'.
  """
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'))
  try:
    available = checkpointer.steps()
    if not available:
      raise NoCheckpointError(
          f'{workdir} has no checkpoint. Train first: python launch.py '
          f'--experiment=NAME --workdir={workdir}')
    best = None
    if choice in ('', 'best'):
      best = best_of({s: checkpointer.metrics(s) for s in available})
  finally:
    checkpointer.close()
  if choice in ('', 'best') and best is not None:
    step, metric, value = best
    return step, (f'the best checkpoint (step {step}, '
                  f'{metric.describe(value)})')
  if choice == 'best':
    raise NoCheckpointError(
        f'--checkpoint=best: {workdir} keeps no best checkpoint (its run was '
        'trained without eval.best_metric, or never evaluated); its '
        f'checkpoints are at steps {available}. Use --checkpoint=last or a '
        'step.')
  if choice in ('', 'last'):
    return available[-1], f'the last checkpoint (step {available[-1]})'
  if not choice.isdigit():
    raise NoCheckpointError(f'--checkpoint={choice}: expected best, last or '
                            f'a step number; {workdir} has checkpoints at '
                            f'steps {available}')
  if int(choice) not in available:
    raise NoCheckpointError(f'--checkpoint={choice}: {workdir} has '
                            f'checkpoints at steps {available}')
  return int(choice), f'the checkpoint at step {choice}'


def restore_params(task, workdir: str, mesh, *,
                   step: int | None = None,
                   average: int = 1) -> tuple[Any, list[int]]:
  """Parameters of the latest checkpoint (or `step`), or the mean of the
  last `average` checkpoints up to it, of the model of `task`
  (`transformer/tasks/`). Returns (params, steps used)."""
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'))
  available = checkpointer.steps()
  if not available:
    raise NoCheckpointError(
        f'{workdir} has no checkpoint. Train first: python launch.py '
        f'--experiment=NAME --workdir={workdir}')
  if step is not None and step not in available:
    raise NoCheckpointError(f'--step={step}: {workdir} has checkpoints at '
                            f'steps {available}')
  last = step if step is not None else available[-1]
  chosen = [s for s in available if s <= last][-average:]
  if len(chosen) < average:
    print(f'Note: averaging {len(chosen)} checkpoints, not {average}: only '
          f'{len(chosen)} are kept (train.keep_checkpoints).', file=sys.stderr)
  abstract = train_lib.abstract_state(task, mesh)
  total = None
  for s in chosen:
    state, _ = checkpointer.restore(abstract, step=s)
    total = state.params if total is None else jax.tree.map(
        jnp.add, total, state.params)
  checkpointer.close()
  params = jax.tree.map(lambda x: x / len(chosen), total)
  return params, chosen
