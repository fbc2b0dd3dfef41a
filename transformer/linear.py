"""The matrix product of every dense layer, as one 2-D matmul.

`dot_general` is a drop-in for `jax.lax.dot_general` that flax's `nn.Dense`
and `nn.DenseGeneral` take (`dot_general=linear.dot_general`). It computes
the same x W, by flattening the input to a matrix first:

  [B, L, K] x [K, N]  ->  [B * L, K] x [K, N]  ->  [B, L, N].

Why: differentiating the 3-D form, JAX writes the weight gradient x^T g as a
product contracting two axes (B and L) of both operands. XLA:CPU then copies
g into a transposed layout and multiplies in an x^T (g^T)^T form on its
Eigen fallback kernel: an FFN weight gradient ran at a fraction of the rate
of other matmuls of its size, and every weight gradient paid for a
transposing copy. From the 2-D form XLA contracts B * L of both operands
directly, with no copy (the step times before and after: README, "Speed on
CPU"). The products and sums are the same, and so are the
results (`tests/test_linear.py` checks values and gradients against
`lax.dot_general`).
"""

from __future__ import annotations

import math

import jax

Array = jax.Array


def dot_general(lhs: Array, rhs: Array, dimension_numbers, precision=None,
                preferred_element_type=None) -> Array:
  """`lax.dot_general` for a dense layer: lhs [..., K...] x rhs [K..., N...].

  Products of that form (the trailing axes of `lhs` contracted with the
  leading axes of `rhs`, no batch axes) are computed as one
  [M, K] x [K, N] matmul; any other form goes to `lax.dot_general` unchanged.
  """
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  axes = len(lhs_contract)  # how many axes are contracted
  batch_shape = lhs.shape[:lhs.ndim - axes]
  contract_shape, features_shape = rhs.shape[:axes], rhs.shape[axes:]
  dense_form = (not lhs_batch and not rhs_batch
                and tuple(lhs_contract) == tuple(range(lhs.ndim - axes,
                                                       lhs.ndim))
                and tuple(rhs_contract) == tuple(range(axes)))
  if not dense_form:
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision,
                               preferred_element_type)
  m, k, n = (math.prod(s) for s in (batch_shape, contract_shape,
                                      features_shape))
  out = jax.lax.dot(lhs.reshape(m, k), rhs.reshape(k, n),  # [M, K] x [K, N]
                    precision=precision,
                    preferred_element_type=preferred_element_type)
  return out.reshape(batch_shape + features_shape)
