"""Choosing the next token from a language model's logits: greedy, or
sampling with temperature, top-k and nucleus (top-p) filtering.

Pure functions of [batch, vocab] logits; jitted, with the settings static
(Python scalars: a new value compiles anew). The filters apply in this
order: temperature, then top-k, then top-p on the distribution top-k left
(renormalised), as in common practice (e.g. Hugging Face's generate).

Ties are broken by token id, lowest first, so the kept set never depends on
the sort's whims: top-k keeps exactly k tokens, top-p exactly the shortest
prefix of the tokens ordered by (probability descending, id ascending).
Removed tokens get -inf: zero probability under softmax and
jax.random.categorical, and never the argmax while one token is kept.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Top-p: a cumulative probability within this of p counts as reaching it, so
# that float32 rounding of e.g. 0.5 + 0.2 to 0.6999995 still keeps 2 tokens
# for p=0.7, and a nucleus is never grown by a token for a rounding error.
TOP_P_TOLERANCE = 1e-5


def _check(temperature: float, top_k: int, top_p: float) -> None:
  if temperature < 0:
    raise ValueError(f'temperature must be >= 0, got {temperature}')
  if top_k < 0:
    raise ValueError(f'top_k must be >= 0 (0 = off), got {top_k}')
  if not 0 < top_p <= 1:
    raise ValueError(f'top_p must be in (0, 1] (1 = off), got {top_p}')


def _kept_in_order(sorted_logits: jax.Array, top_k: int,
                   top_p: float) -> jax.Array:
  """Which of the tokens, sorted best first, top-k and top-p keep."""
  rank = jnp.arange(sorted_logits.shape[-1])
  keep = rank < top_k if top_k else jnp.ones_like(rank, bool)
  keep = jnp.broadcast_to(keep, sorted_logits.shape)
  if top_p < 1:
    probs = jax.nn.softmax(jnp.where(keep, sorted_logits, -jnp.inf), axis=-1)
    # Probability of the better tokens: a token is needed while they have
    # not yet reached p; the first always is.
    before = jnp.cumsum(probs, axis=-1) - probs
    keep &= (before < top_p - TOP_P_TOLERANCE) | (rank == 0)
  return keep


@functools.partial(jax.jit, static_argnames=('temperature', 'top_k', 'top_p'))
def filter_logits(logits: jax.Array, *, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """[batch, vocab] logits / temperature, -inf where top-k or top-p removes.

  Args:
    logits: [batch, vocab], any float dtype; rows are filtered independently.
    temperature: > 0; the logits are divided by it.
    top_k: keep the k highest logits (ties: lowest id); 0 = off.
    top_p: keep the smallest set of most probable tokens whose probability
      reaches top_p (Holtzman et al. 2019, "The Curious Case of Neural Text
      Degeneration", sec. 3.1), at least one; 1.0 = off.
  Returns:
    float32 [batch, vocab]: kept logits finite (when the input's are),
    removed ones -inf.
  """
  _check(temperature, top_k, top_p)
  if temperature == 0:
    raise ValueError('temperature=0 is greedy: call sample, which takes the '
                     'argmax, rather than filter_logits')
  logits = logits.astype(jnp.float32) / temperature
  if not top_k and top_p == 1:
    return logits
  # Stable sort on the negated logits: best first, equal ones by lower id.
  order = jnp.argsort(-logits, axis=-1, stable=True)
  keep_sorted = _kept_in_order(jnp.take_along_axis(logits, order, axis=-1),
                               top_k, top_p)
  rows = jnp.arange(logits.shape[0])[:, None]
  keep = jnp.zeros_like(keep_sorted).at[rows, order].set(keep_sorted)
  return jnp.where(keep, logits, -jnp.inf)


@functools.partial(jax.jit, static_argnames=('temperature', 'top_k', 'top_p'))
def sample(rng: jax.Array, logits: jax.Array, *, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Next token ids [batch] int32 from [batch, vocab] logits.

  temperature == 0: the argmax (lowest id on ties), `rng` unused; otherwise
  a draw from softmax(filter_logits(logits, ...)) per row.
  """
  _check(temperature, top_k, top_p)
  if temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  filtered = filter_logits(logits, temperature=temperature, top_k=top_k,
                           top_p=top_p)
  return jax.random.categorical(rng, filtered, axis=-1).astype(jnp.int32)
