"""Warm starts (`train.init_from`): a new run begins from another run's
parameters, or from a Hugging Face model directory's.

The loop (transformer/loop.py) calls this module at four moments of a run
that starts; a resumed run reads only its own workdir:

  resolve         before the config is checked and saved: the keys the
                  source fixes (a Hugging Face model's shape and tokenizer; a
                  workdir's tokenizer and vocabulary) are taken from it, and
                  recorded in WORKDIR/warm_start.json, which a resumed run
                  applies again without reading the source;
  copy_tokenizer  before the tokenizer is loaded: the source's tokenizer
                  files are copied into the workdir;
  load            before any step: the source's arrays are matched to this
                  model's by name and shape (`match`), and the report printed;
  overlay         after the fresh state is initialised: the matched arrays
                  replace the fresh ones, with the fresh ones' shardings.

Names line up across task families by design (transformer/model.py): a
classifier's encoder is 'encoder/...', a masked LM's too, a language model's
decoder 'decoder/...', and the translation model's Transformer sits at the
top level; `match` also places a source one module deeper or shallower
(a translation model's Transformer as a classifier's 'encoder').
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from transformer import checkpoint as checkpoint_lib
from transformer import config as config_lib
from transformer import huggingface
from transformer import workdir as workdir_lib
from transformer.config import Config, ConfigError
from transformer.data import tokenizer as tokenizer_lib
from transformer.workdir import RunError

# What a warm-started run records in its workdir (see `resolve`).
RECORD_FILE = workdir_lib.WARM_START_FILE
WORKDIR, HUGGINGFACE = 'workdir', 'huggingface'
# Shown after every error about the source: what train.init_from accepts.
ACCEPTED = (
    'train.init_from takes a training run\'s workdir (its config.json and '
    'checkpoints/; the best checkpoint is used where the run kept one, else '
    'the newest) or a Hugging Face model directory (config.json, '
    'model.safetensors and tokenizer.json, e.g. from `huggingface-cli '
    'download bert-base-uncased --local-dir DIR`)')


class Plan(NamedTuple):
  """Where a run's parameters start from, once `resolve` has checked it."""
  source: str  # the directory, absolute
  kind: str  # WORKDIR or HUGGINGFACE
  assigned: dict[str, Any]  # the dotted config keys taken from the source


# ---------------------------------------------------------------------------
# The config: before the run's config is checked and saved.
# ---------------------------------------------------------------------------


def resolve(config: Config, workdir: str, overrides: Sequence[str] = ()
            ) -> tuple[Config, Plan | None]:
  """(config with the keys the source fixes, the plan; None: no warm start).

  A run that starts (no saved run in `workdir`) with train.init_from reads
  the source's config: a Hugging Face model's shape and tokenizer keys
  (`huggingface.read_model_config`), or a workdir's data.tokenizer and
  model.vocab_size -- its tokenizer comes with it, so the vocabulary must be
  its. These replace the experiment's values; an explicit --set of one of
  them (`overrides`, 'KEY=VALUE') to another value is a ConfigError naming
  both. They are recorded in WORKDIR/warm_start.json (process 0).

  A saved run takes them from its record and never reads train.init_from
  again (its source may be gone): its config.json is the truth.
  """
  explicit = {a.split('=', 1)[0].strip() for a in overrides}
  if _saved_run(workdir):
    return _resumed(config, workdir, explicit)
  if jax.process_index() == 0 and os.path.exists(_record_path(workdir)):
    os.remove(_record_path(workdir))  # left by a start that failed early
  if not config.train.init_from:
    _check_tokenizer_source(config, workdir)
    return config, None
  plan = _plan(config, workdir)
  config = _assign(config, plan, explicit)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(_record_path(workdir), 'w', encoding='utf-8') as f:
      json.dump(plan._asdict(), f, indent=1)
  return config, plan


def _saved_run(workdir: str) -> bool:
  """Whether `workdir` holds a run that resumes (workdir.check_config's
  test): its config.json and saved state."""
  return (os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)) and
          workdir_lib.has_saved_state(workdir))


def _record_path(workdir: str) -> str:
  return os.path.join(workdir, RECORD_FILE)


