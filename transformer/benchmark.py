"""--mode=benchmark: the speed of training and evaluation, FLOPs and MFU,
memory, and whatever the task's family adds (decoding, generation, the
input pipeline).

`run(config, workdir)` measures, in one process, the task of `config`
(`tasks.for_benchmark`, or one passed as `task=`). This module keeps what
every family shares:

  train step   the step training runs (`make_mesh`, `jit_init_state`,
               `jit_train_step`: same sharding, donated state): compile time,
               the first call, then `repeats` steps after WARMUP_STEPS warm-up
               steps, each waited for, and the same steps back to back, as
               training runs them (throughput and MFU use that rate);
  eval step    `jit_eval_step` on the same batches;
  FLOPs, MFU   the family's analytic model FLOPs per step over the step time
               and the peak (transformer/peak.py);
  memory       the process's peak, XLA's memory analysis of the compiled
               step, the activations saved for the backward pass and, with
               remat_memory=True, what each model.remat keeps of them
               (transformer/memory.py).

Everything family-specific -- the batches, the FLOP formula, the rates, the
extra measurements and their rows of the table -- comes from the task's
`benchmark()` hooks (`tasks.base.BenchmarkHooks`, in each family's
transformer/tasks/FAMILY/benchmark.py, which documents its FLOPs and
batches). benchmark.json's keys are listed in the README, "Benchmarks".
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from typing import Any, Callable

import jax
import numpy as np

from transformer import attention
from transformer import measure
from transformer import memory
from transformer import peak as peak_lib
from transformer import tasks
from transformer import train as train_lib
from transformer.config import Config, ModelConfig
from transformer.tasks.base import (WARMUP_STEPS, Batch, BenchmarkBatches,
                                    BenchmarkHooks)

RESULT_FILENAME = 'benchmark.json'
BACK_TO_BACK_GROUPS = 4  # the timed train steps, run back to back in groups

State = Any  # train_lib's train state
Step = Callable[[State, Batch], tuple[State, dict[str, jax.Array]]]


# ---------------------------------------------------------------------------
# Setup.
# ---------------------------------------------------------------------------


def training_attention(model: ModelConfig, length: int) -> str:
  """Which implementation the train step's attention resolves to."""
  if model.attention_dropout_rate > 0:
    return 'explicit (attention dropout)'
  return attention.resolve_implementation(model.attention_impl, model.dtype,
                                          model.head_dim, length)


def setup_report(config: Config, mesh, repeats: int,
                 family_keys: dict[str, Any]) -> dict[str, Any]:
  """What was measured where: versions, devices, shapes, repeats, date;
  `family_keys` (the task family's, e.g. decode_repeats) before the date."""
  device = jax.devices()[0]
  return {
      'jax_version': jax.__version__,
      'platform': device.platform,
      'device_kind': device.device_kind,
      'num_devices': mesh.size,
      'process_count': jax.process_count(),
      'allocator': memory.memory_allocator(),
      'batch_size': config.data.batch_size,
      'max_length': config.data.max_length,
      'eval_batch_size': config.data.eval_batch_size,
      'dtype': config.model.dtype,
      'attention_impl': training_attention(config.model, config.data.max_length),
      'remat': config.model.remat,
      'scan_layers': config.model.scan_layers,
      'repeats': repeats,
      **family_keys,
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
  }


# ---------------------------------------------------------------------------
# The train step. Each measurement returns its part of benchmark.json (or
# what the next one needs); the train state is passed on because the step
# donates it.
# ---------------------------------------------------------------------------


def compile_train_step(task, mesh, batch: Batch
                       ) -> tuple[State, Any, Step, dict[str, Any]]:
  """The fresh train state and the step training runs, compiled for `batch`.

  Returns (state, its sharding, step, report): the step is `jit_train_step`
  with training's sharding and donated state, bound to the dropout key; the
  report has num_params, compile_s (trace, lower and XLA-compile),
  xla_train_flops and XLA's memory analysis (`memory.step_memory`).
  """
  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  init_rng, dropout_rng = train_lib.seed_rngs(task.config)
  state = init_fn(init_rng)
  num_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, dropout_rng).compile()
  compile_s = time.perf_counter() - start
  step = lambda state, batch: compiled(state, batch, dropout_rng)
  return state, sharding, step, {'num_params': num_params,
                                 'compile_s': compile_s,
                                 'xla_train_flops': peak_lib.xla_flops(compiled),
                                 **memory.step_memory(compiled)}


