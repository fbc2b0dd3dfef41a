"""The training loop: the side effects around `train.train_step`.

Read `train` from top to bottom: set up the workdir, tokenizer, data, state
(fresh or restored), then step, log, evaluate and checkpoint until done.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np
import tensorboardX
from jax.experimental import multihost_utils

from transformer import budget
from transformer import config as config_lib
from transformer import tasks
from transformer import train as train_lib
from transformer import warm_start
from transformer import workdir as workdir_lib
from transformer.best import BestMetric, Progress
from transformer.checkpoint import Checkpointer
from transformer.config import Config
from transformer.data import tokenizer as tokenizer_lib
from transformer.workdir import RunError


class MetricsWriter:
  """One line per log step to stdout, metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    self.jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self.tensorboard = tensorboardX.SummaryWriter(
        os.path.join(workdir, 'tensorboard'), flush_secs=30)

  def write(self, step: int, kind: str, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    record = {'step': step, 'kind': kind, **metrics}
    self.jsonl.write(json.dumps(record) + '\n')
    self.jsonl.flush()
    for name, value in metrics.items():
      self.tensorboard.add_scalar(f'{kind}/{name}', value, step)

  def write_stop(self, step: int, reason: str, wall_s: float) -> None:
    """The run's last record: why it stopped ('done', 'time_limit', ...)."""
    if self.enabled:
      self.jsonl.write(json.dumps({'step': step, 'kind': 'stop',
                                   'stop_reason': reason,
                                   'wall_s': wall_s}) + '\n')
      self.jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self.jsonl.close()
      self.tensorboard.close()


class StopRequested:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

  def __init__(self):
    self.signal = None
    self._previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None:  # a second Ctrl-C: stop at once
      signal.signal(signum, self._previous[signum])
      os.kill(os.getpid(), signum)
    self.signal = signum
    print(f'\nReceived {signal.Signals(signum).name}: saving a checkpoint '
          'after this step, then stopping.', flush=True)

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


def train(config: Config, workdir: str, *, restart: bool = False,
          experiment: str | None = None,
          overrides: Sequence[str] = ()) -> dict[str, Any]:
  """Trains (or resumes) the experiment in `workdir` to config.train.steps.

  Args:
    restart: set a previous run in the workdir aside (WORKDIR/previous/) and
      start over, instead of resuming it.
    experiment: the experiment's name, recorded with the run's config
      (workdir.EXPERIMENT_FILE) for the modes after training.
    overrides: the command line's --set ('KEY=VALUE'): a warm start
      (train.init_from) refuses those that contradict its source.
  Returns:
    A summary: final step, last logged metrics, wall time, stop reason
    ('done', 'time_limit', 'SIGTERM' or 'SIGINT'), and the config as
    trained ('config': with what a warm start or a budget fixed).
  """
  start_time = time.time()
  lock = workdir_lib.Lock(workdir) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('workdir locked')
  try:
    if restart and jax.process_index() == 0:
      previous = workdir_lib.set_aside_run(workdir)
      if previous:
        print(f'--restart: moved the previous run to {previous}.', flush=True)
    multihost_utils.sync_global_devices('workdir ready')
    # A new run whose warm start fails takes back what it wrote (below).
    before = (workdir_lib.present_run_files(workdir)
              if not workdir_lib.has_saved_state(workdir) else None)
    config, warm = warm_start.resolve(config, workdir, overrides)
    workdir_lib.check_config(config, workdir, experiment=experiment)
    return _train(config, workdir, start_time, warm, before)
  finally:
    if lock:
      lock.release()


def _train(config: Config, workdir: str, start_time: float,
           warm: warm_start.Plan | None,
           before: set[str] | None) -> dict[str, Any]:
  """`train` inside the locked workdir; `warm`: where a new run's
  parameters start from (train.init_from), if anywhere; `before`: the run
  files a workdir without saved state held when this run started (None if
  it had saved state)."""
  best = tasks.best_metric(config)  # a bad name stops before any work
  mesh = train_lib.make_mesh(config=config)
  train_lib.check_batch_sizes(config, mesh, training=True)

  # Process 0 trains the tokenizer and learns what the task needs from the
  # training data (if the workdir has neither); the others wait, then load
  # the same files from the shared workdir.
  if jax.process_index() == 0:
    task = tasks.for_run(config, workdir, create=True)
    if warm:  # the source's tokenizer, unless the workdir has it already
      warm_start.copy_tokenizer(warm, config, workdir)
    tokenizer_lib.load_or_train(config, workdir, task.tokenizer_corpus)
  multihost_utils.sync_global_devices('tokenizer ready')
  task = tasks.for_run(config, workdir)
  tokenizer = tokenizer_lib.load_or_train(config, workdir,
                                          task.tokenizer_corpus)
  dataset = task.train_dataset(tokenizer, process_index=jax.process_index(),
                               process_count=jax.process_count())
  iterator = iter(dataset)

  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'),
                              keep=config.train.keep_checkpoints, best=best)
  init_rng, dropout_rng = train_lib.seed_rngs(config)
  abstract = train_lib.abstract_state(task, mesh, sharding)
  try:
    restored = checkpointer.restore(abstract, iterator)
  except Exception:
    checkpointer.close()
    raise
  if restored is None and checkpointer.damaged():
    checkpointer.close()
    raise RunError(
        f'{workdir}/checkpoints holds only damaged checkpoints '
        f'({", ".join(checkpointer.damaged())}), so there is nothing to '
        'resume. To start over in this workdir, run the same command with '
        '--restart (the old run is moved to WORKDIR/previous/).')
  start_step = 0 if restored is None else restored[1]
  # A warm start's source, read and checked against this model before any
  # step; a run that resumes from its own checkpoint never reads it.
  loaded = None
  if warm and restored is None:
    try:
      loaded = warm_start.load(warm, abstract.params, config)
    except Exception:
      checkpointer.close()
      # Its config, copied tokenizer and labels go: fixing the command is
      # enough to start again, no --restart needed.
      if before is not None and jax.process_index() == 0:
        workdir_lib.remove_new_run_files(workdir, before)
      raise
  evaluator = None
  if config.eval.every:
    evaluator = task.evaluator(tokenizer, mesh, config.eval.split,
                               config.eval.num_examples)
  if config.train.steps == 0:  # fit the steps to train.time_limit
    measure = lambda: _time_run_parts(task, mesh, sharding, init_fn, init_rng,
                                      dropout_rng, iterator, evaluator,
                                      workdir, start_time)
    config = _fit_to_budget(config, workdir, start_step, best, measure)
    task = tasks.for_run(config, workdir)
  print('Config:\n' + config_lib.to_json(config), flush=True)
  if restored is None:
    state = init_fn(init_rng)
    if loaded is not None:
      state = state.replace(params=warm_start.overlay(state.params, loaded))
    print(f'Starting a new run in {workdir} on {mesh.size} device(s) '
          f'({jax.devices()[0].platform}).', flush=True)
  else:
    state = restored[0]
    print(f'Resuming {workdir} from the checkpoint at step {start_step}.',
          flush=True)
  progress = best and Progress.restore(
      best, checkpointer.metrics(start_step) if restored else None)
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  return _loop(config, workdir, task, mesh, state, start_step, step_fn,
               iterator, checkpointer, evaluator, progress, dropout_rng,
               start_time)