def _resumed(config: Config, workdir: str, explicit: set[str]
             ) -> tuple[Config, Plan | None]:
  """A saved run: the keys its record took from the source, if any."""
  try:
    with open(_record_path(workdir), encoding='utf-8') as f:
      plan = Plan(**json.load(f))
  except FileNotFoundError:
    if config.train.init_from:
      print(f'Note: train.init_from={config.train.init_from} is ignored: '
            f'{workdir} holds a run that started without it, and resumes '
            'from its own state.', flush=True)
    return config, None
  except (ValueError, TypeError) as error:
    raise RunError(f'{_record_path(workdir)} is damaged ({error}): it says '
                   'which settings the run took from its warm start\'s '
                   'source. Restore it, or start over with --restart.'
                   ) from None
  given = config.train.init_from
  if given and os.path.abspath(given) != plan.source:
    print(f'Note: train.init_from={given} is ignored: the run in {workdir} '
          f'started from {plan.source} ({RECORD_FILE}), and a run reads its '
          'source once, when it starts. To start from the other, use '
          '--restart or a new --workdir.', flush=True)
  return _assign(config, plan, explicit, quiet=True), plan


def _check_tokenizer_source(config: Config, workdir: str) -> None:
  """data.tokenizer=huggingface needs a source to bring its tokenizer."""
  if config.data.tokenizer != 'huggingface' or os.path.exists(
      os.path.join(workdir, tokenizer_lib.filename(config))):
    return
  raise ConfigError(
      'data.tokenizer=huggingface reads the tokenizer.json of the Hugging '
      'Face model directory given as train.init_from, and this run has no '
      'train.init_from: add --set=train.init_from=DIR (the experiment\'s '
      'docstring says what to download and how). ' + ACCEPTED + '.')


def _plan(config: Config, workdir: str) -> Plan:
  """The checked source of a run that starts, and the keys it fixes."""
  given = config.train.init_from
  source = os.path.abspath(given)
  if source == os.path.abspath(workdir):
    raise RunError(f'train.init_from={given} is this run\'s own workdir; a '
                   'warm start reads another run. ' + ACCEPTED + '.')
  if not os.path.isdir(source):
    raise RunError(f'train.init_from={given}: no such directory. ' +
                   ACCEPTED + '.')
  if huggingface.is_model_dir(source):
    model = huggingface.read_model_config(source)
    if config.task not in model.families:
      raise ConfigError(
          f'train.init_from={given} holds a Hugging Face {model.arch} model, '
          f'which starts task={" or ".join(model.families)}, and this run '
          f'is task={config.task}. Use an experiment of one of those tasks '
          '(e.g. text_classification_pretrained or '
          'text_regression_pretrained for a BERT encoder, gpt2_finetune for '
          'GPT-2), or another directory.')
    return Plan(source, HUGGINGFACE, dict(model.overrides))
  saved = _workdir_config(source, given)
  return Plan(source, WORKDIR, {'data.tokenizer': saved.data.tokenizer,
                                'model.vocab_size': saved.model.vocab_size})


def _workdir_config(source: str, given: str) -> Config:
  """The Config of the run in `source`, which must have a checkpoint."""
  path = os.path.join(source, workdir_lib.CONFIG_FILE)
  checkpoints = os.path.join(source, 'checkpoints')
  if not os.path.exists(path):
    raise RunError(f'train.init_from={given} is neither a training run\'s '
                   'workdir (it has no config.json) nor a Hugging Face model '
                   'directory. ' + ACCEPTED + '.')
  if not (os.path.isdir(checkpoints) and any(
      n.isdigit() for n in os.listdir(checkpoints))):
    raise RunError(f'train.init_from={given} holds a run without a '
                   'checkpoint yet (checkpoints/ is empty or missing): train '
                   'it first, or start from another. ' + ACCEPTED + '.')
  try:
    with open(path, encoding='utf-8') as f:
      return config_lib.from_dict(json.load(f))
  except (ValueError, TypeError) as error:
    raise RunError(f'train.init_from={given}: {path} does not hold a config '
                   f'this code reads ({error}). ' + ACCEPTED + '.') from None


# Keys a source may give that change how its parameters are used, never
# what they are (dropout, compute dtype): an explicit --set wins.
_FREE = tuple(f'model.{k}' for k in config_lib.ModelConfig.CHANGEABLE_ON_RESUME)