def first_steps(step: Step, state: State, batches: list[Batch]
                ) -> tuple[State, float]:
  """(state, seconds of the first call), after the first and warm-up steps.

  Training's first call takes compile_s + this; the warm-up steps keep
  whatever else happens once out of the timed steps.
  """
  start = time.perf_counter()
  state, metrics = step(state, batches[0])
  jax.block_until_ready((state, metrics))
  first_step_s = time.perf_counter() - start
  for batch in batches[1:1 + WARMUP_STEPS]:
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  return state, first_step_s


def time_each_step(step: Step, state: State, batches: list[Batch]
                   ) -> tuple[State, list[float]]:
  """(state, seconds per step), each step waited for on its own."""
  times = []
  for batch in batches:
    begin = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - begin)
  return state, times


def time_back_to_back(step: Step, state: State, batches: list[Batch],
                      groups: int = BACK_TO_BACK_GROUPS
                      ) -> tuple[State, dict[str, jax.Array], float]:
  """(state, last metrics, seconds per step) with steps run as training does.

  The training loop waits only to log: the host queues step i + 1 while the
  device runs step i, so launching a step costs no device time (the times of
  `time_each_step` include it). Steps run in `groups` groups, each waited for
  once; the median group's mean step is the rate throughput and MFU use.
  """
  group = max(1, len(batches) // groups)
  rates = []
  for first in range(0, len(batches) - group + 1, group):
    begin = time.perf_counter()
    for batch in batches[first:first + group]:
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    rates.append((time.perf_counter() - begin) / group)
  return state, metrics, statistics.median(rates)


def train_step_report(times: list[float], step_s: float, final_loss: float,
                      rates: dict[str, float]) -> dict[str, float]:
  """Train step times, then the task family's throughputs (`rates`)."""
  train = measure.summary(times)
  return {
      'final_loss': final_loss,
      'train_step_s': train['median'],
      'train_step_min_s': train['min'], 'train_step_max_s': train['max'],
      'train_step_p25_s': train['p25'], 'train_step_p75_s': train['p75'],
      'train_step_back_to_back_s': step_s,
      'train_steps_per_s': 1.0 / step_s,
      **rates,
  }


def measure_train_step(hooks: BenchmarkHooks, mesh, data: BenchmarkBatches,
                       log: Callable[[str], None]
                       ) -> tuple[State, Any, float, dict[str, Any]]:
  """Compiles, warms up and times the task's train step on `data`.

  Returns (state, its sharding, the back-to-back seconds per step, report).
  """
  state, sharding, step, report = compile_train_step(hooks.task, mesh,
                                                     data.batches[0])
  report['step_residual_bytes'] = memory.step_residual_bytes(
      hooks.task, data.batches[0])
  state, report['first_step_s'] = first_steps(step, state, data.batches)
  log(f'  train step compiled in {report["compile_s"]:.1f}s')
  state, times = time_each_step(step, state, data.timed)
  state, metrics, step_s = time_back_to_back(step, state, data.timed)
  report.update(train_step_report(times, step_s, float(metrics['loss']),
                                  hooks.train_rates(data, step_s)))
  return state, sharding, step_s, report


# ---------------------------------------------------------------------------
# The eval step.
# ---------------------------------------------------------------------------


def time_eval_step(task, mesh, params_sharding, params, first: Batch,
                   timed: list[Batch]) -> tuple[float, list[float]]:
  """(compile seconds, seconds per step) of `jit_eval_step`: compiled for
  and first run on `first`, then each of `timed` waited for."""
  eval_fn = train_lib.jit_eval_step(task, mesh, params_sharding)
  start = time.perf_counter()
  compiled = eval_fn.lower(params, first).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(params, first))
  times = []
  for batch in timed:
    begin = time.perf_counter()
    jax.block_until_ready(compiled(params, batch))
    times.append(time.perf_counter() - begin)
  return compile_s, times


