"""The training loop: the side effects around `train.train_step`.

Read `train` from top to bottom: set up the workdir, tokenizer, data, state
(fresh or restored), then step, log, evaluate and checkpoint until done.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from transformer import config as config_lib
from transformer import train as train_lib
from transformer.checkpoint import Checkpointer
from transformer.config import Config


class RunError(Exception):
  """A problem with the run's settings or workdir, explained to the user."""


# Fields that define what a checkpoint and its tokenizer mean: changing them
# on an existing workdir would silently train or evaluate a different model.
INCOMPATIBLE_PREFIXES = ('model.', 'data.source', 'data.direction',
                         'data.tokenizer', 'data.character_coverage',
                         'data.tfds_name', 'data.text_dir')


def check_workdir_config(config: Config, workdir: str, *,
                         save: bool = True) -> None:
  """Checks config.json against `config` if there is one; saves `config`."""
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path):
    with open(path) as f:
      saved = _flatten(json.load(f))
    requested = _flatten(config_lib.to_dict(config))
    clashes = [f'{k}: saved {saved[k]!r}, requested {requested[k]!r}'
               for k in sorted(requested)
               if k.startswith(INCOMPATIBLE_PREFIXES) and k in saved and
               saved[k] != requested[k]]
    if clashes:
      raise RunError(
          f'{workdir} holds a run with another model or vocabulary:\n  ' +
          '\n  '.join(clashes) + '\nUse a new --workdir, or the settings '
          f'saved in {path}.')
  if save and jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(config_lib.to_json(config))
    os.replace(tmp, path)


def _flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


class MetricsWriter:
  """One line per log step to stdout, metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    self.jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    import tensorboardX  # pylint: disable=g-import-not-at-top
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


def train(config: Config, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the experiment in `workdir` to config.train.steps.

  Returns:
    A summary: final step, last logged metrics, wall time, stop reason.
  """
  from transformer.data import pipeline, tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  from transformer.evaluate import Evaluator  # pylint: disable=g-import-not-at-top
  start_time = time.time()
  check_workdir_config(config, workdir)
  print('Config:\n' + config_lib.to_json(config), flush=True)

  # Process 0 trains the tokenizer (if the workdir has none); the others
  # wait, then load the same file from the shared workdir.
  if jax.process_index() == 0:
    tokenizer_lib.load_or_train(config, workdir)
  multihost_utils.sync_global_devices('tokenizer ready')
  tokenizer = tokenizer_lib.load_or_train(config, workdir)
  dataset = pipeline.train_dataset(config, tokenizer,
                                   process_index=jax.process_index(),
                                   process_count=jax.process_count())
  iterator = iter(dataset)

  mesh = train_lib.make_mesh()
  init_fn, sharding = train_lib.jit_init_state(config, mesh)
  abstract_state = jax.tree.map(
      lambda shape, s: jax.ShapeDtypeStruct(shape.shape, shape.dtype,
                                            sharding=s),
      jax.eval_shape(init_fn, jax.random.key(0)), sharding)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'),
                              keep=config.train.keep_checkpoints)
  init_rng, dropout_rng = train_lib.seed_rngs(config)
  restored = checkpointer.restore(abstract_state, iterator)
  if restored is None:
    state, start_step = init_fn(init_rng), 0
    print(f'Starting a new run in {workdir} on {mesh.size} device(s) '
          f'({jax.devices()[0].platform}).', flush=True)
  else:
    state, start_step = restored
    print(f'Resuming {workdir} from the checkpoint at step {start_step}.',
          flush=True)
  step_fn = train_lib.jit_train_step(config, mesh, sharding)
  evaluator = None
  if config.eval.every:
    evaluator = Evaluator(config, tokenizer, mesh, config.eval.split,
                          config.eval.num_examples)

  writer = MetricsWriter(workdir)
  stop = StopRequested()
  pending: list[dict[str, jax.Array]] = []  # metrics since the last log line
  last_log_time, last_log_step = time.time(), start_step
  last_metrics: dict[str, float] = {}
  stop_reason = 'done'
  step = start_step
  total = config.train.steps
  try:
    while step < total:
      batch = train_lib.global_batch(next(iterator), mesh)
      state, metrics = step_fn(state, batch, dropout_rng)
      step += 1
      pending.append(metrics)
      if step == start_step + 1:  # the first call compiles: time it apart
        jax.block_until_ready(metrics)
        print(f'Compiled and ran the first step in '
              f'{time.time() - last_log_time:.1f}s.', flush=True)
        last_log_time, last_log_step = time.time(), step
      # Read the flag once: the save below and the break must agree (a signal
      # arriving later, e.g. while logging waits for the step, is acted on
      # after the next step).
      stopping = stop.signal is not None
      last = step == total or stopping
      if step % config.train.log_every == 0 or last:
        jax.block_until_ready(pending)  # steps run asynchronously: wait first
        last_metrics = _log_step(step, total, pending, writer,
                                 time.time() - last_log_time,
                                 step - last_log_step)
        pending, last_log_time, last_log_step = [], time.time(), step
      if evaluator and (step % config.eval.every == 0 or step == total):
        _log_eval(step, evaluator, state.params, writer)
      if step % config.train.checkpoint_every == 0 or last:
        _check_finite(pending, step)
        checkpointer.save(state, iterator, step=step)
      if stopping:
        stop_reason = signal.Signals(stop.signal).name
        break
  finally:
    checkpointer.wait()
    checkpointer.close()
    writer.close()
    stop.restore()
  summary = {'step': step, 'stop_reason': stop_reason,
             'wall_s': time.time() - start_time, **last_metrics}
  if stop_reason != 'done':
    print(f'Stopped by {stop_reason} at step {step}; the checkpoint is saved. '
          'Run the same command again to resume.', flush=True)
  return summary


