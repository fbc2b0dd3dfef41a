"""Dropout masks: the hash against a plain-Python reference, and its statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import dropout


def lowbias32_reference(x: int) -> int:
  """Wellons' lowbias32, written with Python integers."""
  m = 0xFFFFFFFF
  x ^= x >> 16
  x = (x * 0x7FEB352D) & m
  x ^= x >> 15
  x = (x * 0x846CA68B) & m
  return x ^ (x >> 16)


def test_lowbias32_matches_python_integers():
  values = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xDEADBEEF]
  got = dropout.lowbias32(jnp.array(values, jnp.uint32))
  assert [int(v) for v in got] == [lowbias32_reference(v) for v in values]


def test_hash_bits_follow_the_documented_formula():
  key = jax.random.key(7)
  k0, k1 = (int(w) for w in jax.random.key_data(key).reshape(-1)[:2])
  shape = (3, 4, 5)
  bits = np.asarray(dropout.hash_bits(key, shape))
  h = lowbias32_reference
  for row in range(3):
    for j in range(4):
      for k in range(5):
        within = j * 5 + k
        want = h(h(within ^ k0) ^ h((row + k1) & 0xFFFFFFFF))
        assert bits[row, j, k] == want


@pytest.mark.parametrize('rate', [0.1, 0.3])
def test_hash_masks_keep_the_right_share_independently(rate):
  shape = (64, 128, 128)  # 1M elements
  n = np.prod(shape)
  a = np.asarray(dropout.keep_mask(jax.random.key(1), shape, rate))
  b = np.asarray(dropout.keep_mask(jax.random.key(2), shape, rate))
  p = 1 - rate
  sigma = np.sqrt(p * (1 - p) / n)
  assert abs(a.mean() - p) < 5 * sigma
  # Two sites (keys): agree as often as independent coins would.
  agree = p * p + (1 - p) * (1 - p)
  assert abs((a == b).mean() - agree) < 5 * np.sqrt(agree * (1 - agree) / n)
  # Neighbours along each axis are uncorrelated (|r| ~ 1/sqrt(n) = 0.001).
  x = a.astype(np.float64)
  for axis in range(3):
    first = np.take(x, range(x.shape[axis] - 1), axis).ravel()
    second = np.take(x, range(1, x.shape[axis]), axis).ravel()
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.01
  # Not the same mask shifted by one row either.
  assert abs(np.corrcoef(x[1:].ravel(), x[:-1].ravel())[0, 1]) < 0.01


def test_dropout_zeroes_and_rescales():
  x = jnp.arange(1.0, 1001.0)
  key = jax.random.key(3)
  got = np.asarray(dropout.dropout(x, 0.2, key))
  keep = np.asarray(dropout.keep_mask(key, x.shape, 0.2))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, np.where(keep, np.asarray(x) / 0.8, 0.0),
                             rtol=1e-6)
  assert 0.7 < keep.mean() < 0.9


@pytest.mark.parametrize('impl', ['rbg', 'threefry'])
def test_jax_random_implementations_equal_flax_dropout(impl):
  x = jax.random.normal(jax.random.key(0), (4, 16, 8))
  key = jax.random.key(5, impl=dropout.key_impl(impl))
  ours = dropout.Dropout(0.3, impl).apply({}, x, deterministic=False,
                                          rngs={'dropout': key})
  flax = nn.Dropout(0.3).apply({}, x, deterministic=False,
                               rngs={'dropout': key})
  assert np.all(np.isfinite(ours)) and np.all(np.isfinite(flax))
  assert 0 < np.mean(np.asarray(ours) == 0) < 1  # some dropped, not all
  np.testing.assert_array_equal(ours, flax)


def test_deterministic_and_zero_rate_are_the_identity():
  x = jnp.ones((2, 3))
  module = dropout.Dropout(0.5)
  assert module.apply({}, x, deterministic=True) is x
  assert dropout.Dropout(0.0).apply({}, x, deterministic=False) is x
