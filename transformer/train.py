"""The pure core of training: optimizer, state, sharding, train and eval steps.

Everything here is a function of (state, batch, rng) and knows no task: the
model, its loss and its evaluation sums come from a task object
(`transformer/tasks/`). The loop that feeds it, logs and saves checkpoints is
`transformer/loop.py`.

Parallelism is JAX's own: one `Mesh` over every device of every host. With
`train.model_parallel` = 1 (the default) it has a single 'data' axis; with
`train.model_parallel` = m > 1 it is a 2-D grid, 'data' x 'model' (8 devices,
m = 2: data 4 x model 2). Batches are split along 'data' only. Parameters
and optimizer state carry logical axis names (model.py, attention.py), and
the one table `partitioning.RULES` places them: split over 'model' as in
Megatron-LM's tensor parallelism (attention by heads, the feed-forward by
its d_ff units, the embedding by vocabulary; Shoeybi et al. 2019, sec. 3),
and with `train.fsdp` over 'data' too (ZeRO-3 style); otherwise replicated.
`jax.jit` inserts the collectives. The TrainState holds plain arrays, so a
checkpoint does not depend on the mesh and restores on any other.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from transformer import dropout as dropout_lib
from transformer import partitioning
from transformer.config import Config, ConfigError
from transformer.partitioning import DATA_AXIS, MODEL_AXIS

Array = jax.Array
Batch = dict[str, Array]


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
  'cosine', 'linear': linear warm-up to train.learning_rate, then a cosine or
  linear decay that reaches train.final_learning_rate_fraction of it at
  train.steps. 'constant': warm-up, then the peak.
  """
  t = config.train
  if t.schedule == 'paper':
    def paper(count):
      step = jnp.asarray(count, jnp.float32) + 1.0
      return (t.learning_rate * config.model.d_model**-0.5 *
              jnp.minimum(step**-0.5, step * t.warmup_steps**-1.5))
    return paper
  end = t.learning_rate * t.final_learning_rate_fraction
  if t.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, t.learning_rate, t.warmup_steps, max(t.steps, t.warmup_steps + 1),
        end_value=end)
  warmup = optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps)
  if t.schedule == 'linear':
    decay = optax.linear_schedule(t.learning_rate, end,
                                  max(t.steps - t.warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [t.warmup_steps])
  return warmup


def decayed_parameters(config: Config, params) -> Any:
  """A pytree of bools: which parameters AdamW's weight decay shrinks.

  'all', or 'matrices': dense kernels and embeddings, not biases and
  LayerNorm scales (GPT-2's and nanoGPT's choice). Chosen by name, not by
  rank, since model.scan_layers stacks a LayerNorm's scale into a matrix.
  """
  if config.train.weight_decay_on == 'all':
    return jax.tree.map(lambda _: True, params)

  def is_matrix(path, _):
    return getattr(path[-1], 'key', None) in ('kernel', 'embedding')
  return jax.tree_util.tree_map_with_path(is_matrix, params)


def _decay_where(rate: float, where) -> optax.GradientTransformation:
  """optax.add_decayed_weights on the parameters `where(params)` marks.

  Not optax's `mask=`, whose wrapper adds a node to the optimizer state:
  this keeps the state's structure whatever train.weight_decay_on is, so a
  run may change it on resume like any training setting.
  """
  def update(updates, state, params):
    decay = where(params)
    return jax.tree.map(lambda u, p, d: u + rate * p if d else u,
                        updates, params, decay), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def make_optimizer(config: Config) -> optax.GradientTransformation:
  """AdamW(beta1 0.9, beta2 0.98, eps 1e-9) after optional global-norm clipping.

  Clipping is stateless, so it is applied before AdamW rather than chained
  with it: the optimizer state is AdamW's whatever `train.grad_clip_norm`
  and `train.weight_decay` are, and a run resumes from its checkpoint with
  clipping switched on or off (what the NaN message advises).
  """
  t = config.train
  if t.weight_decay_on == 'all':
    adam = optax.adamw(learning_rate_schedule(config), b1=t.adam_b1,
                       b2=t.adam_b2, eps=t.adam_eps,
                       weight_decay=t.weight_decay)
  else:  # AdamW's chain, with the decay on the matrices only
    adam = optax.chain(
        optax.scale_by_adam(b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps),
        _decay_where(t.weight_decay, functools.partial(decayed_parameters,
                                                       config)),
        optax.scale_by_learning_rate(learning_rate_schedule(config)))
  if t.grad_clip_norm <= 0:
    return adam
  clip = optax.clip_by_global_norm(t.grad_clip_norm)

  def update(grads, state, params=None):
    grads, _ = clip.update(grads, clip.init(params))
    return adam.update(grads, state, params)
  return optax.GradientTransformation(adam.init, update)


def init_state(task, rng: Array) -> TrainState:
  """Fresh parameters (float32) and optimizer state at step 0, plain arrays
  (a task may return its parameters boxed with their axis names)."""
  params = nn.unbox(task.init_params(rng))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=make_optimizer(task.config).init(params))


def _named_init_state(task, rng: Array) -> TrainState:
  """`init_state` with every parameter boxed with its logical axis names
  (flax `LogicallyPartitioned`), and so Adam's moments too: optax builds them
  by mapping over the parameters' leaves, inside the boxes. For
  `jax.eval_shape` only (`state_shapes`)."""
  with partitioning.axis_names():
    params = task.init_params(rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=make_optimizer(task.config).init(params))


def state_shapes(task) -> TrainState:
  """The TrainState's shapes and dtypes, each array boxed with its logical
  axis names where the model gives them; nothing is allocated."""
  return jax.eval_shape(functools.partial(_named_init_state, task),
                        jax.random.key(0))


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


