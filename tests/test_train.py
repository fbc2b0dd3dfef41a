"""The pure training core: schedule, loss normalisation, accumulation, sharding."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transformer import tasks
from transformer import losses
from transformer import partitioning
from transformer import train as train_lib
from transformer.config import Config, TrainConfig

from conftest import TINY_MODEL
from scripts import launching, sharded_steps

NO_DROPOUT = dataclasses.replace(TINY_MODEL, dropout_rate=0.0)
CONFIG = Config(model=NO_DROPOUT,
                train=TrainConfig(schedule='constant', learning_rate=1e-3,
                                  warmup_steps=1))


def synthetic_batch(seed):
  """Random padded rows with ids inside the tiny model's vocabulary."""
  return sharded_steps.synthetic_batch(seed, vocab=TINY_MODEL.vocab_size)


def assert_finite(*trees):
  """assert_allclose treats NaN as equal to NaN: check outputs separately."""
  for tree in trees:
    for leaf in jax.tree.leaves(tree):
      assert np.all(np.isfinite(np.asarray(leaf, np.float64))), leaf


def test_paper_learning_rate_schedule():
  config = Config(train=TrainConfig(warmup_steps=4000))  # d_model 512
  schedule = train_lib.learning_rate_schedule(config)
  for step in (1, 100, 4000, 4001, 100_000):  # the paper counts from 1
    want = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
    assert_finite(schedule(step - 1))
    np.testing.assert_allclose(schedule(step - 1), want, rtol=1e-6)
  # Linear warm-up to the peak d^-0.5 * warmup^-0.5 = 7.0e-4, then decay.
  np.testing.assert_allclose(schedule(3999), 512**-0.5 * 4000**-0.5, rtol=1e-6)


def train_config(**train) -> Config:
  return dataclasses.replace(CONFIG, train=dataclasses.replace(
      CONFIG.train, **train))


def hand_learning_rate(t: TrainConfig, count: int) -> float:
  """The documented schedules, written out (count: updates so far)."""
  if t.schedule == 'paper':
    step = count + 1
    return t.learning_rate * NO_DROPOUT.d_model**-0.5 * min(
        step**-0.5, step * t.warmup_steps**-1.5)
  if count < t.warmup_steps:  # both: linear warm-up from 0 to the peak
    return t.learning_rate * count / t.warmup_steps
  if t.schedule == 'constant':
    return t.learning_rate
  progress = min((count - t.warmup_steps) / (t.steps - t.warmup_steps), 1.0)
  return t.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def test_constant_and_cosine_schedules():
  constant = train_config(schedule='constant', learning_rate=3e-3,
                          warmup_steps=10).train
  cosine = train_config(schedule='cosine', learning_rate=2e-3,
                        warmup_steps=10, steps=110).train
  # Values worked out by hand from the formulas.
  hand = {
      constant: {0: 0.0, 1: 3e-4, 5: 1.5e-3, 10: 3e-3, 11: 3e-3,
                 100_000: 3e-3},
      # Cosine over the 100 steps after warm-up: half-way (step 60) is half
      # the peak, a quarter of the way (step 35) is (1 + cos(pi/4)) / 2 of it.
      cosine: {0: 0.0, 4: 8e-4, 10: 2e-3, 35: 2e-3 * (1 + 0.5**0.5) / 2,
               60: 1e-3, 110: 0.0, 500: 0.0},
  }
  optax_schedules = {
      constant: optax.linear_schedule(0.0, 3e-3, 10),
      cosine: optax.warmup_cosine_decay_schedule(0.0, 2e-3, 10, 110),
  }
  for t, values in hand.items():
    schedule = train_lib.learning_rate_schedule(
        dataclasses.replace(CONFIG, train=t))
    for count, want in values.items():
      got = float(schedule(count))
      assert np.isfinite(got)
      assert got == pytest.approx(want, rel=1e-6, abs=1e-12), (t, count)
      assert got == pytest.approx(hand_learning_rate(t, count), rel=1e-6,
                                  abs=1e-12)
      assert got == pytest.approx(float(optax_schedules[t](count)), rel=1e-6,
                                  abs=1e-12)
  # The cosine decays monotonically after its warm-up.
  schedule = train_lib.learning_rate_schedule(
      dataclasses.replace(CONFIG, train=cosine))
  values = np.array([float(schedule(c)) for c in range(10, 111)])
  assert np.all(np.diff(values) < 0)