def _assign(config: Config, plan: Plan, explicit: set[str], *,
            quiet: bool = False) -> Config:
  """`config` with the plan's keys; a ConfigError for an explicit --set of
  one of them to another value, except those of _FREE."""
  values = config_lib.to_dict(config)
  clashes, changed = [], []
  for key, value in plan.assigned.items():
    *parents, name = key.split('.')
    node = values
    for part in parents:
      node = node.get(part, {})
    if name not in node:
      raise ConfigError(f'train.init_from={plan.source} sets {key}, which '
                        'is no config key of this code.')
    if key in explicit and key in _FREE:
      continue  # the command line's choice: it changes no parameter
    if node[name] != value:
      if key in explicit:
        clashes.append(f'--set={key}={_as_set(node[name])} (its config gives '
                       f'{_as_set(value)})')
      changed.append(f'{key}={_as_set(value)}')
      node[name] = value
  what = ('the run' if plan.kind == WORKDIR else 'the Hugging Face model')
  if clashes:
    raise ConfigError(
        f'{"; ".join(clashes)}: train.init_from={plan.source} holds {what} '
        'the parameters and tokenizer come from, and they have its values. '
        'Leave out those --set (or give the source\'s values).')
  try:
    config = config_lib.from_dict(values)
  except ValueError as error:
    raise ConfigError(f'train.init_from={plan.source}: its settings do not '
                      f'fit this experiment: {error}') from None
  if changed and not quiet:
    print(f'train.init_from={plan.source} ({what}) sets ' +
          ', '.join(changed) + '.', flush=True)
  return config


def _as_set(value: Any) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------------
# The tokenizer: before it is loaded or trained.
# ---------------------------------------------------------------------------


def copy_tokenizer(plan: Plan, config: Config, workdir: str) -> None:
  """Copies the source's tokenizer into `workdir` unless it has one
  (process 0 only: the others load it from the shared workdir)."""
  if os.path.exists(os.path.join(workdir, tokenizer_lib.filename(config))):
    return
  if plan.kind == HUGGINGFACE:
    huggingface.install_tokenizer(plan.source, workdir)
  else:
    names = dict.fromkeys((tokenizer_lib.filename(config),) +
                          workdir_lib.TOKENIZER_FILES +
                          (huggingface.TOKENIZER_FILE, huggingface.MAP_FILE))
    copied = [n for n in names
              if os.path.exists(os.path.join(plan.source, n))]
    if tokenizer_lib.filename(config) not in copied:
      raise RunError(f'train.init_from={plan.source} has no '
                     f'{tokenizer_lib.filename(config)}, the tokenizer its '
                     'parameters were trained with. ' + ACCEPTED + '.')
    for name in copied:
      shutil.copy2(os.path.join(plan.source, name),
                   os.path.join(workdir, name))
  print(f'Tokenizer copied from {plan.source}.', flush=True)


# ---------------------------------------------------------------------------
# The parameters: matched before any step, placed after the fresh init.
# ---------------------------------------------------------------------------


class Match(NamedTuple):
  """The source's arrays matched to a model's parameters."""
  arrays: dict[str, np.ndarray]  # this model's name -> the source's array
  new: list[str]  # this model's names the source lacks (initialised)
  unused: list[str]  # the source's names this model lacks
  placement: str  # '' or how the source's names were moved, for the report
  fresh: dict[str, tuple[int, ...]]  # this model's names and shapes
  source: dict[str, tuple[int, ...]]  # the source's names and shapes


def load(plan: Plan, abstract_params, config: Config) -> Match:
  """The source's parameters matched to `abstract_params` (shapes; what
  `train.abstract_state` gives), the report printed. RunError on a
  parameter of another shape, another model.scan_layers, or none loaded."""
  # A run that has no checkpoint yet reads its source again: it may have
  # gone since the run started.
  if not os.path.isdir(plan.source) or (
      plan.kind == HUGGINGFACE and not huggingface.is_model_dir(plan.source)):
    what = 'run' if plan.kind == WORKDIR else 'Hugging Face directory'
    raise RunError(f'train.init_from={plan.source}: the {what} this run '
                   'started from is gone, and the run has no checkpoint of '
                   'its own yet. Restore it, or start over with --restart. ' +
                   ACCEPTED + '.')
  if plan.kind == HUGGINGFACE:
    arrays = huggingface.load_params(plan.source)
    where, source_config = 'its safetensors', None
  else:
    source_config = _workdir_config(plan.source, plan.source)
    step, where = checkpoint_lib.choose_step(plan.source)
    arrays = _checkpoint_params(plan.source, step)
  fresh = {name: tuple(x.shape) for name, x in flatten(abstract_params)}
  matched = match(fresh, dict(flatten(arrays)), label=plan.source,
                  cause=_likely_cause(source_config, config))
  print(f'Warm start from {plan.source}, {where}:\n' + report(matched),
        flush=True)
  return matched