def _check_finite(pending: list[dict[str, jax.Array]], step: int) -> None:
  """Raises if any step since the last check had a non-finite loss/grad.

  `pending` holds the metrics of the steps that ended at `step`. The train
  step does not apply such an update, and no checkpoint is written after it.
  """
  values = jax.device_get(pending)
  bad = [i for i, m in enumerate(values) if not float(m['finite'])]
  if bad:
    raise RunError(
        f'The loss or gradient became NaN or Inf at step '
        f'{step - len(values) + bad[0] + 1}; the run stops here and the last '
        'checkpoint (all finite) is kept. Try a lower train.learning_rate, '
        'train.grad_clip_norm=1.0, or model.dtype=float32.')


def _log_step(step: int, total: int, pending, writer: MetricsWriter,
              seconds: float, steps: int) -> dict[str, float]:
  """Prints and records the mean metrics of the steps since the last log.

  Rates use the last `steps` of them, timed over `seconds`.
  """
  _check_finite(pending, step)
  values = jax.device_get(pending)
  mean = lambda key: float(np.mean([float(m[key]) for m in values]))
  metrics = {
      'loss': mean('loss'),
      'learning_rate': float(values[-1]['learning_rate']),
      'grad_norm': mean('grad_norm'),
  }
  line = (f'step {step:>7d}/{total}  loss {metrics["loss"]:.4f}  '
          f'lr {metrics["learning_rate"]:.2e}  '
          f'grad_norm {metrics["grad_norm"]:.3f}')
  if steps > 0:  # rates over the timed steps (the compiling one excluded)
    tokens = float(np.sum([float(m['tokens']) for m in values[-steps:]]))
    metrics['tokens_per_s'] = tokens / max(seconds, 1e-9)
    metrics['steps_per_s'] = steps / max(seconds, 1e-9)
    eta = (total - step) / max(metrics['steps_per_s'], 1e-9)
    line += (f'  {metrics["tokens_per_s"]:,.0f} tok/s  '
             f'{metrics["steps_per_s"]:.2f} steps/s  ETA {_format_duration(eta)}')
  print(line, flush=True)
  writer.write(step, 'train', metrics)
  return metrics


def _log_eval(step: int, evaluator, params, writer: MetricsWriter) -> None:
  """Evaluates on eval.split and logs loss, perplexity, BLEU."""
  metrics, _ = evaluator(params)
  numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
  print(f'eval  {step:>7d}  {evaluator.split} loss {metrics["loss"]:.4f}  '
        f'ppl {metrics["perplexity"]:.2f}  acc {metrics["accuracy"]:.3f}  '
        f'BLEU {metrics["bleu"]:.2f}  chrF {metrics["chrf"]:.2f}  '
        f'({metrics["examples"]} sentences, beam {evaluator.config.eval.beam_size}'
        f', {metrics["seconds"]:.0f}s)', flush=True)
  writer.write(step, 'eval', numbers)