# A small parameter tree and gradients far larger than the clipping norms
# below, with norms that differ from step to step: Adam is invariant to one
# common scale of all gradients, so clipping changes its updates only when
# it rescales steps by different factors.
GRAD_SCALES = (300.0, 2.0, 40.0, 1000.0, 7.0, 150.0)


def small_tree(rng, scale=1.0):
  return {'dense': {'kernel': scale * rng.normal(size=(3, 4)),
                    'bias': scale * rng.normal(size=(4,))},
          'norm': {'scale': scale * rng.normal(size=(5,))}}


def gradient_steps(scales=GRAD_SCALES, seed=0):
  rng = np.random.default_rng(seed)
  return [jax.tree.map(lambda x: x.astype(np.float32), small_tree(rng, s))
          for s in scales]


def initial_params():
  return jax.tree.map(lambda x: x.astype(np.float32),
                      small_tree(np.random.default_rng(99)))


def run_optimizer(optimizer, grads_per_step, params=None):
  """The updates of each step, applied in turn; params from initial_params."""
  params = initial_params() if params is None else params
  state = optimizer.init(params)
  all_updates, all_params = [], []
  for grads in grads_per_step:
    all_params.append(params)
    updates, state = optimizer.update(grads, state, params)
    all_updates.append(jax.tree.map(np.asarray, updates))
    params = optax.apply_updates(params, updates)
  return all_updates, all_params


def numpy_adamw(t: TrainConfig, grads_per_step):
  """Global-norm clipping then AdamW (decoupled weight decay, Loshchilov &
  Hutter), in float64: m, v with bias correction, update
  -lr(count) * (m_hat / (sqrt(v_hat) + eps) + weight_decay * param)."""
  leaves = lambda tree: [np.asarray(x, np.float64) for x in
                         jax.tree.leaves(tree)]
  treedef = jax.tree.structure(initial_params())
  params = leaves(initial_params())
  m = [np.zeros_like(p) for p in params]
  v = [np.zeros_like(p) for p in params]
  all_updates = []
  for count, grads in enumerate(grads_per_step):
    g = leaves(grads)
    norm = math.sqrt(sum(np.sum(x * x) for x in g))
    if t.grad_clip_norm > 0 and norm > t.grad_clip_norm:
      g = [x * t.grad_clip_norm / norm for x in g]
    m = [t.adam_b1 * a + (1 - t.adam_b1) * x for a, x in zip(m, g)]
    v = [t.adam_b2 * a + (1 - t.adam_b2) * x * x for a, x in zip(v, g)]
    lr = hand_learning_rate(t, count)
    updates = []
    for p, a, b in zip(params, m, v):
      m_hat = a / (1 - t.adam_b1**(count + 1))
      v_hat = b / (1 - t.adam_b2**(count + 1))
      updates.append(-lr * (m_hat / (np.sqrt(v_hat) + t.adam_eps) +
                            t.weight_decay * p))
    params = [p + u for p, u in zip(params, updates)]
    all_updates.append(jax.tree.unflatten(treedef, updates))
  return all_updates


def optax_reference(t: TrainConfig) -> optax.GradientTransformation:
  """The same optimizer from optax's own pieces."""
  if t.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, t.learning_rate, t.warmup_steps, t.steps)
  elif t.schedule == 'constant':
    schedule = optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps)
  else:
    schedule = lambda count: hand_learning_rate(t, count)
  adamw = optax.adamw(schedule, b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps,
                      weight_decay=t.weight_decay)
  if t.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), adamw)
  return adamw


def assert_updates_close(got, want, **tolerance):
  assert len(got) == len(want)
  for step, (a, b) in enumerate(zip(got, want)):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      assert np.all(np.isfinite(x)), step
      np.testing.assert_allclose(x, y, err_msg=f'step {step}', **tolerance)


OPTIMIZER_CASES = {
    'constant': dict(schedule='constant', learning_rate=1e-2,
                     warmup_steps=2),
    'constant+clip': dict(schedule='constant', learning_rate=1e-2,
                          warmup_steps=2, grad_clip_norm=1.0),
    'cosine+clip+decay': dict(schedule='cosine', learning_rate=1e-2,
                              warmup_steps=2, steps=8, grad_clip_norm=1.0,
                              weight_decay=0.1),
    'paper+clip+decay': dict(schedule='paper', learning_rate=2.0,
                             warmup_steps=3, grad_clip_norm=50.0,
                             weight_decay=0.01, adam_b1=0.8, adam_b2=0.9,
                             adam_eps=1e-6),
}