def _loop(config: Config, workdir: str, task, mesh, state, start_step: int,
          step_fn, iterator, checkpointer: Checkpointer, evaluator,
          progress: Progress | None, dropout_rng, start_time: float
          ) -> dict[str, Any]:
  """Steps, logs, evaluates and checkpoints from `start_step` until done."""
  writer = MetricsWriter(workdir)
  stop = StopRequested()
  time_limit = TimeLimit(config.train.time_limit, start_time)
  pending: list[dict[str, jax.Array]] = []  # metrics since the last log line
  last_log_time, last_log_step = time.time(), start_step
  last_metrics: dict[str, float] = {}
  stop_reason = 'error'  # until the loop ends normally
  stopping = _stopped_early(progress, config)  # a finished run, resumed
  step = start_step
  total = config.train.steps
  try:
    while step < total and not stopping:
      batch = train_lib.global_batch(next(iterator), mesh)
      state, metrics = step_fn(state, batch, dropout_rng)
      step += 1
      pending.append(metrics)
      if step == start_step + 1:  # the first call compiles: time it apart
        jax.block_until_ready(metrics)
        print(f'Compiled and ran the first step in '
              f'{time.time() - last_log_time:.1f}s.', flush=True)
        last_log_time, last_log_step = time.time(), step
      # Read the reasons to stop once: the save below and the break must
      # agree (a signal arriving later, e.g. while logging waits for the
      # step, is acted on after the next step).
      log_step = step % config.train.log_every == 0
      over_time = time_limit.reached(at_log_step=log_step)  # every process
      stopping = (signal.Signals(stop.signal).name if stop.signal else
                  over_time)
      last = step == total or bool(stopping)
      if log_step or last:
        jax.block_until_ready(pending)  # steps run asynchronously: wait first
        last_metrics = _log_step(step, total, pending, writer,
                                 time.time() - last_log_time,
                                 step - last_log_step, task)
        pending, last_log_time, last_log_step = [], time.time(), step
      evaluated, new_best = None, False
      if evaluator is not None and (step % config.eval.every == 0 or
                                    step == total):
        numbers = _log_eval(step, evaluator, state.params, writer)
        if progress:
          evaluated = progress.metric.value_of(numbers)
          new_best = progress.update(step, evaluated)
          if new_best:
            print(f'best  {step:>7d}  {progress.metric.describe(evaluated)}: '
                  'this checkpoint is kept', flush=True)
          stopping = stopping or _stopped_early(progress, config)
          if stopping and pending:  # log the steps since the last line
            last_metrics = _log_step(step, total, pending, writer,
                                     time.time() - last_log_time,
                                     step - last_log_step, task)
            pending, last_log_time, last_log_step = [], time.time(), step
          last = last or bool(stopping)
      if step % config.train.checkpoint_every == 0 or last or new_best:
        _check_finite(pending, step)
        checkpointer.save(state, iterator, step=step, metrics=(
            progress.checkpoint_metrics(evaluated) if progress else None))
    stop_reason = stopping or 'done'
  except RunError:  # a non-finite loss or gradient (_check_finite)
    stop_reason = 'non_finite'
    raise
  finally:
    checkpointer.wait()
    checkpointer.close()
    writer.write_stop(step, stop_reason, time.time() - start_time)
    writer.close()
    stop.restore()
  summary = {'step': step, 'stop_reason': stop_reason,
             'wall_s': time.time() - start_time, 'try_it': task.try_it,
             'config': config,  # as trained (warm start, budget resolved)
             **last_metrics}
  if stop_reason == 'time_limit':
    print(f'Stopped at step {step}: train.time_limit='
          f'{config.train.time_limit:g} minutes reached; the checkpoint is '
          'saved. Run the same command again to continue.', flush=True)
  elif stop_reason not in ('done', 'early_stop'):
    print(f'Stopped by {stop_reason} at step {step}; the checkpoint is saved. '
          'Run the same command again to resume.', flush=True)
  return summary


