"""Dropout (Srivastava et al., 2014) and where its random masks come from.

Dropout keeps each element with probability 1 - rate and scales kept ones by
1 / (1 - rate). The masks need random bits, and how they are drawn decides
how much dropout costs: on a CPU, drawing them with `jax.random` took a
large share of the train step (README, "Speed on CPU"). `train.dropout_rng`
picks the source:

- 'hash' (default): bit = lowbias32(lowbias32(index ^ k0) ^ lowbias32(row + k1)),
  a counter-based hash of each element's position in the array and of the
  32-bit key words (k0, k1) that flax derives for each dropout site. It is a
  few integer operations that XLA fuses into the multiply that applies the
  mask, so the bits never reach memory: dropout becomes almost free.
  lowbias32 is Chris Wellons' 32-bit integer hash (hash-prospector), a
  bijection with low avalanche bias; its output is not cryptographic, and
  masks need not be: the keep rate is exact to 2^-32 and masks of different
  sites and steps are uncorrelated (tests/test_dropout.py checks both).
- 'rbg': `jax.random.bernoulli` with XLA's RngBitGenerator keys.
- 'threefry': `jax.random.bernoulli` with JAX's default Threefry keys.

All three give the same masks on any number of devices (the hash depends on
the element's global position, which XLA keeps when it splits the array).
They draw different masks, so switching changes a run's numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array

IMPLEMENTATIONS = ('hash', 'rbg', 'threefry')


def key_impl(dropout_rng: str) -> str:
  """The jax.random key implementation to build dropout keys with."""
  return {'hash': 'threefry2x32', 'rbg': 'rbg',
          'threefry': 'threefry2x32'}[dropout_rng]


def lowbias32(x: Array) -> Array:
  """Chris Wellons' lowbias32 integer hash: uint32 -> uint32, a bijection."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def hash_bits(key: Array, shape: tuple[int, ...]) -> Array:
  """uint32 bits, one per element of `shape`, from the element's position.

  The position is split into the index along the first axis (`row`) and the
  flat index within the rest, so arrays of up to 2^32 elements per row get
  distinct counters.
  """
  words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
  row = jax.lax.broadcasted_iota(jnp.uint32, shape, 0)
  within = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in range(len(shape) - 1, 0, -1):
    within = within + (jax.lax.broadcasted_iota(jnp.uint32, shape, axis) *
                       jnp.uint32(stride % 2**32))
    stride *= shape[axis]
  return lowbias32(lowbias32(within ^ words[0]) ^ lowbias32(row + words[1]))


def keep_mask(key: Array, shape: tuple[int, ...], rate: float,
              implementation: str = 'hash') -> Array:
  """Boolean mask, True with probability 1 - rate."""
  if implementation == 'hash':
    threshold = min(round(rate * 2**32), 2**32 - 1)
    return hash_bits(key, shape) >= jnp.uint32(threshold)
  if implementation in ('rbg', 'threefry'):
    return jax.random.bernoulli(key, 1.0 - rate, shape)
  raise ValueError(f'dropout implementation {implementation!r} is not one of '
                   f'{IMPLEMENTATIONS}')


def dropout(x: Array, rate: float, key: Array,
            implementation: str = 'hash') -> Array:
  """x with elements zeroed with probability `rate`, the rest / (1 - rate)."""
  keep = keep_mask(key, x.shape, rate, implementation)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class Dropout(nn.Module):
  """Like `flax.linen.Dropout`, with the mask source chosen by `implementation`.

  With 'rbg' or 'threefry' it gives exactly `nn.Dropout`'s result.
  """
  rate: float
  implementation: str = 'hash'

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool) -> Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng('dropout'), self.implementation)
