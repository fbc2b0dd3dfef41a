"""The workdir of a run: its saved config, its lock, and starting over.

A workdir holds config.json, experiment.txt, tokenizer.model, checkpoints/,
metrics.jsonl, tensorboard/ and eval/. One training run at a time may use it
(`lock`); evaluation, translation and visualisation only read and need no
lock, and take the run's own settings (`run_settings`).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Any, NamedTuple

import jax

from transformer import budget
from transformer import config as config_lib
from transformer import tasks
from transformer.config import Config

LOCK_FILE = '.lock'
CONFIG_FILE = 'config.json'
# The name of the experiment that trained the run (one line), so that the
# modes after training can refuse another --experiment by name.
EXPERIMENT_FILE = 'experiment.txt'
# The tokenizer's files (transformer/data/tokenizer.py).
TOKENIZER_FILES = ('tokenizer.model', 'tokenizer.vocab', 'tokenizer.chars.json')
# Where a warm-started run's parameters came from and the config keys its
# source fixed (transformer/warm_start.py).
WARM_START_FILE = 'warm_start.json'
# What `set_aside_run` moves: everything a training run writes; the task
# families add what their tasks learn from the training data (`run_files`).
RUN_FILES = ('checkpoints', CONFIG_FILE, EXPERIMENT_FILE, budget.FILE,
             WARM_START_FILE, 'metrics.jsonl', 'tensorboard',
             'eval') + TOKENIZER_FILES

# What --set may change in the modes after training (evaluate, predict,
# translate, generate, visualize, benchmark on a trained workdir), which
# otherwise take every setting from the run's config.json: how the learnt
# parameters are used, never what they are. Dotted keys; a key ending in
# '.' covers its whole section.
AFTER_TRAINING = (
    # Decoding (beam, length penalty, output length), which checkpoints are
    # averaged, what evaluation during a resumed training does. (best_metric
    # chose the kept best checkpoint during training; the choice is read
    # from the checkpoints' own metrics, not from this key.)
    'eval.',
    'generate.',  # sampling in --mode=generate
    # How evaluation batches and truncates its sentences.
    'data.eval_batch_size', 'data.eval_max_length',
    'data.worker_count',  # processes reading the data
    # Where the data lies (a moved corpus, or other files to evaluate on),
    # and the encoding of users' files there. The tokenizer and what a task
    # learnt from the training data (labels.json) are the workdir's.
    'data.data_dir', 'data.tfds_data_dir', 'data.text_dir', 'data.encoding',
    # How the model is computed: the parameters stay float32 whatever the
    # compute dtype; the attention kernel and rematerialisation compute the
    # same function.
    'model.dtype', 'model.attention_impl', 'model.remat',
    # How parameters are sharded over the devices: a checkpoint is restored
    # into any mesh.
    'train.model_parallel', 'train.fsdp',
)


def after_training(key: str) -> bool:
  """Whether --set may change `key` (dotted) in the modes after training."""
  return any(key == k or (k.endswith('.') and key.startswith(k))
             for k in AFTER_TRAINING)


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
  present = sorted(present_run_files(workdir))
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


def present_run_files(workdir: str) -> set[str]:
  """The names of `run_files()` that exist in `workdir`."""
  return {n for n in run_files() if os.path.exists(os.path.join(workdir, n))}


def remove_new_run_files(workdir: str, before: set[str]) -> None:
  """Removes the run files that were not in `workdir` before (`before`:
  `present_run_files` then): what a new run wrote before it failed, so that
  the corrected command starts without --restart. Directories only when
  empty: nothing a run trained is ever deleted here."""
  for name in sorted(present_run_files(workdir) - before):
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      if not os.listdir(path):
        os.rmdir(path)
    else:
      os.remove(path)


def check_config(config: Config, workdir: str, *, save: bool = True,
                 experiment: str | None = None) -> None:
  """Checks `config` against the workdir's config.json; saves `config`.

  A run may change on resume only the keys that leave its saved state's
  meaning unchanged (`config.changeable_on_resume`); any other difference
  from the saved config is refused with the keys, saved and requested values
  (another model.scan_layers with what to set: `_scan_layers_message`).
  A reader (save=False: the modes after training) may also change what
  AFTER_TRAINING lists. A workdir without saved state (no checkpoint, no
  tokenizer: e.g. a run that stopped on a bad setting) takes the new config.
  Saving also records `experiment`, the one being trained, if given.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path) and has_saved_state(workdir):
    with open(path) as f:
      saved = _flatten(json.load(f))
    requested = _flatten(config_lib.to_dict(config))
    free = config_lib.changeable_on_resume(config)
    differ = [k for k in sorted(requested)
              if k not in free and k in saved and saved[k] != requested[k]
              and (save or not after_training(k))]
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
    _write(path, config_lib.to_json(config))
    if experiment:
      _write(os.path.join(workdir, EXPERIMENT_FILE), experiment + '\n')