@pytest.mark.parametrize('case', list(OPTIMIZER_CASES))
def test_optimizer_updates_equal_optax_and_numpy_adamw(case):
  config = train_config(**OPTIMIZER_CASES[case])
  grads = gradient_steps()
  got, _ = run_optimizer(train_lib.make_optimizer(config), grads)
  want, _ = run_optimizer(optax_reference(config.train), grads)
  assert_updates_close(got, want, rtol=1e-5, atol=1e-9)
  assert_updates_close(got, numpy_adamw(config.train, grads), rtol=2e-4,
                       atol=1e-8)
  # The warm-up starts at 0 ('constant', 'cosine'): later updates are not.
  assert max(np.abs(x).max() for x in jax.tree.leaves(got[-1])) > 1e-4


def test_clipping_changes_the_update_only_above_the_threshold():
  clipped = train_config(**OPTIMIZER_CASES['constant+clip'])
  unclipped = train_config(**OPTIMIZER_CASES['constant'])
  big = gradient_steps()
  with_clip, _ = run_optimizer(train_lib.make_optimizer(clipped), big)
  without, _ = run_optimizer(train_lib.make_optimizer(unclipped), big)
  # Step 1 (the first with lr > 0) sees m / sqrt(v) of two steps whose
  # norms clipping has brought from ~650 and ~4 to 1 each: far other
  # updates.
  for step in range(2, len(big)):
    difference = max(np.abs(a - b).max() for a, b in zip(
        jax.tree.leaves(with_clip[step]), jax.tree.leaves(without[step])))
    assert difference > 1e-3, step  # updates are ~1e-2
  assert_updates_close(with_clip, numpy_adamw(clipped.train, big), rtol=2e-4,
                       atol=1e-8)
  # Gradients below the clipping norm pass unchanged.
  small = gradient_steps(scales=[s / 1e4 for s in GRAD_SCALES])
  norms = [float(optax.tree.norm(g)) for g in small]
  assert max(norms) < clipped.train.grad_clip_norm
  with_clip, _ = run_optimizer(train_lib.make_optimizer(clipped), small)
  without, _ = run_optimizer(train_lib.make_optimizer(unclipped), small)
  assert_updates_close(with_clip, without, rtol=1e-6, atol=0)


def test_weight_decay_adds_learning_rate_times_decay_times_params():
  decayed = train_config(**OPTIMIZER_CASES['cosine+clip+decay'])
  plain = train_config(**(OPTIMIZER_CASES['cosine+clip+decay'] |
                          {'weight_decay': 0.0}))
  grads = gradient_steps()
  with_decay, params = run_optimizer(train_lib.make_optimizer(decayed), grads)
  without, _ = run_optimizer(train_lib.make_optimizer(plain), grads)
  # The gradients are given, so Adam's moments are the same in both runs:
  # the updates differ by -lr(count) * weight_decay * params exactly.
  for count, (a, b, p) in enumerate(zip(with_decay, without, params)):
    lr = hand_learning_rate(decayed.train, count)
    for x, y, w in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                       jax.tree.leaves(p)):
      assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
      np.testing.assert_allclose(x - y, -lr * 0.1 * np.asarray(w),
                                 rtol=1e-4, atol=1e-9)
      if 0 < count < len(grads) - 1 and lr > 0:
        assert np.abs(x - y).max() > 1e-5  # decay really changed it


@functools.lru_cache(maxsize=None)
def step_function(config: Config):
  return jax.jit(functools.partial(train_lib.train_step,
                                   task=tasks.for_config(config)))


def fresh_state(config: Config):
  return train_lib.init_state(tasks.for_config(config), jax.random.key(0))


def test_loss_is_the_exact_mean_over_real_tokens():
  batch = jax.tree.map(jnp.asarray, synthetic_batch(0))
  state = fresh_state(CONFIG)
  _, metrics = step_function(CONFIG)(state, batch, jax.random.key(1))
  logits = tasks.for_config(CONFIG).forward(state.params, batch,
                                             rng=None)
  weights = batch['targets'] != 0
  total, count = losses.cross_entropy(logits, batch['targets'], weights,
                                      label_smoothing=0.1)
  assert np.isfinite(metrics['loss']) and float(metrics['finite']) == 1.0
  np.testing.assert_allclose(metrics['loss'], total / count, rtol=1e-5)
  assert metrics['tokens'] == weights.sum()


