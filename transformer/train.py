"""The pure core of training: optimizer, state, sharding, train and eval steps.

Everything here is a function of (state, batch, rng) and knows no task: the
model, its loss and its evaluation sums come from a task object
(`transformer/tasks/`). The loop that feeds it, logs and saves checkpoints is
`transformer/loop.py`.

Parallelism is JAX's own: one `Mesh` over every device of every host with a
single 'data' axis. Batches are split along it; parameters and optimizer state
are replicated, or with `train.fsdp` split along it too (ZeRO-3 style), and
`jax.jit` inserts the collectives.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from transformer import dropout as dropout_lib
from transformer.config import Config, ConfigError

Array = jax.Array
Batch = dict[str, Array]

DATA_AXIS = 'data'


@flax.struct.dataclass
class TrainState:
  """What a training step changes. Dropout's RNG is derived from the seed and
  the step (`step_rng`), so it needs no state of its own."""
  step: Array  # int32 scalar: updates applied so far
  params: Any
  opt_state: Any


# ---------------------------------------------------------------------------
# Optimizer (sec. 5.3).
# ---------------------------------------------------------------------------


def learning_rate_schedule(config: Config) -> optax.Schedule:
  """The learning rate at update `count` (0-based; the paper counts from 1).

  'paper': lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5),
  eq. (3): linear warm-up, then decay with the inverse square root of the step.
  """
  t = config.train
  if t.schedule == 'paper':
    def paper(count):
      step = jnp.asarray(count, jnp.float32) + 1.0
      return (t.learning_rate * config.model.d_model**-0.5 *
              jnp.minimum(step**-0.5, step * t.warmup_steps**-1.5))
    return paper
  if t.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, t.learning_rate, t.warmup_steps, max(t.steps, t.warmup_steps + 1))
  return optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps)


def make_optimizer(config: Config) -> optax.GradientTransformation:
  """AdamW(beta1 0.9, beta2 0.98, eps 1e-9) after optional global-norm clipping.

  Clipping is stateless, so it is applied before AdamW rather than chained
  with it: the optimizer state is AdamW's whatever `train.grad_clip_norm`
  and `train.weight_decay` are, and a run resumes from its checkpoint with
  clipping switched on or off (what the NaN message advises).
  """
  t = config.train
  adam = optax.adamw(learning_rate_schedule(config), b1=t.adam_b1,
                     b2=t.adam_b2, eps=t.adam_eps, weight_decay=t.weight_decay)
  if t.grad_clip_norm <= 0:
    return adam
  clip = optax.clip_by_global_norm(t.grad_clip_norm)

  def update(grads, state, params=None):
    grads, _ = clip.update(grads, clip.init(params))
    return adam.update(grads, state, params)
  return optax.GradientTransformation(adam.init, update)


def init_state(task, rng: Array) -> TrainState:
  """Fresh parameters (float32) and optimizer state at step 0."""
  params = task.init_params(rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=make_optimizer(task.config).init(params))


def seed_rngs(config: Config) -> tuple[Array, Array]:
  """(parameter init key, dropout base key), both from `config.seed`.

  The dropout key's implementation follows `train.dropout_rng` ('rbg' keys
  for 'rbg', Threefry for 'threefry' and 'hash'); parameters are always
  initialised with Threefry.
  """
  init_rng, dropout_seed = jax.random.split(jax.random.key(config.seed))
  impl = dropout_lib.key_impl(config.train.dropout_rng)
  dropout_rng = jax.random.key(
      jax.random.randint(dropout_seed, (), 0, 2**31 - 1), impl=impl)
  return init_rng, dropout_rng


def step_rng(base: Array, step: Array) -> Array:
  """Dropout key for a step: a function of the step, so resume is exact."""
  return jax.random.fold_in(base, step)


# ---------------------------------------------------------------------------
# Sharding.
# ---------------------------------------------------------------------------


def make_mesh(devices=None) -> Mesh:
  """All devices of all hosts on one 'data' axis."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices.reshape(-1), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches: the leading (example) dimension split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def fsdp_spec(shape: tuple[int, ...], mesh_size: int,
              min_size: int = 2**14) -> P:
  """Split the largest dimension that the mesh divides; small arrays stay whole."""
  if mesh_size == 1 or math.prod(shape) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % mesh_size == 0:
      spec = [None] * len(shape)
      spec[dim] = DATA_AXIS
      return P(*spec)
  return P()


def state_sharding(config: Config, mesh: Mesh, state_shapes: TrainState):
  """Replicated, or FSDP: each array split along one dimension."""
  def sharding(leaf):
    if config.train.fsdp:
      return NamedSharding(mesh, fsdp_spec(leaf.shape, mesh.size))
    return NamedSharding(mesh, P())
  return jax.tree.map(sharding, state_shapes)


# ---------------------------------------------------------------------------
# Train step and eval step.
# ---------------------------------------------------------------------------


