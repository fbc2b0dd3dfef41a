"""What the benchmark reports of memory: the allocator, the process's peak,
XLA's memory analysis of the compiled train step, the activations JAX saves
for the backward pass, and what each model.remat keeps of them.

`measure_remat_memory(config)` works alone too: it compiles the train step
ahead of time from abstract shapes (nothing allocated or run), so a model
too big for the host can be measured.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from transformer import measure
from transformer import tasks
from transformer import train as train_lib
from transformer.config import Config
from transformer.tasks.base import Batch, BenchmarkHooks

try:  # JAX's private API: a JAX without it gives no residual count
  from jax._src.ad_checkpoint import saved_residuals
except ImportError:
  saved_residuals = None

REMAT_MODES = ('none', 'full', 'dots')  # ModelConfig.remat's choices

# XLA's memory analysis of a compiled step (`compiled.memory_analysis()`),
# per device, as benchmark keys.
STEP_MEMORY_KEYS = {
    'step_temp_bytes': 'temp_size_in_bytes',  # activations, workspace
    'step_argument_bytes': 'argument_size_in_bytes',  # state, batch, key
    'step_output_bytes': 'output_size_in_bytes',  # new state, metrics
    'step_alias_bytes': 'alias_size_in_bytes',  # outputs in donated inputs
}


def memory_allocator() -> str:
  """'tcmalloc' when this process runs under TCMalloc (launch.py preloads it
  where installed), else 'system malloc'. On CPU it decides whether a step
  reuses its buffers or page-faults them in afresh (README, "Speed on
  CPU")."""
  try:
    with open('/proc/self/maps', encoding='utf-8') as maps:
      if 'libtcmalloc' in maps.read():
        return 'tcmalloc'
  except OSError:  # not Linux
    pass
  return 'system malloc'


def peak_memory() -> tuple[int | None, str]:
  """(bytes, what was measured): device peak on GPU/TPU, else peak RSS."""
  device = jax.local_devices()[0]
  if device.platform != 'cpu':
    try:
      stats = device.memory_stats() or {}
    except Exception:  # pylint: disable=broad-except
      stats = {}
    if 'peak_bytes_in_use' in stats:
      return int(stats['peak_bytes_in_use']), (
          'device memory_stats()["peak_bytes_in_use"] of device 0, over '
          'the whole process')
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  rss *= 1 if sys.platform == 'darwin' else 1024  # Linux reports KiB
  return int(rss), ('peak resident memory of the process (ru_maxrss), host '
                    'side: parameters, activations, data and the compiler')


def step_memory(compiled) -> dict[str, int | None]:
  """XLA's memory analysis of a compiled computation, per device:
  step_temp_bytes (the buffers that live only during the step: activations
  kept for the backward pass, gradients, workspace -- what remat
  shrinks), step_argument_bytes, step_output_bytes, step_alias_bytes
  (outputs written into donated inputs). None where the backend gives no
  analysis."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    analysis = None  # not every backend implements it
  if isinstance(analysis, (list, tuple)):  # older JAX: one per device
    analysis = analysis[0] if analysis else None
  return {key: (None if analysis is None else
                int(getattr(analysis, field, None) or 0))
          for key, field in STEP_MEMORY_KEYS.items()}


def step_residual_bytes(task, batch: Batch) -> int | None:
  """Bytes of what the forward pass of `task`'s loss keeps for the
  backward pass, as JAX's autodiff saves it (the residuals that
  `jax.ad_checkpoint.print_saved_residuals` lists), over the whole batch
  (one micro-batch of all its rows), the parameters and the batch themselves
  left out: the activations that model.remat trades for recomputation.

  Traced only (abstract shapes), and the same on every backend, where
  XLA's own analysis (`step_memory`) may not show remat: XLA:CPU drops the
  optimization barriers that keep the recomputation apart and merges it back
  into the forward pass, so with unrolled layers its temporary memory does
  not change (with model.scan_layers it does: a loop's body keeps the
  backward pass's recomputation to itself). None if this JAX lacks
  `saved_residuals`.
  """
  if saved_residuals is None:
    return None
  params = jax.eval_shape(
      lambda: train_lib.init_state(task, jax.random.key(0)).params)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  _, rng = train_lib.seed_rngs(task.config)
  residuals = saved_residuals(
      lambda params, batch, rng: task.loss_sums(params, batch, rng)[0],
      params, batch, rng)
  return int(sum(aval.size * aval.dtype.itemsize for aval, source in residuals
                 if not source.startswith('from the argument')))


def abstract_train_batch(hooks: BenchmarkHooks, mesh) -> Batch:
  """A global train batch of the family's keys and shapes as
  jax.ShapeDtypeStruct (random host rows give them; nothing goes to the
  device)."""
  rows = hooks.config.data.batch_size
  host = hooks.random_host_batch(np.random.default_rng(0), rows)
  sharding = train_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
          for k, v in host.items()}


def compile_abstract_train_step(task, mesh) -> tuple[Any, float]:
  """(compiled train step, seconds) for `task`, ahead of time from
  abstract shapes (`train.abstract_state`, `abstract_train_batch`): no
  parameter, optimizer state or batch is allocated, so any model size
  compiles on a small host."""
  state = train_lib.abstract_state(task, mesh)
  sharding = jax.tree.map(lambda x: x.sharding, state)
  batch = abstract_train_batch(task.benchmark(), mesh)
  _, dropout_rng = train_lib.seed_rngs(task.config)
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, dropout_rng).compile()
  return compiled, time.perf_counter() - start


def measure_remat_memory(config: Config, modes: tuple[str, ...] = REMAT_MODES,
                         *, compile_steps: bool = True,
                         log: Callable[[str], None] = lambda message: None
                         ) -> dict[str, Any]:
  """What each model.remat in `modes` keeps of `config`'s train step (the
  task `tasks.for_benchmark` gives), from abstract shapes (nothing
  allocated, nothing run). Per MODE:

    step_residual_bytes_remat_MODE  JAX's residuals (`step_residual_bytes`,
                                    traced only);
    step_temp_bytes_remat_MODE      XLA's temporary memory of the compiled
    compile_s_remat_MODE            step, per device, and its compile time
                                    (`compile_abstract_train_step`; with
                                    `compile_steps` only);

  and for each MODE but 'none' its ratio to 'none''s:
  step_residual_remat_MODE_over_none, step_temp_remat_MODE_over_none.
  """
  mesh = train_lib.make_mesh(config=config)
  result: dict[str, Any] = {}
  for mode in modes:
    model = dataclasses.replace(config.model, remat=mode)
    task = tasks.for_benchmark(dataclasses.replace(config, model=model))
    batch = abstract_train_batch(task.benchmark(), mesh)
    result[f'step_residual_bytes_remat_{mode}'] = step_residual_bytes(
        task, batch)
    line = (f'  remat={mode}: residuals '
            f'{measure.si(result[f"step_residual_bytes_remat_{mode}"], "B")}')
    if compile_steps:
      compiled, seconds = compile_abstract_train_step(task, mesh)
      result[f'step_temp_bytes_remat_{mode}'] = step_memory(compiled)[
          'step_temp_bytes']
      result[f'compile_s_remat_{mode}'] = seconds
      line += (f', XLA temporary '
               f'{measure.si(result[f"step_temp_bytes_remat_{mode}"], "B")}, '
               f'compiled in {seconds:.1f}s')
    log(line)
  for kind in ('residual', 'temp'):
    none = result.get(f'step_{kind}_bytes_remat_none')
    for mode in modes:
      value = result.get(f'step_{kind}_bytes_remat_{mode}')
      if mode != 'none' and none and value is not None:
        result[f'step_{kind}_remat_{mode}_over_none'] = value / none
  return result


def step_memory_row(r: dict[str, Any]) -> str:
  """The table's row: XLA's memory analysis of the train step, and of each
  remat mode (`measure_remat_memory`) when measured."""
  si = measure.si
  if r.get('step_temp_bytes') is None:
    return 'n/a (no memory analysis from this backend)'
  row = (f'{si(r["step_temp_bytes"], "B")} temporary, '
         f'{si(r["step_argument_bytes"], "B")} arguments, '
         f'{si(r["step_output_bytes"], "B")} outputs (XLA, per device); '
         f'{si(r.get("step_residual_bytes"), "B")} saved for the backward '
         'pass (JAX)')
  for kind, what in (('residual', 'saved'), ('temp', 'temporary')):
    modes = [m for m in REMAT_MODES
             if r.get(f'step_{kind}_bytes_remat_{m}') is not None]
    if modes:
      row += f'; {what} by remat: ' + ', '.join(
          f'{m} {si(r[f"step_{kind}_bytes_remat_{m}"], "B")}'
          for m in modes)
  return row
