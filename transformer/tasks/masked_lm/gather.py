"""Projecting only the chosen positions onto the vocabulary (BERT's own
code does so: `gather_indexes` before `cls/predictions`).

At the widths a CPU trains, the output projection over the vocabulary is
most of a masked LM's compute (bible_mlm: d_model 128 against 8,000
pieces), yet only the ~15% chosen positions enter the loss. Training
gathers those positions' encoder outputs and runs the transform and the
projection on them alone. Shapes must be static while the number chosen
varies (each token is chosen independently), so `capacity` slots are
gathered: the expected count plus six standard deviations. A batch that
chooses more takes the plain path (every position projected) through
`lax.cond`, so the loss is always exactly the plain one; no switch.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def capacity(tokens: int, rate: float) -> int:
  """Gathered slots for `tokens` positions each chosen with probability
  `rate`: mean + 6 standard deviations of the binomial count, + 8."""
  mean = rate * tokens
  std = math.sqrt(tokens * rate * (1.0 - rate))
  return min(tokens, math.ceil(mean + 6.0 * std) + 8)


def loss_at_chosen(predict: Callable[[Array], Array], encoded: Array,
                   targets: Array, weights: Array, *, rate: float,
                   loss_fn: Callable[[Array, Array, Array], tuple]):
  """`loss_fn(logits, targets, weights)` with logits only where it counts.

  Args:
    predict: [..., d_model] encoder outputs -> [..., vocab] logits.
    encoded: [B, L, d_model]; targets: int [B, L]; weights: [B, L], zero
      except at the chosen positions.
    rate: the chance of choosing a position (sizes the gather).
    loss_fn: sums over positions: the result has the same value whether
      it sees every position or just the chosen ones (zero weights add
      nothing).
  """
  flat_encoded = encoded.reshape(-1, encoded.shape[-1])  # [B*L, d]
  flat_targets, flat_weights = targets.reshape(-1), weights.reshape(-1)
  slots = capacity(flat_weights.size, rate)
  count = jnp.sum(flat_weights > 0)

  def gathered(_):
    (index,) = jnp.nonzero(flat_weights, size=slots, fill_value=0)  # [slots]
    used = (jnp.arange(slots) < count).astype(flat_weights.dtype)
    return loss_fn(predict(flat_encoded[index]), flat_targets[index],
                   flat_weights[index] * used)

  def every(_):
    return loss_fn(predict(encoded), targets, weights)

  return jax.lax.cond(count <= slots, gathered, every, None)
