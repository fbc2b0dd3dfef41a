"""The workdir of a run: its saved config, its lock, and starting over.

A workdir holds config.json, tokenizer.model, checkpoints/, metrics.jsonl,
tensorboard/ and eval/. One training run at a time may use it (`lock`);
evaluation, translation and visualisation only read and need no lock.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Any

import jax

from transformer import config as config_lib
from transformer import tasks
from transformer.config import Config

LOCK_FILE = '.lock'
# The tokenizer's files (transformer/data/tokenizer.py).
TOKENIZER_FILES = ('tokenizer.model', 'tokenizer.vocab', 'tokenizer.chars.json')
# What `set_aside_run` moves: everything a training run writes; the task
# families add what their tasks learn from the training data (`run_files`).
RUN_FILES = ('checkpoints', 'config.json', 'metrics.jsonl', 'tensorboard',
             'eval') + TOKENIZER_FILES


def run_files() -> tuple[str, ...]:
  """Every file and directory a training run writes into its workdir."""
  return RUN_FILES + tasks.run_files()


class RunError(Exception):
  """A problem with the run's settings or workdir, explained to the user."""


class Lock:
  """An exclusive lock on WORKDIR/.lock for as long as the object is open.

  `fcntl.flock` locks belong to the open file, so the kernel releases them
  when the process ends however it ends: a SIGKILLed run leaves no stale
  lock. The file's text names the holder for the message a second run gets.
  """

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = open(self.path, 'a+', encoding='utf-8')
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or 'another process'
      self._file.close()
      raise RunError(
          f'{workdir} is in use by another training run ({holder}); '
          f'{self.path} is locked. Two runs in one workdir would interleave '
          'their checkpoints and metrics. Wait for it to finish or stop it, '
          'or train in another --workdir; --mode=evaluate, translate and '
          'visualize may read the workdir meanwhile.') from None
    self._file.seek(0)
    self._file.truncate()
    started = datetime.datetime.now().isoformat(timespec='seconds')
    self._file.write(f'pid {os.getpid()} on {socket.gethostname()}, started '
                     f'{started}: {" ".join(sys.argv)}\n')
    self._file.flush()

  def release(self) -> None:
    if not self._file.closed:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()


def set_aside_run(workdir: str) -> str | None:
  """Moves the workdir's previous run into WORKDIR/previous/<time>/.

  For --restart: the old checkpoints, config, metrics and tokenizer are kept,
  out of the way of the new run. Returns that directory, or None if there
  was nothing to move.
  """
  present = [n for n in run_files()
             if os.path.exists(os.path.join(workdir, n))]
  if not present:
    return None
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  target = os.path.join(workdir, 'previous', stamp)
  suffix = 1
  while os.path.exists(target):
    target, suffix = os.path.join(workdir, 'previous', f'{stamp}-{suffix}'), suffix + 1
  os.makedirs(target)
  for name in present:
    os.rename(os.path.join(workdir, name), os.path.join(target, name))
  return target


def check_config(config: Config, workdir: str, *, save: bool = True) -> None:
  """Checks `config` against the workdir's config.json; saves `config`.

  A run may change on resume only the keys that leave its saved state's
  meaning unchanged (`config.changeable_on_resume`); any other difference
  from the saved config is refused with the keys, saved and requested values
  (another model.scan_layers with what to set: `_scan_layers_message`).
  A workdir without saved state (no checkpoint, no tokenizer: e.g. a run
  that stopped on a bad setting) takes the new config.
  """
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path) and has_saved_state(workdir):
    with open(path) as f:
      saved = _flatten(json.load(f))
    requested = _flatten(config_lib.to_dict(config))
    free = config_lib.changeable_on_resume(config)
    differ = [k for k in sorted(requested)
              if k not in free and k in saved and saved[k] != requested[k]]
    if 'model.scan_layers' in differ:
      raise RunError(_scan_layers_message(workdir, saved['model.scan_layers'],
                                          differ))
    if differ:
      clashes = [f'{k}: saved {saved[k]!r}, requested {requested[k]!r}'
                 for k in differ]
      raise RunError(
          f'{workdir} holds a run whose saved state these settings would '
          'change the meaning of (its model, vocabulary, data or seed):\n  ' +
          '\n  '.join(clashes) + f'\nNothing was changed. Use a new '
          f'--workdir, the values saved in {path}, or --restart to set the '
          'old run aside (into WORKDIR/previous/) and start over.')
  if save and jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(config_lib.to_json(config))
    os.replace(tmp, path)


def _scan_layers_message(workdir: str, saved: bool, differ: list[str]
                         ) -> str:
  """The one-paragraph error for a run that asks for the other
  model.scan_layers than its workdir's checkpoints were written with."""
  value = str(saved).lower()
  others = [k for k in differ if k != 'model.scan_layers']
  also = (f' These settings differ from the saved ones too: '
          f'{", ".join(others)}.' if others else '')
  return (
      f'The run in {workdir} was written with model.scan_layers={value}; '
      f'set --set=model.scan_layers={value} to go on with it. The two '
      'forms store the layers\' parameters differently (one module per '
      'layer, or each stack\'s layers stacked into one array per parameter) '
      'and cannot read each other\'s checkpoints; model.remat may differ.'
      f'{also} Nothing was changed; to start over with the other form, use '
      'a new --workdir or --restart (the old run is moved to '
      'WORKDIR/previous/).')


def has_saved_state(workdir: str) -> bool:
  """Whether a run left checkpoints, a tokenizer or what its task learnt
  from the training data (class names) in `workdir`."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  saved = ('tokenizer.model', 'tokenizer.chars.json') + tasks.run_files()
  return any(os.path.exists(os.path.join(workdir, name))
             for name in saved) or (
                 os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)))


def _flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat
