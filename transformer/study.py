"""--mode=study: a grid of settings, each trained with several seeds.

  python launch.py --experiment=NAME --mode=study --study_dir=DIR \
      --vary=train.loss=cross_entropy,focal \
      --vary=train.class_weights=none,balanced --seeds=3 [--parallel=P]

Every combination of the --vary values (their Cartesian product, in the
order given) is trained with seed=0..seeds-1, each as an ordinary run of
launch.py in its own workdir DIR/COMBINATION/seedK/ and its own process (a
run that crashes ends only itself; each can be resumed, evaluated and drawn
like any run; its output goes to log.txt there), then evaluated on the test
split; `study_runs` runs these processes. `study_report` writes
DIR/results.csv, summary.md and summary.png from the runs' evaluations.

A recipe that sets several keys at once is a named variant: the
experiment's module-level VARIANTS = {NAME: ('KEY=VALUE', ...)}, picked by
the pseudo-key `variant` (--vary=variant=cross_entropy,ldam_drw), which
combines with the other --vary keys like any key.

The definition (experiment, --set, --vary, --seeds, and what each variant
stood for) is checked whole before anything runs and recorded in
DIR/study.json; the same command again skips the finished runs and resumes
the others from their checkpoints. Nothing here asks which task a run
learns: what to compare is the task class's HEADLINE_METRICS, their
directions its BEST_METRICS.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import hashlib
import importlib
import itertools
import json
import os
import re
import shlex
import sys
from typing import Any, NamedTuple, Sequence

from transformer import config as config_lib
from transformer import experiment as experiment_lib
from transformer import study_report
from transformer import study_runs
from transformer import tasks

DEFINITION_FILE = 'study.json'
LOCK_FILE = '.lock'
# A directory name longer than this is cut and given a hash of the whole.
MAX_NAME = 120
# --vary's pseudo-key that picks the experiment's VARIANTS by name.
VARIANT = 'variant'


class StudyError(Exception):
  """A study flag or study directory the user must change; one paragraph."""


# ---------------------------------------------------------------------------
# The definition and its combinations.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Definition:
  """What a study compares; DIR/study.json holds it."""
  experiment: str
  sets: tuple[str, ...]
  vary: tuple[tuple[str, tuple[str, ...]], ...]  # (key, values), in order
  seeds: int
  # (name, its KEY=VALUE assignments) of each variant that --vary=variant=
  # picks, as the experiment's VARIANTS gave them (`with_variants`).
  variants: tuple[tuple[str, tuple[str, ...]], ...] = ()

  def to_json(self) -> dict[str, Any]:
    values = {'experiment': self.experiment, 'set': list(self.sets),
              'vary': [{'key': k, 'values': list(v)} for k, v in self.vary],
              'seeds': self.seeds}
    if self.variants:  # absent otherwise: older study.json files still match
      values['variants'] = [{'name': n, 'set': list(a)}
                            for n, a in self.variants]
    return values

  @classmethod
  def from_json(cls, values: dict[str, Any]) -> 'Definition':
    return cls(str(values['experiment']), tuple(values['set']),
               tuple((v['key'], tuple(v['values'])) for v in values['vary']),
               int(values['seeds']),
               tuple((str(v['name']), tuple(v['set']))
                     for v in values.get('variants', ())))

  def combinations(self) -> list['Combination']:
    return combinations(self.vary, self.variants)

  def flags(self) -> tuple[str, str, str, str]:
    """--experiment, --set, --vary and --seeds as given on a command line."""
    return (self.experiment,
            ' '.join(f'--set={s}' for s in self.sets) or '(none)',
            ' '.join(_vary_flag(k, v) for k, v in self.vary) or '(none)',
            str(self.seeds))

  def command(self, study_dir: str) -> str:
    """The launch.py command line of this study."""
    args = [f'--experiment={self.experiment}', '--mode=study',
            f'--study_dir={study_dir}',
            *(f'--set={s}' for s in self.sets),
            *(_vary_flag(k, v) for k, v in self.vary),
            f'--seeds={self.seeds}']
    return shlex.join(['python', 'launch.py', *args])


def _vary_flag(key: str, values: Sequence[str]) -> str:
  return f'--vary={key}={_join_values(values)}'


def _join_values(values: Sequence[str]) -> str:
  """--vary's value list (`parse_vary` reads it back): commas, or ';'
  where a value holds a comma (and after a lone value)."""
  if not any(',' in v for v in values):
    return ','.join(values)
  return ';'.join(values) + (';' if len(values) == 1 else '')


class Combination(NamedTuple):
  """One point of the grid: its directory name, its (key, value)s as
  varied, and the KEY=VALUE assignments its runs get (a variant's in place
  of `variant=NAME`)."""
  name: str
  settings: tuple[tuple[str, str], ...]
  assignments: tuple[str, ...]


class Run(NamedTuple):
  """One training run of the study: a combination and a seed."""
  combination: Combination
  seed: int
  workdir: str

  def describe(self) -> str:
    return f'{self.combination.name} seed {self.seed}'


def parse_vary(specs: Sequence[str]
               ) -> tuple[tuple[str, tuple[str, ...]], ...]:
  """Each --vary=KEY=V1,V2,... as (KEY, values): the syntax only (the keys
  and values are checked against the config by `check`). Values are
  separated by commas, or by ';' when one of them holds a comma (one
  weight per class: --vary='train.class_weights=1,1,1;1,2,4', or one such
  value alone: 'train.class_weights=1,2,4;')."""
  vary: dict[str, tuple[str, ...]] = {}
  given: dict[str, str] = {}
  for spec in specs:
    key, _, text = spec.partition('=')
    key = key.strip()
    if not key or '=' not in spec:
      raise StudyError(
          f'--vary={spec}: expected KEY=VALUE,VALUE,..., e.g. '
          '--vary=train.loss=cross_entropy,focal (values separated by '
          "commas, or by ';' when a value holds commas).")
    if key == 'seed':
      raise StudyError(
          f'--vary={spec}: a study trains every combination with seed=0, '
          '1, ..., N-1 itself; give the number of seeds with --seeds=N '
          'instead of varying seed.')
    if key in vary:
      raise StudyError(
          f'--vary={spec}: {key} is varied twice (also --vary={given[key]}); '
          'give all its values in one --vary, separated by commas.')
    values = tuple(v.strip() for v in _split_values(text))
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
      raise StudyError(
          f'--vary={spec}: {", ".join(map(repr, repeated))} given more than '
          'once; each value of a --vary is one setting of the study, so '
          'give each once.')
    vary[key], given[key] = values, spec
  return tuple(vary.items())


def _split_values(text: str) -> list[str]:
  """'a,b' -> [a, b]; 'a,b;c' -> ['a,b', 'c']; 'a,b;' -> ['a,b'] (one
  value that holds a comma)."""
  if ';' not in text:
    return text.split(',')
  values = text.split(';')
  return values[:-1] if len(values) > 1 and not values[-1] else values


def combinations(vary: Sequence[tuple[str, Sequence[str]]],
                 variants: Sequence[tuple[str, Sequence[str]]] = ()
                 ) -> list[Combination]:
  """The Cartesian product of the --vary values, the first --vary
  outermost, each named for its directory (`directory_name`); a variant
  stands for its assignments in `variants` ((name, assignments), as
  `with_variants` gives them)."""
  keys = [key for key, _ in vary]
  table = {name: tuple(assignments) for name, assignments in variants}
  products = itertools.product(*(values for _, values in vary))
  result = []
  for values in products:
    settings = tuple(zip(keys, values))
    result.append(Combination(directory_name(settings, keys), settings,
                              _assignments(settings, table)))
  return result


def _assignments(settings: Sequence[tuple[str, str]],
                 variants: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
  """KEY=VALUE per setting; a variant's own assignments for variant=NAME."""
  result: list[str] = []
  for key, value in settings:
    if key != VARIANT:
      result.append(f'{key}={value}')
    elif value in variants:
      result.extend(variants[value])
    else:  # a definition not passed through with_variants
      raise ValueError(f'variant {value!r} has no assignments; '
                       'study.with_variants gives them')
  return tuple(result)