def _stopped_early(progress: Progress | None, config: Config) -> str:
  """'early_stop' once eval.patience evaluations in a row brought no new
  best eval.best_metric, else ''."""
  patience = config.eval.patience
  if not progress or not patience or progress.evals_since_best < patience:
    return ''
  best = progress.metric
  where = ('' if progress.best_value is None else
           f'; the best, {best.describe(progress.best_value)}, was at step '
           f'{progress.best_step}')
  print(f'Early stop: {progress.evals_since_best} evaluations without a '
        f'better {best.split} {best.name} (eval.patience={patience}){where}.',
        flush=True)
  return 'early_stop'


def _fit_to_budget(config: Config, workdir: str, start_step: int,
                   best: BestMetric | None, measure) -> Config:
  """config with train.steps fixed for train.steps=0 (budget.py): the
  number saved with the run when it has one, else as many as fit in
  train.time_limit, measured now (by process 0, for all) and saved."""
  saved = budget.load(workdir) if start_step else None
  if saved:
    steps = int(saved['steps'])
    print(f'train.steps=0: this run\'s budget fixed {steps:,} steps when it '
          f'started ({budget.FILE}: {saved["why"]}).', flush=True)
  else:
    timings = measure()
    fitted, why = budget.fit_steps(
        config.train.time_limit, timings, eval_every=config.eval.every,
        checkpoint_every=config.train.checkpoint_every,
        saves_per_eval=1 if best else 0)
    steps = start_step + int(multihost_utils.broadcast_one_to_all(
        np.int64(fitted)))
    print(f'train.steps=0: {fitted:,} steps fit in train.time_limit='
          f'{config.train.time_limit:g} minutes ({why}); training to step '
          f'{steps:,}.', flush=True)
    if steps <= config.train.warmup_steps and config.train.schedule != 'paper':
      print(f'Warning: the budget fits {steps} steps, no more than '
            f'train.warmup_steps={config.train.warmup_steps}: the learning '
            'rate never reaches its peak. Lower train.warmup_steps or give '
            'more minutes.', file=sys.stderr, flush=True)
    if jax.process_index() == 0:
      budget.save(workdir, steps, why, timings, config.train.time_limit)
  config = config_lib.override_all(config, [f'train.steps={steps}'])
  workdir_lib.check_config(config, workdir)  # config.json shows the steps
  return config