def eval_step_report(compile_s: float, times: list[float],
                     rates: Callable[[float], dict[str, float]], flops: float,
                     peak: float | None) -> dict[str, Any]:
  """Eval step times, the throughputs `rates(median seconds)` gives, MFU."""
  evaluation = measure.summary(times)
  return {
      'eval_compile_s': compile_s,
      'eval_step_s': evaluation['median'],
      'eval_step_min_s': evaluation['min'],
      'eval_step_max_s': evaluation['max'],
      **rates(evaluation['median']),
      'eval_mfu': peak_lib.mfu(flops, evaluation['median'], peak),
  }


def measure_eval_step(hooks: BenchmarkHooks, mesh, params_sharding, params,
                      data: BenchmarkBatches, peak: float | None
                      ) -> dict[str, Any]:
  """The eval step on the train step's batches (`data.eval_batches`)."""
  compile_s, times = time_eval_step(hooks.task, mesh, params_sharding,
                                    params, data.eval_batches[0],
                                    data.timed_eval)
  return eval_step_report(compile_s, times,
                          lambda seconds: hooks.eval_rates(data, seconds),
                          hooks.eval_flops(), peak)


# ---------------------------------------------------------------------------
# The benchmark.
# ---------------------------------------------------------------------------


def write_result(result: dict[str, Any], workdir: str) -> str:
  """Writes WORKDIR/benchmark.json atomically (process 0); returns its path."""
  path = os.path.join(workdir, RESULT_FILENAME)
  if jax.process_index() == 0:
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=2)
      f.write('\n')
    os.replace(tmp, path)
  return path


def run(config: Config, workdir: str, *, task=None, repeats: int = 20,
        decode_repeats: int | None = None, input_batches: int = 50,
        remat_memory: bool = False, verbose: bool = True) -> dict[str, Any]:
  """Measures the training and evaluation speed of `config`'s task, and
  what its family adds (translation: decoding and input speed; language
  model: generation with and without the cache).

  Args:
    config: the experiment.
    workdir: benchmark.json is written here. Families with real batches
      (translation, language model): holds (or receives) the tokenizer,
      and a checkpoint here, if any, supplies the decoding parameters.
    task: the task to measure (its config must be `config`); default
      `tasks.for_benchmark(config)`.
    repeats: timed train and eval steps (after compiling and warming up).
    decode_repeats: timed decodes (generations) of a batch, for the
      families that decode; default min(repeats, 5).
    input_batches: batches timed by an input-pipeline measurement (the
      families that have one).
    remat_memory: also compile the train step with every model.remat
      (`memory.measure_remat_memory`: ahead of time, not run) and report
      each one's temporary memory.
    verbose: print the table.
  Returns:
    The numbers written to WORKDIR/benchmark.json (README, "Benchmarks").
  """
  if repeats < 1:
    raise ValueError(f'repeats must be positive, got {repeats}')
  hooks = (tasks.for_benchmark(config) if task is None else task).benchmark()
  if hooks.config != config:
    raise ValueError('run(config, task=...): the task holds another config')
  decode_repeats = decode_repeats or max(1, min(repeats, 5))
  os.makedirs(workdir, exist_ok=True)
  started = time.perf_counter()
  verbose = verbose and jax.process_index() == 0
  log = (lambda message: print(message, flush=True)) if verbose else (
      lambda message: None)
  device, mesh = jax.devices()[0], train_lib.make_mesh()
  train_lib.check_batch_sizes(config, mesh, training=True)
  rng = np.random.default_rng(config.seed)
  dtype = config.model.dtype
  result = setup_report(config, mesh, repeats,
                        hooks.setup_keys(decode_repeats))

  data = hooks.load_batches(workdir, mesh, WARMUP_STEPS + repeats + 1, rng)
  result.update(data=data.data, data_note=data.data_note)
  log(f'Benchmark: {data.data} batches, {mesh.size} device(s) '
      f'({device.device_kind}).')
  # On CPU the peak is a matmul measured before and after the train steps.
  matmul_before = peak_lib.cpu_matmul_before(device, dtype)
  state, sharding, step_s, report = measure_train_step(hooks, mesh, data, log)
  result.update(report)

  # Model FLOPs per step: the family's analytic count.
  flops = hooks.train_flops()
  result.update(train_flops=flops, train_flops_per_s=flops / step_s,
                **peak_lib.measure_peak(device, dtype, mesh.size,
                                        matmul_before))
  peak = result['peak_flops_per_s']
  result['train_mfu'] = peak_lib.mfu(flops, step_s, peak)
  result.update(measure_eval_step(hooks, mesh, sharding.params, state.params,
                                  data, peak))
  log(f'  train and eval steps timed ({repeats} each)')

  result.update(hooks.task_measurements(
      workdir=workdir, mesh=mesh, params=state.params, data=data, rng=rng,
      step_s=step_s, decode_repeats=decode_repeats,
      input_batches=input_batches, log=log))
  if remat_memory:
    result.update(memory.measure_remat_memory(config, log=log))
  result['peak_memory_bytes'], result['peak_memory_source'] = (
      memory.peak_memory())
  result['benchmark_wall_s'] = time.perf_counter() - started
  path = write_result(result, workdir)
  if verbose:
    print(format_table(result, hooks) + f'\n\nWritten to {path}', flush=True)
  return result