def test_gradient_accumulation_equals_one_big_batch():
  accumulated = dataclasses.replace(
      CONFIG, train=dataclasses.replace(CONFIG.train, grad_accum_steps=4))
  batch = jax.tree.map(jnp.asarray, synthetic_batch(1))
  rng = jax.random.key(2)
  one, m_one = step_function(CONFIG)(fresh_state(CONFIG), batch, rng)
  four, m_four = step_function(accumulated)(fresh_state(accumulated), batch,
                                            rng)
  assert np.isfinite(m_one['loss']) and np.isfinite(m_one['grad_norm'])
  assert_finite(m_four['loss'], m_four['grad_norm'], four.params, one.params)
  np.testing.assert_allclose(m_four['loss'], m_one['loss'], rtol=1e-5)
  np.testing.assert_allclose(m_four['grad_norm'], m_one['grad_norm'],
                             rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               four.params, one.params)
  # The first update's rate is 0 (warm-up from 0): the parameters above have
  # not moved. Adam's first moments hold 0.1 x each parameter's gradient
  # (median 3.5e-4, largest 2.6e-2): measured at most 5.6e-9 apart.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-7),
               four.opt_state[0].mu, one.opt_state[0].mu)


def test_micro_batches_take_every_kth_row():
  batch = {'x': jnp.arange(8)[:, None]}
  micro = train_lib.split_micro_batches(batch, 2)['x'][..., 0]
  np.testing.assert_array_equal(micro, [[0, 2, 4, 6], [1, 3, 5, 7]])


def test_non_finite_step_is_flagged():
  state = fresh_state(CONFIG)
  params = jax.tree.map(lambda x: x, state.params)
  params['embedding']['embedding'] = params['embedding']['embedding'].at[
      5, 0].set(jnp.nan)
  batch = jax.tree.map(jnp.asarray, synthetic_batch(2))
  _, good = step_function(CONFIG)(state, batch, jax.random.key(0))
  assert float(good['finite']) == 1.0
  batch['inputs'] = batch['inputs'].at[0, 0].set(5)  # uses the NaN row
  _, bad = step_function(CONFIG)(state.replace(params=params), batch,
                                 jax.random.key(0))
  assert float(bad['finite']) == 0.0


def test_fsdp_spec_splits_the_largest_divisible_dimension():
  P = jax.sharding.PartitionSpec
  assert partitioning.fsdp_spec((512, 2048), 8) == P(None, 'data')
  assert partitioning.fsdp_spec((37000, 512), 8) == P('data', None)
  assert partitioning.fsdp_spec((3, 512, 63), 8) == P(None, 'data', None)
  assert partitioning.fsdp_spec((512,), 8) == P()  # small: replicated
  assert partitioning.fsdp_spec((30001, 5), 8) == P()  # nothing divides


def test_eight_devices_give_the_same_losses_as_one():
  """Each task's losses over 4 steps (2 updates), dropout on, batches split
  over 8 devices, against one device (tests/scripts/sharded_steps.py).

  rtol 1e-5: the 8 devices sum in another order, so each loss may differ by
  a few float32 roundings (measured: at most 3.3e-7 relative); with Adam's
  eps at 1e-6 (the script says why) the updates do not amplify that. A
  gradient that misses one of the 8 shards moves the losses 1e-4 to 1e-3
  apart from the first update on, a shard read twice 1e-3 to 1e-2 from the
  start (measured on tests/scripts/mesh_steps.py's models)."""
  result = launching.run_script('sharded_steps.py', devices=8)
  for prefix in ('', 'classify_', 'lm_'):
    one = result[f'{prefix}one']
    assert np.all(np.isfinite(one)), prefix
    assert one[0] != one[-1], prefix  # it learns
    np.testing.assert_allclose(result[f'{prefix}all'], one, rtol=1e-5,
                               err_msg=prefix)
  # Classification drew its masks with 'threefry', the language model with
  # 'rbg': other masks than the default 'hash', so other losses.
  for prefix in ('classify_', 'lm_'):
    assert result[f'{prefix}one'] != result[f'{prefix}one_hash'], prefix