def _checkpoint_params(workdir: str, step: int) -> dict:
  """The parameters of checkpoint `step` of `workdir`, as host arrays (the
  optimizer state is not read)."""
  path = epath.Path(workdir) / 'checkpoints' / str(step) / 'state'
  try:
    saved = ocp.StandardCheckpointHandler().metadata(path).tree['params']
    as_numpy = jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
    restored = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
        item={'params': saved}, restore_args={'params': as_numpy},
        partial_restore=True))
  except Exception as error:  # pylint: disable=broad-except
    raise RunError(f'train.init_from={workdir}: could not read the '
                   f'parameters of its checkpoint {path} ({type(error).__name__}:'
                   f' {str(error)[:300]}). Choose another source, or repair '
                   'that run (resuming it sets damaged checkpoints aside).'
                   ) from None
  return restored['params']


def flatten(tree) -> list[tuple[str, Any]]:
  """(name, leaf) of a nested dict, names '/'-joined: 'encoder/embedding/
  embedding'."""
  return [('/'.join(str(getattr(k, 'key', k)) for k in path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


# The model.* keys that set parameters' shapes (the layer counts only where
# model.scan_layers stacks the layers; otherwise they add or drop names).
_SHAPE_KEYS = ('vocab_size', 'd_model', 'd_ff', 'num_heads', 'max_length',
               'token_types')
_STACKED_KEYS = ('num_encoder_layers', 'num_decoder_layers')


def _likely_cause(source: Config | None, config: Config) -> str:
  """What a shape mismatch likely comes from: the shape-setting model.*
  keys that differ between the source run and this one."""
  if source is not None:
    have = config_lib.to_dict(source)['model']
    want = config_lib.to_dict(config)['model']
    keys = _SHAPE_KEYS + (_STACKED_KEYS if want['scan_layers'] else ())
    differ = [f'model.{k} is {have[k]} there and {want[k]} here'
              for k in keys if have[k] != want[k]]
    if differ:
      return ('The likely cause: ' + '; '.join(differ) + ' (set '
              'the source\'s values with --set).')
  return ('The settings that shape the model are the same here, so the '
          'difference is in what this task builds on them (e.g. another '
          'number of classes or outputs in a head, which then cannot be '
          'loaded: warm-start from a run of the same outputs, or from one '
          'without that head).')


def match(fresh: dict[str, tuple[int, ...]], source: dict[str, Any], *,
          label: str, cause: str = '') -> Match:
  """Matches the `source` arrays to the `fresh` model's parameters by name
  and shape (names '/'-joined; pure, no I/O).

  The source is placed where most of its names are this model's: as it is,
  under one of this model's top-level modules, or with its own top-level
  module removed. Raises RunError (one paragraph, naming `label`) when the
  layers' layouts differ (model.scan_layers), a parameter of the same name
  has another shape (the first, with both shapes and `cause`), or nothing
  would be loaded.
  """
  shapes = {name: tuple(np.shape(a)) for name, a in source.items()}
  placement, rename = _place(set(fresh), shapes)
  renamed = {rename(n): n for n in shapes if rename(n) is not None}
  moved = {name: src for name, src in renamed.items() if name in fresh}
  hint = checkpoint_lib.scan_layers_hint(
      [n.replace('/', '.') for n in renamed],
      [n.replace('/', '.') for n in fresh])
  if hint:
    raise RunError(f'train.init_from={label}: {hint}, or warm-start from a '
                   'run of the same layout.')
  for name, want in fresh.items():
    if name in moved and shapes[moved[name]] != want:
      raise RunError(
          f'train.init_from={label}: its parameter {moved[name]!r} has shape '
          f'{list(shapes[moved[name]])} but this model\'s {name!r} has '
          f'{list(want)}, so the run cannot start from it (a warm start '
          f'loads the parameters of the same name and shape). {cause} '
          'Nothing was trained; this workdir now holds the run\'s config, so '
          'run again with the changed settings and --restart, or use a new '
          '--workdir.')
  if not moved:
    raise RunError(
        f'train.init_from={label}: none of its {len(source)} parameters '
        f'({", ".join(group_names(set(shapes), shapes))}) is one of this '
        f'model\'s ({", ".join(group_names(set(fresh), fresh))}), so nothing '
        'would be loaded: likely the wrong directory, or a model of another '
        'kind (a language model\'s decoder cannot start a classifier\'s '
        'encoder). ' + ACCEPTED + '.')
  return Match(
      arrays={name: source[src] for name, src in moved.items()},
      new=[n for n in fresh if n not in moved],
      unused=[n for n in shapes if n not in set(moved.values())],
      placement=placement, fresh=dict(fresh), source=shapes)


def _place(fresh: set[str], source: Iterable[str]
           ) -> tuple[str, Callable[[str], str | None]]:
  """(description, rename) of the placement of the source's names (rename:
  a source name -> this model's, None if left out) that matches the most of
  this model's names; ties go to the first: as it is."""
  source = list(source)
  tops = lambda names: dict.fromkeys(n.split('/')[0] for n in names if '/' in n)
  candidates = [('', lambda n: n)]
  for top in tops(fresh):  # e.g. a translation model into a classifier
    candidates.append((f"its parameters placed under '{top}/'",
                       lambda n, top=top: f'{top}/{n}'))
  for top in tops(source):  # e.g. a classifier's encoder into translation
    candidates.append((f"its '{top}/' parameters placed at the top",
                       lambda n, top=top: n[len(top) + 1:]
                       if n.startswith(top + '/') else None))
  matches = lambda rename: sum(rename(n) in fresh for n in source)
  return max(candidates, key=lambda c: matches(c[1]))  # the first of ties


def overlay(params, matched: Match):
  """`params` (the fresh state's, on the mesh) with the matched source
  arrays in place of those of the same name, each with the sharding of the
  array it replaces. Adam's moments start at zero whatever the parameters,
  so the fresh optimizer state stays valid."""
  def replace(path, fresh):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    if name not in matched.arrays:
      return fresh
    host = np.asarray(matched.arrays[name], dtype=fresh.dtype)
    # Every process holds the whole array: each gives its devices' shards.
    return jax.make_array_from_callback(host.shape, fresh.sharding,
                                        lambda index: host[index])
  return jax.tree_util.tree_map_with_path(replace, params)


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


def report(matched: Match) -> str:
  """Three lines: what was loaded, what is new, what was unused, with
  counts, parameter totals and the names grouped by prefix."""
  lines = [f'  ({matched.placement})'] if matched.placement else []
  for what, names, universe in (
      ('loaded', list(matched.arrays), matched.fresh),
      ('new', matched.new, matched.fresh),
      ('unused', matched.unused, matched.source)):
    total = sum(int(np.prod(universe[n])) for n in names)
    grouped = ', '.join(group_names(set(names), universe)) or '-'
    lines.append(f'  {what:<7}{len(names):>5} arrays {total:>13,} parameters:'
                 f' {grouped}')
  return '\n'.join(lines)


def group_names(names: set[str], universe: Iterable[str],
                limit: int = 8) -> list[str]:
  """`names` as the fewest 'prefix/*' patterns that cover exactly them
  within `universe` (every name of the model or the source): 'head/*' for
  all of a module's arrays, else its names one level down. At most `limit`
  entries, the rest counted."""
  universe = sorted(universe, key=_natural)
  groups = []

  def visit(prefix: str) -> None:
    under = [n for n in universe if n == prefix or n.startswith(prefix + '/')]
    chosen = [n for n in under if n in names]
    if not chosen:
      return
    if len(chosen) == len(under):
      groups.append(prefix if under == [prefix] else prefix + '/*')
      return
    for child in dict.fromkeys(
        prefix + '/' + n[len(prefix) + 1:].split('/')[0] for n in under
        if n != prefix):
      visit(child)

  for top in dict.fromkeys(n.split('/')[0] for n in universe):
    visit(top)
  if len(groups) > limit:
    groups = groups[:limit - 1] + [f'and {len(groups) - limit + 1} more']
  return groups


def _natural(name: str) -> list:
  """Sort key: 'encoder_2' before 'encoder_10'."""
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]
