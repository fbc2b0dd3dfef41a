"""The pure training core: schedule, loss normalisation, accumulation, sharding."""

import dataclasses
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import losses
from transformer import train as train_lib
from transformer.config import Config, TrainConfig

from conftest import TINY_MODEL
from scripts import sharded_steps

NO_DROPOUT = dataclasses.replace(TINY_MODEL, dropout_rate=0.0)
CONFIG = Config(model=NO_DROPOUT,
                train=TrainConfig(schedule='constant', learning_rate=1e-3,
                                  warmup_steps=1))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_batch(seed):
  """Random padded rows with ids inside the tiny model's vocabulary."""
  return sharded_steps.synthetic_batch(seed, vocab=TINY_MODEL.vocab_size)


def test_paper_learning_rate_schedule():
  config = Config(train=TrainConfig(warmup_steps=4000))  # d_model 512
  schedule = train_lib.learning_rate_schedule(config)
  for step in (1, 100, 4000, 4001, 100_000):  # the paper counts from 1
    want = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
    np.testing.assert_allclose(schedule(step - 1), want, rtol=1e-6)
  # Linear warm-up to the peak d^-0.5 * warmup^-0.5 = 7.0e-4, then decay.
  np.testing.assert_allclose(schedule(3999), 512**-0.5 * 4000**-0.5, rtol=1e-6)


@functools.lru_cache(maxsize=None)
def step_function(config: Config):
  return jax.jit(functools.partial(train_lib.train_step, config=config))


def fresh_state(config: Config):
  return train_lib.init_state(config, jax.random.key(0))


def test_loss_is_the_exact_mean_over_real_tokens():
  batch = jax.tree.map(jnp.asarray, synthetic_batch(0))
  state = fresh_state(CONFIG)
  _, metrics = step_function(CONFIG)(state, batch, jax.random.key(1))
  logits = train_lib.forward(state.params, batch, CONFIG, rng=None)
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
  np.testing.assert_allclose(m_four['loss'], m_one['loss'], rtol=1e-5)
  np.testing.assert_allclose(m_four['grad_norm'], m_one['grad_norm'],
                             rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               four.params, one.params)


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
  assert train_lib.fsdp_spec((512, 2048), 8) == P(None, 'data')
  assert train_lib.fsdp_spec((37000, 512), 8) == P('data', None)
  assert train_lib.fsdp_spec((3, 512, 63), 8) == P(None, 'data', None)
  assert train_lib.fsdp_spec((512,), 8) == P()  # small: replicated
  assert train_lib.fsdp_spec((30001, 5), 8) == P()  # nothing divides


def test_eight_devices_give_the_same_losses_as_one():
  env = dict(os.environ,
             XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, 'tests/scripts/sharded_steps.py'],
                       cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout)
  assert result['device_count'] == 8
  assert np.all(np.isfinite(result['one']))
  np.testing.assert_allclose(result['all'], result['one'], rtol=1e-5)
  np.testing.assert_allclose(result['all_fsdp'], result['one'], rtol=1e-5)
  # The default dropout masks ('hash') and both jax.random ones.
  for impl in ('threefry', 'rbg'):
    np.testing.assert_allclose(result[f'all_{impl}'], result[f'one_{impl}'],
                               rtol=1e-5)
    assert result[f'one_{impl}'] != result['one']  # other dropout masks