def split_micro_batches(batch: Batch, count: int) -> Batch:
  """[B, L] -> [count, B / count, L]; micro-batch i holds rows i, i+count, ...

  Taking every count-th row (not contiguous blocks) keeps each device's rows
  on that device when the batch dimension is sharded.
  """
  def split(x):
    x = x.reshape(x.shape[0] // count, count, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def train_step(state: TrainState, batch: Batch, rng: Array, *,
               task) -> tuple[TrainState, dict[str, Array]]:
  """One optimizer update on a global batch; pure, jit it with `jit_train_step`.

  The loss is `task.loss_sums` divided once by its total weight (real target
  tokens, or examples): the exact mean over the whole batch, even
  with gradient accumulation: gradients of loss *sums* are accumulated over
  micro-batches and divided once by the total token count. `finite` = 0 in
  the metrics marks a step whose loss or gradient was NaN or Inf: the loop
  checks it before every checkpoint and log line and stops the run, so such a
  state is never saved (and no per-step select over the state is needed).
  """
  config = task.config
  rng = step_rng(rng, state.step)
  grad_fn = jax.value_and_grad(task.loss_sums, has_aux=True)
  accum = config.train.grad_accum_steps
  if accum == 1:
    (loss_sum, (weight_sum, metric_sums)), grads = grad_fn(
        state.params, batch, rng)
  else:
    def micro_step(carry, inputs):
      index, micro_batch = inputs
      sums = grad_fn(state.params, micro_batch, jax.random.fold_in(rng, index))
      return jax.tree.map(jnp.add, carry, sums), None
    micro_batches = split_micro_batches(batch, accum)
    shapes = jax.eval_shape(grad_fn, state.params,
                            jax.tree.map(lambda x: x[0], micro_batches), rng)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    ((loss_sum, (weight_sum, metric_sums)), grads), _ = jax.lax.scan(
        micro_step, zeros, (jnp.arange(accum), micro_batches))
  scale = 1.0 / jnp.maximum(weight_sum, 1.0)
  grads = jax.tree.map(lambda g: g * scale, grads)
  grad_norm = optax.tree.norm(grads)
  loss = loss_sum * scale
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  optimizer = make_optimizer(config)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = TrainState(step=state.step + 1, params=params,
                         opt_state=opt_state)
  metrics = {
      'loss': loss,
      # The task's metrics, each the mean over its own count.
      **{name: total / jnp.maximum(count, 1.0)
         for name, (total, count) in metric_sums.items()},
      'tokens': weight_sum,
      'grad_norm': grad_norm,
      'learning_rate': learning_rate_schedule(config)(state.step),
      'finite': finite.astype(jnp.float32),
  }
  return new_state, metrics


def eval_step(params, batch: Batch, *, task) -> dict[str, Array]:
  """The task's sums over one evaluation batch (no dropout)."""
  return task.eval_sums(params, batch)


# ---------------------------------------------------------------------------
# Compiled, sharded versions.
# ---------------------------------------------------------------------------


def jit_init_state(task, mesh: Mesh):
  """Returns (jitted init(rng) -> sharded TrainState, its sharding)."""
  shapes = jax.eval_shape(functools.partial(init_state, task),
                          jax.random.key(0))
  sharding = state_sharding(task.config, mesh, shapes)
  return jax.jit(functools.partial(init_state, task),
                 out_shardings=sharding), sharding


def abstract_state(task, mesh: Mesh, sharding=None) -> TrainState:
  """The TrainState's shapes, dtypes and shardings, without allocating it."""
  if sharding is None:
    _, sharding = jit_init_state(task, mesh)
  shapes = jax.eval_shape(functools.partial(init_state, task),
                          jax.random.key(0))
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes,
      sharding)


def check_batch_sizes(config: Config, mesh: Mesh, *, training: bool) -> None:
  """Raises ConfigError unless the batches split evenly over the devices.

  A training batch of data.batch_size rows is cut into
  train.grad_accum_steps micro-batches, each split over the data axis;
  evaluation batches of data.eval_batch_size rows are split likewise.
  """
  devices, accum = mesh.shape[DATA_AXIS], config.train.grad_accum_steps
  per_step = devices * accum
  problems = []
  if training and config.data.batch_size % per_step:
    problems.append(
        f'data.batch_size={config.data.batch_size} must be a multiple of '
        f'{per_step} ({devices} device(s) x train.grad_accum_steps={accum}), '
        f'e.g. {_multiples(config.data.batch_size, per_step)}')
  if config.data.eval_batch_size % devices:
    problems.append(
        f'data.eval_batch_size={config.data.eval_batch_size} must be a '
        f'multiple of the {devices} device(s), e.g. '
        f'{_multiples(config.data.eval_batch_size, devices)}')
  if problems:
    raise ConfigError('Batches must split evenly over the devices: ' +
                      '; '.join(problems) + ' (set with --set=KEY=VALUE).')


def _multiples(value: int, factor: int) -> str:
  """The multiples of `factor` nearest `value`, as text: '4 or 8'."""
  below = value // factor * factor
  return f'{below} or {below + factor}' if below else str(factor)


def jit_train_step(task, mesh: Mesh, sharding):
  """train_step compiled over the mesh; the old state's buffers are donated."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(functools.partial(train_step, task=task),
                 in_shardings=(sharding, batch_sharding(mesh), replicated),
                 out_shardings=(sharding, replicated), donate_argnums=(0,))


def jit_eval_step(task, mesh: Mesh, params_sharding):
  replicated = NamedSharding(mesh, P())
  return jax.jit(functools.partial(eval_step, task=task),
                 in_shardings=(params_sharding, batch_sharding(mesh)),
                 out_shardings=replicated)


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> Batch:
  """This process's rows -> one global array per key, split over the mesh."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local.items()}