# ---------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------


def format_table(r: dict[str, Any], hooks: BenchmarkHooks) -> str:
  """The numbers of `run` as a human-readable table; `hooks` (the task's
  `benchmark()`) give the rows that differ by task family."""
  si, ms = measure.si, measure.ms
  mfu = lambda x: 'n/a' if x is None else f'{100 * x:.1f}%'
  rows = [
      ('device', f'{r["device_kind"]} x {r["num_devices"]} '
                 f'({r["platform"]}), JAX {r["jax_version"]}, '
                 f'{r["allocator"]}'),
      ('shape', f'batch {r["batch_size"]} x {r["max_length"]} tokens, '
                f'{r["dtype"]}, {r["num_params"] / 1e6:.2f}M parameters, '
                f'attention: {r["attention_impl"]}'),
      *hooks.task_rows(r),
      ('batches', r['data'] + (f' -- {r["data_note"]}' if r['data_note']
                               else '')),
      ('layers', f'remat {r.get("remat", "none")}, scan_layers '
                 f'{str(r.get("scan_layers", False)).lower()}'),
      ('train compile', f'{r["compile_s"]:.2f} s (first step '
                        f'{r["first_step_s"]:.2f} s)'),
      ('step memory', memory.step_memory_row(r)),
      ('train step', f'{ms(r["train_step_s"])} median, '
                     f'{ms(r["train_step_min_s"])} - '
                     f'{ms(r["train_step_max_s"])} (IQR '
                     f'{ms(r["train_step_p25_s"])} - '
                     f'{ms(r["train_step_p75_s"])}), {r["repeats"]} steps '
                     f'each waited for; {ms(r["train_step_back_to_back_s"])} '
                     'per step back to back (throughput and MFU below)'),
      hooks.train_rate_row(r),
      ('model FLOPs/step', f'{si(r["train_flops"])} (XLA counts '
                           f'{si(r["xla_train_flops"])}'
                           + ('; a scanned stack\'s loop body once'
                              if r.get('scan_layers') else '') + ')'),
      ('achieved', si(r['train_flops_per_s'], 'FLOP/s')),
      ('peak', f'{si(r["peak_flops_per_s"], "FLOP/s")} -- '
               f'{r["peak_source"]}'),
      ('train MFU', mfu(r['train_mfu'])),
      ('eval step', f'{ms(r["eval_step_s"])} median '
                    f'({hooks.eval_rate_text(r)}, MFU '
                    f'{mfu(r["eval_mfu"])}); compile '
                    f'{r["eval_compile_s"]:.2f} s'),
      *hooks.extra_rows(r),
      ('peak memory', f'{si(r["peak_memory_bytes"], "B")} -- '
                      f'{r["peak_memory_source"]}'),
  ]
  width = max(len(label) for label, _ in rows)
  return '\n'.join(f'{label:<{width}}  {value}' for label, value in rows)
