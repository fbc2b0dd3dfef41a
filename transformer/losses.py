"""Losses and metrics, each returning (sum, weight_sum).

Why sums and not means: a mean of per-device (or per-host, per-micro-batch)
means is wrong when the shards hold different numbers of real tokens. Summing
numerators and denominators everywhere and dividing once at the end gives the
exact average. `mean` does that division.

All losses work in float32 whatever the logits' dtype, so logits of +-1e4 in
bfloat16 give finite values and gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def _weights_like(targets: Array, weights: Array | None) -> Array:
  if weights is None:
    return jnp.ones(targets.shape, jnp.float32)
  return weights.astype(jnp.float32)


def cross_entropy(logits: Array, targets: Array, weights: Array | None = None,
                  *, label_smoothing: float = 0.0,
                  class_weights: Array | None = None,
                  z_loss: float = 0.0) -> tuple[Array, Array]:
  """Softmax cross-entropy on integer targets: (sum of losses, sum of weights).

  Label smoothing (paper sec. 5.4, epsilon_ls = 0.1) trains against
  q = (1 - eps) * onehot(y) + eps / K (optax.smooth_labels' convention), so
      CE(q, p) = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k).
  This form needs no [..., K] one-hot array. We subtract the entropy H(q),
  the smallest value CE(q, .) can take, so that a prediction equal to q scores
  exactly 0 and the smoothed loss stays comparable with the unsmoothed one.

  Args:
    logits: [..., K] unnormalised scores (any float dtype).
    targets: [...] integer class ids in [0, K).
    weights: [...] per-token weights; 0 for padding. None = all ones.
    label_smoothing: eps in [0, 1).
    class_weights: [K] per-class weights for imbalanced labels; each token's
      loss and weight are multiplied by class_weights[target], as in the usual
      weighted cross-entropy (the mean is then a class-weighted mean).
    z_loss: coefficient of log(Z)^2 per token (PaLM, sec. 5), which keeps the
      softmax normaliser near 1. Added to the loss; 0 disables it.
  Returns:
    (loss_sum, weight_sum), float32 scalars.
  """
  logits = logits.astype(jnp.float32)
  weights = _weights_like(targets, weights)
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[targets]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  if label_smoothing or z_loss:
    log_z = jax.nn.logsumexp(logits, axis=-1)
  if label_smoothing:
    eps, num_classes = label_smoothing, logits.shape[-1]
    uniform = log_z - jnp.mean(logits, axis=-1)  # mean_k(-log p_k)
    loss = (1.0 - eps) * loss + eps * uniform
    loss = loss - smoothed_entropy(eps, num_classes)
  if z_loss:
    loss = loss + z_loss * jnp.square(log_z)
  return jnp.sum(loss * weights), jnp.sum(weights)


def smoothed_entropy(label_smoothing: float, num_classes: int) -> float:
  """H(q) for q = (1 - eps) * onehot + eps / K: the floor of the smoothed loss."""
  eps, k = float(label_smoothing), int(num_classes)
  if eps == 0.0:
    return 0.0
  high = 1.0 - eps + eps / k
  low = eps / k
  return -(high * math.log(high) + (k - 1) * low * math.log(low))


def binary_log_loss(logits: Array, labels: Array,
                    weights: Array | None = None) -> tuple[Array, Array]:
  """-[y log sigmoid(x) + (1 - y) log sigmoid(-x)]: (sum, weight sum).

  Args:
    logits: [...] scores; labels: [...] in {0, 1} (or soft labels in [0, 1]).
  """
  weights = _weights_like(labels, weights)
  loss = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                            labels.astype(jnp.float32))
  return jnp.sum(loss * weights), jnp.sum(weights)


def mean_squared_error(predictions: Array, targets: Array,
                       weights: Array | None = None) -> tuple[Array, Array]:
  """(prediction - target)^2: (sum, weight sum). No 1/2 factor."""
  weights = _weights_like(targets, weights)
  loss = optax.squared_error(predictions.astype(jnp.float32),
                             targets.astype(jnp.float32))
  return jnp.sum(loss * weights), jnp.sum(weights)


def token_accuracy(logits: Array, targets: Array,
                   weights: Array | None = None) -> tuple[Array, Array]:
  """Share of tokens whose argmax is the target: (correct sum, weight sum)."""
  weights = _weights_like(targets, weights)
  correct = jnp.argmax(logits, axis=-1) == targets
  return jnp.sum(correct * weights), jnp.sum(weights)


def mean(total: Array, weight: Array) -> Array:
  """total / weight, and 0 where there is no weight at all."""
  return jnp.where(weight > 0, total / jnp.maximum(weight, 1e-30), 0.0)


def perplexity(nll_sum: Array, weight_sum: Array) -> Array:
  """exp(mean negative log-likelihood). Give it the unsmoothed loss."""
  return jnp.exp(mean(nll_sum, weight_sum))
