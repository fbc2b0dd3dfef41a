"""linear.dot_general: the dense layers' product equals lax.dot_general."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from transformer import linear


def _close(a, b):
  """Equal within float32 rounding, and finite (assert_allclose treats NaN
  as equal to NaN)."""
  assert np.all(np.isfinite(np.asarray(a))) and np.all(
      np.isfinite(np.asarray(b)))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize('lhs_shape, rhs_shape, k', [
    ((3, 5, 8), (8, 6), 1),           # nn.Dense: [B, L, K] x [K, N]
    ((3, 5, 8), (8, 2, 4), 1),        # query/key/value: [B, L, D] x [D, N, H]
    ((3, 5, 2, 4), (2, 4, 8), 2),     # attention output: [B, L, N, H] x [N, H, D]
    ((7, 8), (8, 6), 1),              # already a matrix
])
def test_value_and_gradients_equal_lax_dot_general(lhs_shape, rhs_shape, k):
  keys = jax.random.split(jax.random.key(0), 3)
  lhs = jax.random.normal(keys[0], lhs_shape)
  rhs = jax.random.normal(keys[1], rhs_shape)
  numbers = ((tuple(range(len(lhs_shape) - k, len(lhs_shape))),
              tuple(range(k))), ((), ()))
  out_shape = lhs_shape[:len(lhs_shape) - k] + rhs_shape[k:]
  cotangent = jax.random.normal(keys[2], out_shape)

  def loss(product, lhs, rhs):
    return jnp.sum(product(lhs, rhs, numbers) * cotangent)

  ours = linear.dot_general(lhs, rhs, numbers)
  assert ours.shape == out_shape
  _close(ours, jax.lax.dot_general(lhs, rhs, numbers))
  ours_grads = jax.grad(loss, argnums=(1, 2))(linear.dot_general, lhs, rhs)
  reference = jax.grad(loss, argnums=(1, 2))(jax.lax.dot_general, lhs, rhs)
  for a, b in zip(ours_grads, reference):
    _close(a, b)


def test_other_forms_go_to_lax_unchanged():
  """A batched product and one contracting a leading lhs axis still work."""
  keys = jax.random.split(jax.random.key(1), 2)
  a = jax.random.normal(keys[0], (4, 3, 5))
  b = jax.random.normal(keys[1], (4, 5, 2))
  batched = (((2,), (1,)), ((0,), (0,)))
  _close(linear.dot_general(a, b, batched), jnp.einsum('bik,bkj->bij', a, b))
  leading = (((0,), (0,)), ((), ()))
  _close(linear.dot_general(a, b, leading), jnp.einsum('bik,bjl->ikjl', a, b))


def test_flax_dense_layers_take_it_with_unchanged_parameters():
  x = jax.random.normal(jax.random.key(2), (2, 3, 8))
  for make in (lambda **kw: nn.Dense(6, **kw),
               lambda **kw: nn.DenseGeneral((2, 4), **kw)):
    params = make().init(jax.random.key(3), x)
    ours = make(dot_general=linear.dot_general)
    assert (jax.tree.map(jnp.shape, ours.init(jax.random.key(3), x))
            == jax.tree.map(jnp.shape, params))
    _close(ours.apply(params, x), make().apply(params, x))