def directory_name(settings: Sequence[tuple[str, str]],
                   keys: Sequence[str]) -> str:
  """'loss=focal,class_weights=balanced': each varied key by its last part
  (its whole dotted path where two varied keys share that part), '=' and
  its value, joined by commas; characters other than letters, digits and
  '._+-' become '_'. No --vary: 'default'."""
  if not settings:
    return 'default'
  last = [key.rsplit('.', 1)[-1] for key in keys]
  short = {key: part if last.count(part) == 1 else key
           for key, part in zip(keys, last)}
  safe = lambda text: re.sub(r'[^A-Za-z0-9._+-]', '_', text)
  name = ','.join(f'{safe(short[key])}={safe(value)}'
                  for key, value in settings)
  if len(name) > MAX_NAME:  # file systems allow 255 bytes
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    name = f'{name[:MAX_NAME - 11]}-{digest}'
  return name


def runs(definition: Definition, study_dir: str) -> list[Run]:
  """Every run of the study, seed by seed (all combinations of seed 0
  first: a study stopped early has comparable results soonest)."""
  return [Run(c, seed, os.path.join(study_dir, c.name, f'seed{seed}'))
          for seed in range(definition.seeds)
          for c in definition.combinations()]


# ---------------------------------------------------------------------------
# Named variants: the experiment's VARIANTS.
# ---------------------------------------------------------------------------