def _write(path: str, text: str) -> None:
  """Writes `path` whole or not at all (a kill leaves the old file)."""
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)


def recorded_experiment(workdir: str) -> str | None:
  """The experiment that trained the workdir's run; None if not recorded
  (a run trained before experiment.txt was written)."""
  try:
    with open(os.path.join(workdir, EXPERIMENT_FILE), encoding='utf-8') as f:
      return f.read().strip() or None
  except FileNotFoundError:
    return None


class RunSettings(NamedTuple):
  """A trained run's config for the modes after training, and its origin."""
  config: Config
  experiment: str | None  # None: not recorded
  note: str  # the line that says where the settings came from


def run_settings(workdir: str, overrides: list[str], *, mode: str,
                 experiment: str | None = None) -> RunSettings | None:
  """The saved run's config.json with `overrides` ('KEY=VALUE') applied;
  None if the workdir holds no saved run (no config.json or nothing
  trained: the caller uses its experiment's config).

  An override may change only what AFTER_TRAINING lists; repeating the
  saved value is accepted. experiment: an --experiment given explicitly;
  a run recorded as another experiment's is refused. mode: for messages.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not (os.path.exists(path) and has_saved_state(workdir)):
    return None
  trained_by = recorded_experiment(workdir)
  if experiment and trained_by and experiment != trained_by:
    raise RunError(
        f'--experiment={experiment}: the run in {workdir} was trained by '
        f'experiment {trained_by}, and --mode={mode} takes every setting from '
        f'that run ({path}). Leave --experiment out (or give '
        f'--experiment={trained_by}), or train {experiment} in another '
        f'--workdir first.')
  saved = _load_config(path)
  config = config_lib.override_all(saved, list(overrides))
  before = _flatten(config_lib.to_dict(saved))
  after = _flatten(config_lib.to_dict(config))
  changed = sorted(k for k in after if before.get(k) != after[k])
  fixed = [k for k in changed if not after_training(k)]
  if fixed:
    raise RunError(_fixed_by_training_message(
        workdir, mode, trained_by or experiment, fixed, before, after))
  origin = [f'experiment {trained_by or "not recorded"}']
  if changed:
    origin.append('--set ' + ' '.join(f'{k}={_as_set(after[k])}'
                                      for k in changed))
  note = f"Using the run's settings from {path} ({'; '.join(origin)})."
  return RunSettings(config, trained_by, note)


def _load_config(path: str) -> Config:
  """The Config in a run's config.json; ConfigError naming the file if it
  does not read as one."""
  try:
    with open(path, encoding='utf-8') as f:
      return config_lib.from_dict(json.load(f))
  except (ValueError, TypeError) as error:  # JSON, ConfigError, __post_init__
    raise config_lib.ConfigError(
        f'{path} does not hold a config this code reads ({error}). Train the '
        'run again with --restart, or use the experiment\'s settings by '
        'moving the file away.') from None


def _fixed_by_training_message(workdir: str, mode: str,
                               experiment: str | None, keys: list[str],
                               saved: dict[str, Any],
                               requested: dict[str, Any]) -> str:
  """The one-paragraph error for a --set, after training, of a key that
  training fixed."""
  sets = ' '.join(f'--set={k}={_as_set(requested[k])}' for k in keys)
  trained = ', '.join(f'{k}={_as_set(saved[k])}' for k in keys)
  allowed = ', '.join(k + '*' if k.endswith('.') else k
                      for k in AFTER_TRAINING)
  it, that = ('it', 'that') if len(keys) == 1 else ('them', 'those')
  return (
      f'{sets}: the run in {workdir} was trained with {trained}, and '
      f'training fixed {it}: --mode={mode} takes every setting from the '
      f'run\'s {CONFIG_FILE}, and after training --set may change only '
      f'{allowed}. Leave {that} --set out, or train a new run with {it} in '
      f'another workdir: python launch.py '
      f'--experiment={experiment or "NAME"} --workdir=NEW_WORKDIR {sets} '
      '(and the run\'s other --set).')


def _as_set(value: Any) -> str:
  """A config value as --set writes it."""
  if isinstance(value, bool):
    return str(value).lower()
  return repr(value) if value == '' else str(value)


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