def make_mesh(devices=None, config: Config | None = None) -> Mesh:
  """All devices of all hosts: one 'data' axis, or with
  config.train.model_parallel = m > 1 a 'data' x 'model' grid of
  (devices / m) x m (`check_model_parallel` first).

  The model axis takes consecutive devices, i.e. devices of one host where
  m divides its device count: tensor parallelism communicates in every
  layer, data parallelism once a step.
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  devices = devices.reshape(-1)
  model_parallel = 1 if config is None else config.train.model_parallel
  if model_parallel == 1:
    return Mesh(devices, (DATA_AXIS,))
  check_model_parallel(config, devices.size)
  return Mesh(devices.reshape(-1, model_parallel), (DATA_AXIS, MODEL_AXIS))


def check_model_parallel(config: Config, device_count: int) -> None:
  """Raises ConfigError unless train.model_parallel divides the device
  count and what it splits: the attention heads and the d_ff units.

  The vocabulary need not divide: an embedding it does not divide stays
  whole on every device of the model axis (`partitioning.mesh_spec`), so a
  run keeps its vocabulary, and its checkpoints, whatever the mesh.
  """
  size, model = config.train.model_parallel, config.model
  problems = []
  if device_count % size:
    problems.append(f'the {device_count} device(s) do not form groups of '
                    f'{size}')
  for key, value in (('model.num_heads', model.num_heads),
                     ('model.d_ff', model.d_ff)):
    if value % size:
      problems.append(f'{key}={value} does not split into {size} equal '
                      'parts')
  if not problems:
    return
  fits = [m for m in range(1, device_count + 1) if device_count % m == 0
          and model.num_heads % m == 0 and model.d_ff % m == 0]
  raise ConfigError(
      f'train.model_parallel={size} does not fit this run: ' +
      '; '.join(problems) + '. The mesh is (devices / train.model_parallel) '
      'data x train.model_parallel model, and the model axis splits every '
      'attention layer by heads and every feed-forward layer by its d_ff '
      'units, so train.model_parallel must divide the device count, '
      'model.num_heads and model.d_ff: here ' +
      ' or '.join(map(str, fits)) + ' (set with '
      '--set=train.model_parallel=N; 1 = data parallelism only).')


def data_parallel_size(mesh: Mesh) -> int:
  """Devices along the data axis: how many ways a batch is split."""
  return partitioning.axis_size(mesh, DATA_AXIS)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches: the leading (example) dimension split over the data axis,
  the same rows on every device of a model group."""
  return NamedSharding(mesh, P(DATA_AXIS))


def state_sharding(config: Config, mesh: Mesh, shapes: TrainState):
  """NamedShardings of a TrainState's arrays, by `partitioning.RULES`.

  Args:
    shapes: `state_shapes(task)`: arrays boxed with their logical axis
      names. An array without names is replicated, or with train.fsdp split
      along its largest dimension the data axis divides
      (`partitioning.fsdp_spec`).
  """
  def sharding(shape, names: P) -> NamedSharding:
    return NamedSharding(mesh, partitioning.mesh_spec(
        names, shape.shape, mesh, fsdp=config.train.fsdp))
  # get_partition_spec: a box -> P(*its names); a plain array -> P().
  return jax.tree.map(sharding, nn.unbox(shapes),
                      nn.get_partition_spec(shapes))


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
  # The loss sees the batch and, as 'step', the updates so far (a schedule
  # inside a loss: deferred re-weighting, train.drw_start).
  loss_sums = lambda params, batch, rng: task.loss_sums(
      params, {**batch, 'step': state.step}, rng)
  grad_fn = jax.value_and_grad(loss_sums, has_aux=True)
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
  sharding = state_sharding(task.config, mesh, state_shapes(task))
  return jax.jit(functools.partial(init_state, task),
                 out_shardings=sharding), sharding


def abstract_state(task, mesh: Mesh, sharding=None) -> TrainState:
  """The TrainState's shapes, dtypes and shardings, without allocating it.

  Restoring a checkpoint into it (checkpoint.py) places every array as
  `sharding` (default: this mesh's `state_sharding`) says, whatever mesh
  wrote it.
  """
  shapes = state_shapes(task)
  if sharding is None:
    sharding = state_sharding(task.config, mesh, shapes)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      nn.unbox(shapes), sharding)


def check_batch_sizes(config: Config, mesh: Mesh, *, training: bool) -> None:
  """Raises ConfigError unless the batches split evenly over the devices.

  A training batch of data.batch_size rows is cut into
  train.grad_accum_steps micro-batches, each split over the data axis;
  evaluation batches of data.eval_batch_size rows are split likewise. The
  devices of a model group (train.model_parallel) share their rows.
  """
  devices, accum = data_parallel_size(mesh), config.train.grad_accum_steps
  per_step = devices * accum
  ways = f'{devices} device(s)'
  if partitioning.axis_size(mesh, MODEL_AXIS) > 1:
    ways = (f'{devices} data-parallel group(s) of train.model_parallel='
            f'{mesh.shape[MODEL_AXIS]} devices')
  problems = []
  if training and config.data.batch_size % per_step:
    problems.append(
        f'data.batch_size={config.data.batch_size} must be a multiple of '
        f'{per_step} ({ways} x train.grad_accum_steps={accum}), '
        f'e.g. {_multiples(config.data.batch_size, per_step)}')
  if config.data.eval_batch_size % devices:
    problems.append(
        f'data.eval_batch_size={config.data.eval_batch_size} must be a '
        f'multiple of the {ways}, e.g. '
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