def experiment_variants(experiment: str) -> dict[str, tuple[str, ...]]:
  """experiments/NAME.py's VARIANTS (name -> its KEY=VALUE assignments);
  {} where it defines none. A StudyError if VARIANTS is not such a dict."""
  # load_config raises the usual ConfigError for an unknown experiment.
  experiment_lib.load_config(experiment, [])
  module = importlib.import_module(f'{experiment_lib.PACKAGE}.{experiment}')
  variants = getattr(module, 'VARIANTS', None) or {}
  where = f'{_experiment_file(experiment)}: VARIANTS'
  if not isinstance(variants, dict):
    raise StudyError(f'{where} must be a dict of name -> a tuple of '
                     f"'KEY=VALUE' strings, not a {type(variants).__name__}.")
  for name, assignments in variants.items():
    # ('a=1') is a string, read letter by letter: a tuple needs the comma.
    if (not isinstance(name, str) or
        not isinstance(assignments, (tuple, list)) or
        not all(isinstance(a, str) for a in assignments)):
      raise StudyError(
          f'{where}[{name!r}] = {assignments!r}: each variant maps its name '
          "to a tuple of 'KEY=VALUE' strings, e.g. ('train.loss=focal',) "
          '(mind the comma of a one-element tuple).')
  return {name: tuple(a) for name, a in variants.items()}


def _experiment_file(experiment: str) -> str:
  return f'{experiment_lib.PACKAGE}/{experiment}.py'


def with_variants(definition: Definition) -> Definition:
  """`definition` with what each variant of --vary=variant=... stands for
  now (the experiment's VARIANTS); a StudyError naming the flag for a
  variant the experiment does not define, or an experiment without
  VARIANTS."""
  names = dict(definition.vary).get(VARIANT)
  if names is None:
    return dataclasses.replace(definition, variants=())
  flag = _vary_flag(VARIANT, names)
  where = _experiment_file(definition.experiment)
  defined = experiment_variants(definition.experiment)
  if not defined:
    raise StudyError(
        f'{flag}: {where} defines no VARIANTS, so there is no variant to '
        'pick. Vary its config keys instead (--vary=KEY=V1,V2), or define '
        "VARIANTS = {'NAME': ('KEY=VALUE', ...), ...} beside its "
        'get_config().')
  unknown = [name for name in names if name not in defined]
  if unknown:
    raise StudyError(
        f'{flag}: {", ".join(map(repr, unknown))}: no such variant in '
        f'{where}. Its VARIANTS: {", ".join(defined)}.')
  return dataclasses.replace(
      definition, variants=tuple((name, defined[name]) for name in names))


# ---------------------------------------------------------------------------
# Checking the definition before anything runs.
# ---------------------------------------------------------------------------


class Measures(NamedTuple):
  """What the study compares, from the task classes of its runs."""
  headline: tuple[str, ...]  # HEADLINE_METRICS; the first ranks
  directions: dict[str, str]  # BEST_METRICS: metric -> 'max' or 'min'


def check(definition: Definition) -> Measures:
  """Checks every --set, --vary key and value, each variant's assignments
  and each combination's config (config_lib.override_all on the
  experiment's config, as each run will), and that its data has a test
  split; returns what the study compares. A definition that varies
  `variant` without its variants gets them first (`with_variants`).
  Raises StudyError (or the experiment's ConfigError for a bad
  --experiment or --set) before anything runs."""
  if not definition.variants:
    definition = with_variants(definition)
  base = experiment_lib.load_config(definition.experiment,
                                    list(definition.sets))
  set_keys = {s.partition('=')[0].strip(): s for s in definition.sets}
  if 'seed' in set_keys:
    raise StudyError(
        f'--set={set_keys["seed"]}: each run of a study gets its own seed, '
        'seed=0, 1, ..., N-1 (--seeds=N); leave --set=seed out.')
  for key, values in definition.vary:
    if key == VARIANT:
      _check_variants(definition, base, set_keys)
    else:
      _check_vary(definition, base, set_keys, key, values)
  headline: dict[str, None] = {}
  directions: dict[str, str] = {}
  for combination in definition.combinations():
    task_class = _check_combination(definition, combination)
    headline.update(dict.fromkeys(task_class.HEADLINE_METRICS))
    for name, direction in task_class.BEST_METRICS.items():
      directions.setdefault(name, direction)
  _check_names(definition)
  return Measures(tuple(headline), directions)