def _time_run_parts(task, mesh, sharding, init_fn, init_rng, dropout_rng,
                    iterator, evaluator, workdir: str, start_time: float
                    ) -> budget.Timings:
  """Times compiling, a step, an evaluation and a checkpoint on a scratch
  state. The steps read real batches (the input pipeline runs on the same
  cores), then the iterator is put back: the run's state and data position
  are left as they were, so a budgeted run equals one with its train.steps
  fixed."""
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  position = iterator.get_state()
  state = init_fn(init_rng)
  started = time.time()
  state, metrics = step_fn(state, train_lib.global_batch(next(iterator), mesh),
                           dropout_rng)
  jax.block_until_ready(metrics)
  first = time.time() - started
  # The first steps after compiling run slower (memory being mapped in):
  # two untimed, then the mean of two timed blocks, each long enough that
  # waiting for its last step (the loop never waits) is a small part of it.
  run_steps = lambda steps, state: _run_timed(step_fn, state, iterator, mesh,
                                              dropout_rng, steps)
  state, warm_s = run_steps(2, state)
  # Every process runs the same number of steps (they are collectives).
  steps = int(multihost_utils.broadcast_one_to_all(
      np.int32(budget.timed_block_steps(warm_s))))
  state, block_1 = run_steps(steps, state)
  state, block_2 = run_steps(steps, state)
  iterator.set_state(position)
  step_s = (block_1 + block_2) / 2
  evaluation_s = 0.0
  if evaluator:
    started = time.time()
    evaluator(state.params)
    evaluation_s = time.time() - started
  scratch = os.path.join(workdir, 'budget_timing')
  started = time.time()
  timer = Checkpointer(scratch, keep=1, async_save=False)
  timer.save(state, iterator, step=0)
  timer.close()
  checkpoint_s = time.time() - started
  multihost_utils.sync_global_devices('budget timed')
  if jax.process_index() == 0:
    shutil.rmtree(scratch, ignore_errors=True)
  return budget.Timings(elapsed=time.time() - start_time,
                        compile=max(first - step_s, 0.0), step=step_s,
                        evaluation=evaluation_s, checkpoint=checkpoint_s)


def _run_timed(step_fn, state, iterator, mesh, dropout_rng, steps: int):
  """Runs `steps` train steps on the iterator's batches; returns the state
  and the seconds per step, waiting only for the last."""
  started = time.time()
  for _ in range(steps):
    batch = train_lib.global_batch(next(iterator), mesh)
    state, metrics = step_fn(state, batch, dropout_rng)
  jax.block_until_ready(metrics)
  return state, (time.time() - started) / steps


class TimeLimit:
  """train.time_limit: whether this run's wall time has passed the budget.

  One process checks its own clock at every step. Several processes must
  stop at the same step, so there process 0 decides at log steps and tells
  the others (a collective per step would stall the asynchronous steps).
  """

  def __init__(self, minutes: float, start_time: float):
    self.seconds, self.start_time = minutes * 60.0, start_time

  def reached(self, *, at_log_step: bool) -> str:
    """'time_limit' if the limit has passed, else ''."""
    if not self.seconds:
      return ''
    if jax.process_count() == 1:
      passed = time.time() - self.start_time > self.seconds
    elif at_log_step:
      passed = bool(multihost_utils.broadcast_one_to_all(
          np.bool_(time.time() - self.start_time > self.seconds)))
    else:
      passed = False
    return 'time_limit' if passed else ''


def _check_finite(pending: list[dict[str, jax.Array]], step: int) -> None:
  """Raises if any step since the last check had a non-finite loss/grad.

  `pending` holds the metrics of the steps that ended at `step`. The train
  step has applied such an update already (a select over the whole state at
  every step would cost time), so the state in memory is no longer finite;
  the loop checks before every log line and checkpoint and stops, so the
  newest checkpoint on disk is the last good state.
  """
  values = jax.device_get(pending)
  bad = [i for i, m in enumerate(values) if not float(m['finite'])]
  if bad:
    raise RunError(
        f'The loss or gradient became NaN or Inf at step '
        f'{step - len(values) + bad[0] + 1}; the run stops here and the last '
        'checkpoint (all finite) is kept. Try a lower train.learning_rate, '
        'train.grad_clip_norm=1.0, or model.dtype=float32.')


# What every train step reports; the rest of its metrics are the task's.
_STEP_KEYS = ('loss', 'tokens', 'grad_norm', 'learning_rate', 'finite')
# Short names of metrics in the printed line (metrics.jsonl keeps the long).
_SHORT_NAMES = {'perplexity': 'ppl'}


def _log_step(step: int, total: int, pending, writer: MetricsWriter,
              seconds: float, steps: int, task) -> dict[str, float]:
  """Prints and records the mean metrics of the steps since the last log.

  Rates use the last `steps` of them, timed over `seconds`, in the task's
  `rate_unit` (what the loss is averaged over: 'tokens', 'examples').
  """
  _check_finite(pending, step)
  values = jax.device_get(pending)
  mean = lambda key: float(np.mean([float(m[key]) for m in values]))
  unit = task.rate_unit
  # 'loss' is the objective the gradients follow (translation: label-
  # smoothed, minus its floor, losses.cross_entropy); the task's own metrics
  # follow (translation: 'nll', -log p(target)), with what the task derives
  # from them (`train_log_metrics`: the perplexity exp(nll), which compares
  # with the evaluation's).
  task_metrics = [k for k in values[-1] if k not in _STEP_KEYS]
  metrics = task.train_log_metrics(
      {'loss': mean('loss'), **{k: mean(k) for k in task_metrics}})
  metrics.update(learning_rate=float(values[-1]['learning_rate']),
                 grad_norm=mean('grad_norm'))
  line = f'step {step:>7d}/{total}  loss {metrics["loss"]:.4f}  ' + ''.join(
      f'{_SHORT_NAMES.get(k, k)} {metrics[k]:.4f}  ' for k in metrics
      if k not in ('loss', 'learning_rate', 'grad_norm'))
  line += (f'lr {metrics["learning_rate"]:.2e}  '
           f'grad_norm {metrics["grad_norm"]:.3f}')
  if steps > 0:  # rates over the timed steps (the compiling one excluded)
    counted = float(np.sum([float(m['tokens']) for m in values[-steps:]]))
    metrics[f'{unit}_per_s'] = counted / max(seconds, 1e-9)
    metrics['steps_per_s'] = steps / max(seconds, 1e-9)
    eta = (total - step) / max(metrics['steps_per_s'], 1e-9)
    line += (f'  {metrics[f"{unit}_per_s"]:,.0f} {unit}/s  '
             f'{metrics["steps_per_s"]:.2f} steps/s  ETA {_format_duration(eta)}')
  print(line, flush=True)
  writer.write(step, 'train', metrics)
  return metrics


def _log_eval(step: int, evaluator, params, writer: MetricsWriter
              ) -> dict[str, float]:
  """Evaluates on eval.split; prints the task's summary line and logs;
  returns the numbers."""
  metrics, _ = evaluator(params)
  numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
  print(f'eval  {step:>7d}  {evaluator.split} {evaluator.summary(metrics)}',
        flush=True)
  writer.write(step, 'eval', numbers)
  return numbers