def _check_vary(definition: Definition, base: config_lib.Config,
                set_keys: dict[str, str], key: str,
                values: Sequence[str]) -> None:
  """A StudyError naming the --vary flag if its key is unknown or also
  --set, or one of its values is refused by the config."""
  flag = _vary_flag(key, values)
  _check_key(flag, base, key)
  if key in set_keys:
    raise StudyError(
        f'{flag} and --set={set_keys[key]} both set {key}; a study sets a '
        'varied key from its --vary alone: leave that --set out.')
  for value in values:
    try:
      experiment_lib.load_config(definition.experiment,
                                 [*definition.sets, f'{key}={value}'])
    except config_lib.ConfigError as error:
      raise StudyError(
          f'{flag}: the value {value!r} is refused: '
          f'{_reason(error)}. Give values {key} accepts, '
          'separated by commas.') from None


def _check_key(where: str, base: config_lib.Config, key: str) -> None:
  """A StudyError starting with `where` if `key` is no config key."""
  paths = config_lib.field_paths(base)
  if key not in paths:
    close = difflib.get_close_matches(key, paths, n=3, cutoff=0.5)
    hint = f' Did you mean {" or ".join(close)}?' if close else ''
    raise StudyError(f'{where}: {key} is no config key.{hint} Every key is '
                     'listed in the README ("Configuration").')


def _check_variants(definition: Definition, base: config_lib.Config,
                    set_keys: dict[str, str]) -> None:
  """A StudyError naming the variant if one of its assignments is no
  KEY=VALUE of a config key, sets the seed, sets a key twice or a key that
  --set or another --vary also sets, or if the config refuses its values
  (as it would refuse them from --vary)."""
  varied = {key: _vary_flag(key, values) for key, values in definition.vary
            if key != VARIANT}
  flag = _vary_flag(VARIANT, [name for name, _ in definition.variants])
  origin = f'{_experiment_file(definition.experiment)}\'s VARIANTS'
  for name, assignments in definition.variants:
    where = (f'{flag}: the variant {name} ({_shown(assignments)}, from '
             f'{origin})')
    seen: set[str] = set()
    for assignment in assignments:
      key, equals, _ = assignment.partition('=')
      key = key.strip()
      if not equals:
        raise StudyError(f'{where}: {assignment!r} is no KEY=VALUE, e.g. '
                         'train.loss=focal.')
      _check_key(where, base, key)
      if key == 'seed':
        raise StudyError(f'{where} sets seed, and each run of a study gets '
                         'its own (--seeds=N): leave it out of the variant.')
      other = ('it sets it twice' if key in seen else
               f'--set={set_keys[key]} also sets it' if key in set_keys else
               f'{varied[key]} also varies it' if key in varied else '')
      if other:
        raise StudyError(f'{where} sets {key}, and {other}; a study sets '
                         'each key in one place: leave it out of one of '
                         'them.')
      seen.add(key)
    try:
      config_lib.override_all(base, list(assignments))
    except config_lib.ConfigError as error:
      raise StudyError(f'{where} is refused: {_reason(error)}. Change the '
                       'variant or the --set it conflicts with.') from None


def _shown(assignments: Sequence[str]) -> str:
  """A variant's assignments for a message: 'a=1 b=2', or 'nothing set'."""
  return ' '.join(assignments) or 'nothing set'


def _check_combination(definition: Definition, combination: Combination):
  """The task class of one combination's config; StudyError naming the
  --vary flags if the values together are refused, if eval.best_metric is
  not a metric of the task, or if the data has no test split."""
  flags = ' '.join(_vary_flag(k, v) for k, v in definition.vary)
  try:
    config = experiment_lib.load_config(
        definition.experiment, [*definition.sets, *combination.assignments])
    tasks.best_metric(config)
  except config_lib.ConfigError as error:
    raise StudyError(
        f'{flags}: the combination {combination.name} is refused: '
        f'{_reason(error)}. Change the values of these --vary flags '
        'or the --set that conflicts with them.') from None
  missing = tasks.missing_split(config, 'test')
  if missing:
    raise StudyError(
        f'--mode=study compares the runs on the test split, and '
        f'{combination.name}: {missing}. Add a test file to the data.')
  return tasks.family(config).task_class


def _check_names(definition: Definition) -> None:
  """A StudyError if two combinations would share a directory (values that
  differ only in characters a directory name cannot hold)."""
  seen: dict[str, Combination] = {}
  for combination in definition.combinations():
    other = seen.setdefault(combination.name, combination)
    if other is not combination:
      raise StudyError(
          f'--vary: the combinations {_varied(other)} and '
          f'{_varied(combination)} would share the directory '
          f'{combination.name}; give values that differ in letters, digits '
          "or '._+-'.")


def _varied(combination: Combination) -> list[str]:
  return [f'{key}={value}' for key, value in combination.settings]


def _reason(error: Exception) -> str:
  """A ConfigError's message without its leading '--set KEY=VALUE: '
  (the study names its own flags)."""
  return re.sub(r'^(--set[= ]\S+ )*--set[= ]\S+: ', '',
                str(error)).rstrip('.')


def record_definition(definition: Definition, study_dir: str) -> None:
  """Writes DIR/study.json on first start; a StudyError if it holds
  another definition (the runs there would not compare with these)."""
  path = os.path.join(study_dir, DEFINITION_FILE)
  wanted = definition.to_json()
  try:
    with open(path, encoding='utf-8') as f:
      recorded = json.load(f)
  except FileNotFoundError:
    os.makedirs(study_dir, exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(wanted, f, indent=2)
      f.write('\n')
    os.replace(path + '.tmp', path)
    return
  except ValueError:
    raise StudyError(f'{path} is not a study definition this code reads; '
                     'use another --study_dir.') from None
  if recorded != wanted:
    try:
      before = Definition.from_json(recorded)
    except (KeyError, TypeError, ValueError):
      raise StudyError(f'{path} is not a study definition this code reads; '
                       'use another --study_dir.') from None
    differ = [f'{name}: recorded {old}, given {new}' for name, old, new in
              zip(('--experiment', '--set', '--vary', '--seeds'),
                  before.flags(), definition.flags()) if old != new]
    changed = _changed_variants(before, definition)
    again = before.command(study_dir)
    if changed:
      again = (f'restore {_experiment_file(definition.experiment)}\'s '
               f'VARIANTS as recorded and run {again}')
    raise StudyError(
        f'--study_dir={study_dir} holds a study of another definition '
        f'({path}; ' + '; '.join(differ + changed) + '). Its runs compare '
        'only with runs of the same experiment, --set, --vary, variants and '
        f'--seeds: use a new --study_dir, or go on with the recorded study: '
        f'{again}')


def _changed_variants(before: Definition, now: Definition) -> list[str]:
  """Per variant both definitions pick whose assignments differ (the
  experiment's VARIANTS changed since the study started): what each was
  and is."""
  if before.experiment != now.experiment:  # --experiment says it already
    return []
  old, new = dict(before.variants), dict(now.variants)
  return [f'the variant {name}: recorded {_shown(old[name])}, '
          f'{_experiment_file(now.experiment)} now gives '
          f'{_shown(new[name])}'
          for name in new if name in old and old[name] != new[name]]


def lock(study_dir: str):
  """An exclusive lock on DIR/.lock, held while the returned file is open
  (the kernel releases it however the process ends); a StudyError naming
  the holder if another study runs in DIR (two would start the same
  runs)."""
  os.makedirs(study_dir, exist_ok=True)
  path = os.path.join(study_dir, LOCK_FILE)
  held = open(path, 'a+', encoding='utf-8')
  try:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    held.seek(0)
    holder = held.read().strip() or 'another process'
    held.close()
    raise StudyError(
        f'--study_dir={study_dir} is in use by another study ({holder}; '
        f'{path} is locked). Wait for it to finish or stop it; its runs '
        'are resumable, so running the same command afterwards goes on '
        'where it stopped.') from None
  held.seek(0)
  held.truncate()
  held.write(f'pid {os.getpid()}: {shlex.join(sys.argv)}\n')
  held.flush()
  return held


def step_args(definition: Definition, run: Run, step: str) -> list[str]:
  """launch.py's arguments for a run's step. Training repeats the whole
  definition (a resumed run checks it against its config.json); the
  evaluation takes the run's own settings and its best checkpoint when it
  keeps one."""
  common = [f'--experiment={definition.experiment}', f'--workdir={run.workdir}']
  if step == 'evaluate':
    return [*common, '--mode=evaluate', '--split=test']
  return [*common, *(f'--set={s}' for s in definition.sets),
          *(f'--set={a}' for a in run.combination.assignments),
          f'--set=seed={run.seed}']


# ---------------------------------------------------------------------------
# Reading the results.
# ---------------------------------------------------------------------------


def read_result(run: Run, problem: str) -> study_report.RunResult:
  """The run's test evaluation (numeric metrics, per-class recall),
  steps and training seconds (summed over its sessions' stop records)."""
  stops = study_runs.stop_records(run.workdir)
  path = study_runs.test_evaluation(run.workdir) if not problem else None
  evaluation: dict[str, Any] = {}
  if path:
    try:
      with open(path, encoding='utf-8') as f:
        evaluation = json.load(f)
    except (OSError, ValueError) as error:
      problem = f'{path} does not read as JSON ({error})'
  steps = evaluation.get('checkpoint_steps')
  return study_report.RunResult(
      combination=run.combination.name, settings=run.combination.settings,
      seed=run.seed, workdir=run.workdir, problem=problem,
      steps=stops[-1].get('step') if stops else None,
      wall_s=sum(float(r.get('wall_s') or 0) for r in stops) if stops else None,
      checkpoint_step=steps[-1] if isinstance(steps, list) and steps else None,
      evaluation=path, metrics=study_report.numeric_metrics(evaluation),
      recall=study_report.recalls(evaluation),
      train_counts=study_report.train_counts(evaluation))


def class_counts(results: Sequence[study_report.RunResult]
                 ) -> list[tuple[str, int]]:
  """(class, training count), most frequent first, from the first run whose
  test evaluation has them (classification's per_class 'train_count'); []
  where none has."""
  for result in results:
    if result.train_counts:
      return sorted(result.train_counts.items(),
                    key=lambda pair: (-pair[1], pair[0]))
  return []


# ---------------------------------------------------------------------------
# The whole study.
# ---------------------------------------------------------------------------


def run(definition: Definition, study_dir: str, *, parallel: int,
        launcher: Sequence[str]) -> int:
  """Checks the definition, records it, brings every run to finished and
  writes the report. Returns the exit status: 0 when every run has its
  test evaluation, 1 when some failed (the report covers the others),
  128 + the signal when the study was stopped (no report)."""
  definition = with_variants(definition)
  measures = check(definition)
  held = lock(study_dir)
  try:
    record_definition(definition, study_dir)
    return _run_checked(definition, study_dir, measures, parallel=parallel,
                        launcher=launcher)
  finally:
    held.close()


def _run_checked(definition: Definition, study_dir: str, measures: Measures,
                 *, parallel: int, launcher: Sequence[str]) -> int:
  """`run` once the definition is checked, recorded and DIR locked."""
  say = lambda line: print(line, flush=True)
  all_runs = runs(definition, study_dir)
  count = len(definition.combinations())
  say(f'Study {study_dir}: {count} combination(s) x {definition.seeds} '
      f'seed(s) = {len(all_runs)} runs of {definition.experiment}, '
      f'{parallel} at a time.')
  outcome, stopped = study_runs.execute(
      all_runs, lambda run, step: step_args(definition, run, step), launcher,
      parallel, say)
  if stopped is not None:
    left = sum(1 for r in all_runs if outcome[r])
    say(f'\nThe study stopped with {left} of {len(all_runs)} runs '
        'unfinished. Run the same command again to resume them.')
    return 128 + stopped
  results = [read_result(r, outcome[r]) for r in all_runs]
  order = {c.name: i for i, c in enumerate(definition.combinations())}
  results.sort(key=lambda r: (order[r.combination], r.seed))
  paths = study_report.write(
      study_dir, definition.command(study_dir), definition.seeds, results,
      measures.headline, measures.directions, class_counts(results),
      variants=definition.variants)
  say('\n' + study_report.ranking_line(results, measures.headline,
                                       measures.directions))
  say('Wrote ' + ', '.join(paths))
  failed = [r for r in results if r.problem]
  if failed:
    say(f'{len(failed)} run(s) without a result (listed in summary.md); '
        'run the same command again to retry them.')
    return 1
  return 0
