"""Losses and metrics, each returning (sum, weight_sum).

Why sums and not means: a mean of per-device (or per-host, per-micro-batch)
means is wrong when the shards hold different numbers of real tokens. Summing
numerators and denominators everywhere and dividing once at the end gives the
exact average. `mean` does that division.

All losses work in float32 whatever the logits' dtype, so logits of +-1e4 in
bfloat16 give finite values and gradients.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
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
      CE(q, p) = log Z - sum_k q_k logit_k
               = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k).
  The eps / K goes to every class, PAD included: the paper's uniform prior
  u(k) = 1/K (sec. 5.4, after Szegedy et al. 2016) and optax's convention.
  Tensor2Tensor and the Flax WMT example spread eps over the K - 1 classes
  other than PAD instead; for a vocabulary of thousands the two differ by
  eps / K on one class, far below run-to-run noise, so only one is offered.
  This form needs no [..., K] one-hot array. We subtract the entropy H(q),
  the smallest value CE(q, .) can take, so that a prediction equal to q scores
  exactly 0 and the smoothed loss stays comparable with the unsmoothed one.

  The gradient is written by hand (`_token_cross_entropy`): p - q per token,
  one fused pass over the logits. Weights are constants (no gradient).

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
  weights = jax.lax.stop_gradient(_weights_like(targets, weights))
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[targets]
  loss = _token_cross_entropy(logits, targets, float(label_smoothing),
                              float(z_loss))
  loss = loss - smoothed_entropy(label_smoothing, logits.shape[-1])
  return jnp.sum(loss * weights), jnp.sum(weights)


def _smoothed_logit_and_log_z(logits: Array, targets: Array, eps: float):
  """(sum_k q_k logit_k, log Z), float32 [...]; reads the logits twice."""
  x = logits.astype(jnp.float32)
  peak = jax.lax.stop_gradient(jnp.max(x, axis=-1))
  log_z = peak + jnp.log(jnp.sum(jnp.exp(x - peak[..., None]), axis=-1))
  target = jnp.take_along_axis(x, targets[..., None], axis=-1)[..., 0]
  smoothed = (1.0 - eps) * target
  if eps:
    smoothed = smoothed + eps * jnp.mean(x, axis=-1)
  return smoothed, log_z


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _token_cross_entropy(logits: Array, targets: Array, eps: float,
                         z_loss: float) -> Array:
  """CE(q, softmax(logits)) + z_loss * log(Z)^2 per token, float32 [...]."""
  return _token_cross_entropy_fwd(logits, targets, eps, z_loss)[0]


def _token_cross_entropy_fwd(logits, targets, eps, z_loss):
  smoothed, log_z = _smoothed_logit_and_log_z(logits, targets, eps)
  loss = log_z - smoothed + z_loss * jnp.square(log_z)
  return loss, (logits, targets, log_z)


def _token_cross_entropy_bwd(eps, z_loss, residuals, g):
  # d/dlogit_k = p_k (1 + 2 z_loss log Z) - q_k, with p recomputed from the
  # logits and log Z: no [..., K] softmax or one-hot array is kept from the
  # forward pass, and the off-target part is one fused pass that writes the
  # gradient in the logits' dtype. The target's own entry, where q_y holds
  # the (1 - eps), is computed apart (in float32) and scattered in: one
  # element per token. (A select against an iota in the big pass instead
  # kept XLA:CPU from fusing it with the matmuls: slower steps, README,
  # "Speed on CPU".)
  logits, targets, log_z = residuals
  scale = g * (1.0 + 2.0 * z_loss * log_z)
  off_target = g * (eps / logits.shape[-1])
  p = jnp.exp(logits.astype(jnp.float32) - log_z[..., None])
  grad = (scale[..., None] * p - off_target[..., None]).astype(logits.dtype)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)
  target_p = jnp.exp(target_logit[..., 0].astype(jnp.float32) - log_z)
  target_grad = scale * target_p - off_target - (1.0 - eps) * g
  grad = jnp.put_along_axis(grad, targets[..., None],
                            target_grad[..., None].astype(logits.dtype),
                            axis=-1, inplace=False)
  return grad, None


_token_cross_entropy.defvjp(_token_cross_entropy_fwd, _token_cross_entropy_bwd)


def smoothed_entropy(label_smoothing: float, num_classes: int) -> float:
  """H(q) for q = (1 - eps) * onehot + eps / K: the floor of the smoothed loss."""
  eps, k = float(label_smoothing), int(num_classes)
  if eps == 0.0:
    return 0.0
  high = 1.0 - eps + eps / k
  low = eps / k
  return -(high * math.log(high) + (k - 1) * low * math.log(low))


def balanced_class_weights(counts) -> np.ndarray:
  """n / (K * count_k) per class: sklearn's compute_class_weight('balanced').

  Each class then carries the same total weight n / K, and the weights
  average to 1 over the training examples (sum_k count_k w_k = n).

  Args:
    counts: [K] training examples per class, e.g.
      np.bincount(labels, minlength=K).
  Returns:
    [K] float64 weights, for `class_weights=` of the losses here.
  """
  counts = checked_counts(counts, 'balanced class weights')
  return counts.sum() / (counts.size * counts)


def checked_counts(counts, what: str) -> np.ndarray:
  """[K] training counts as float64; ValueError unless every one is > 0.

  Args:
    counts: [K] training examples per class.
    what: what needs them, for the message ('balanced class weights').
  """
  counts = np.asarray(counts)
  if counts.ndim != 1 or counts.size == 0:
    raise ValueError(f'counts must be a non-empty [K] array, got shape '
                     f'{counts.shape}')
  empty = np.flatnonzero(counts <= 0)
  if empty.size:
    raise ValueError(f'{what} need every class in the training data; '
                     f'classes {empty.tolist()} have counts '
                     f'{counts[empty].tolist()}')
  return counts.astype(np.float64)


def effective_number_weights(counts, beta: float) -> np.ndarray:
  """Class-balanced weights by the effective number of samples (Cui et al.
  2019): w_k proportional to 1 / E_{n_k} = (1 - beta) / (1 - beta^{n_k}),
  normalised so that sum_k w_k = K (the paper's normalisation).

  E_n = (1 - beta^n) / (1 - beta) (their Proposition 1) is 1 at beta = 0,
  so every class weighs 1, and tends to n as beta -> 1, so the weights tend
  to balanced_class_weights' 1 / n_k up to a constant factor.

  Args:
    counts: [K] training examples per class, every one > 0.
    beta: in [0, 1); the paper tries 0.9 ... 0.9999.
  Returns:
    [K] float64 weights summing to K, for `class_weights=` of the losses.
  """
  n = checked_counts(counts, 'effective-number class weights')
  if not 0.0 <= beta < 1.0:
    raise ValueError(f'beta must be in [0, 1), got {beta}')
  # 1 - beta^n as -expm1(n log beta): exact where beta^n is close to 1 (beta
  # near 1, small n), where 1 - beta**n would lose its digits.
  with np.errstate(divide='ignore'):  # beta = 0: log 0 = -inf, beta^n = 0
    one_minus_power = -np.expm1(n * np.log(beta))
  inverse = (1.0 - beta) / one_minus_power  # 1 / E_{n_k}, [K]
  return inverse * (n.size / inverse.sum())


def deferred_class_weights(class_weights: Array, step: Array | None,
                           start: int) -> Array:
  """Deferred re-weighting (Cao et al. 2019, sec. 3.3): every class weighs 1
  before update `start`, `class_weights` from it on.

  Args:
    class_weights: [K] per-class weights.
    step: int scalar, the updates so far (traceable); None = after `start`
      (the weights as they end training).
    start: the first update that uses the class weights; 0 = always.
  Returns:
    [K] float32 weights.
  """
  class_weights = jnp.asarray(class_weights, jnp.float32)
  if step is None or start <= 0:
    return class_weights
  return jnp.where(step >= start, class_weights, jnp.ones_like(class_weights))


def log_prior(counts) -> np.ndarray:
  """[K] log pi_k = log(n_k / n) of the training counts, float64."""
  n = checked_counts(counts, 'class priors')
  return np.log(n / n.sum())


def logit_adjusted_cross_entropy(
    logits: Array, targets: Array, weights: Array | None = None, *,
    counts, tau: float = 1.0, class_weights: Array | None = None
) -> tuple[Array, Array]:
  """Logit-adjusted softmax cross-entropy (Menon et al. 2021, eq. 10):
      -log [exp(f_y + tau log pi_y) / sum_k exp(f_k + tau log pi_k)]
  with pi = counts / n, the training prior: the rare classes' logits must
  win by more, so that argmax_k f_k (no prior added at prediction) aims at
  the balanced error (consistent for it at tau = 1). tau = 0 is plain CE;
  no label smoothing, which is cross_entropy's alone.

  Args:
    logits: [..., K] scores f (any float dtype; computed in float32).
    targets: [...] integer class ids in [0, K).
    weights: [...] per-example weights; 0 for padding. None = all ones.
    counts: [K] training examples per class, every one > 0.
    tau: the adjustment's temperature, >= 0.
    class_weights: [K] per-class weights, as in cross_entropy.
  Returns:
    (loss_sum, weight_sum), float32 scalars.
  """
  shift = jnp.asarray(tau * log_prior(counts), jnp.float32)  # [K]
  return cross_entropy(logits.astype(jnp.float32) + shift, targets, weights,
                       class_weights=class_weights)


def balanced_softmax(logits: Array, targets: Array,
                     weights: Array | None = None, *, counts,
                     class_weights: Array | None = None
                     ) -> tuple[Array, Array]:
  """Balanced Softmax (Ren et al. 2020, eq. 4): cross-entropy of
  p_y = n_y exp(f_y) / sum_k n_k exp(f_k), i.e. of the logits f + log n.

  log n_k = log pi_k + log n, and the softmax ignores the constant log n:
  this is logit_adjusted_cross_entropy with tau = 1, value and gradient.

  Args: as logit_adjusted_cross_entropy, without tau.
  Returns:
    (loss_sum, weight_sum), float32 scalars.
  """
  shift = jnp.asarray(np.log(checked_counts(counts, 'balanced softmax')),
                      jnp.float32)  # [K]
  return cross_entropy(logits.astype(jnp.float32) + shift, targets, weights,
                       class_weights=class_weights)


def ldam_margins(counts, max_margin: float) -> np.ndarray:
  """[K] LDAM margins Delta_k = C / n_k^(1/4) (Cao et al. 2019, eq. 13),
  C chosen so that the largest, the rarest class's, is max_margin; float64."""
  n = checked_counts(counts, 'LDAM margins')
  inverse_root = n ** -0.25
  return max_margin * inverse_root / inverse_root.max()


def ldam(logits: Array, targets: Array, weights: Array | None = None, *,
         counts, max_margin: float = 0.5, scale: float = 1.0,
         class_weights: Array | None = None) -> tuple[Array, Array]:
  """LDAM loss (Cao et al. 2019, eq. 13): cross-entropy after the target's
  logit is lowered by its class's margin Delta_y = C / n_y^(1/4):
      -log [exp(s (z_y - Delta_y)) /
            (exp(s (z_y - Delta_y)) + sum_{j != y} exp(s z_j))].

  scale s: the authors' code multiplies by s = 30 because its logits are
  cosines of normalised features and weights, in [-1, 1], where a margin of
  0.5 is large. Our head is an unnormalised linear layer whose logits have
  no fixed range, so s = 30 would only multiply the logits and gradients
  by 30; the default s = 1 is eq. 13 as written, the margin in logit units.
  (Unnormalised, the model can make any margin relatively small by growing
  its logits, as with the hinge's margin of 1; the margins still favour the
  rare classes over the frequent ones at any scale.)

  Args:
    logits: [..., K] scores z (any float dtype; computed in float32).
    targets: [...] integer class ids in [0, K).
    weights: [...] per-example weights; 0 for padding. None = all ones.
    counts: [K] training examples per class, every one > 0.
    max_margin: the largest margin (the rarest class's), > 0.
    scale: s, multiplying the margin-adjusted logits.
    class_weights: [K] per-class weights, as in cross_entropy (LDAM-DRW:
      deferred_class_weights of effective_number_weights).
  Returns:
    (loss_sum, weight_sum), float32 scalars.
  """
  margins = jnp.asarray(ldam_margins(counts, max_margin), jnp.float32)  # [K]
  x = logits.astype(jnp.float32)
  is_target = jax.nn.one_hot(targets, x.shape[-1], dtype=jnp.float32)
  x = x - is_target * margins[targets][..., None]  # [..., K]
  return cross_entropy(scale * x, targets, weights,
                       class_weights=class_weights)


def _class_weighted(targets: Array, weights: Array | None,
                    class_weights: Array | None) -> Array:
  """Per-example weights [...] times class_weights[target] (no gradient)."""
  weights = jax.lax.stop_gradient(_weights_like(targets, weights))
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[targets]
  return weights


def focal_loss(logits: Array, targets: Array, weights: Array | None = None,
               *, gamma: float = 2.0,
               class_weights: Array | None = None) -> tuple[Array, Array]:
  """Softmax focal loss -(1 - p_y)^gamma log p_y (Lin et al. 2017, eq. 5).

  optax has only the sigmoid (binary) form, sigmoid_focal_loss; this is its
  multi-class softmax counterpart. gamma = 0 is cross-entropy. The paper's
  alpha_t is `class_weights` (applied to loss and weight, as in
  cross_entropy). (1 - p_y)^gamma is computed as exp(gamma * log(1 - p_y))
  with log(1 - p_y) = logsumexp_{k != y} logit_k - log Z: exact and finite
  when p_y rounds to 1 in float32, where 1 - p_y or expm1 would give 0 and a
  NaN gradient for gamma < 1.

  Args:
    logits: [..., K] scores (any float dtype; computed in float32).
    targets: [...] integer class ids in [0, K), K >= 2.
    weights: [...] per-example weights; 0 for padding. None = all ones.
    gamma: focusing parameter >= 0.
    class_weights: [K] per-class weights (alpha_t), or None.
  Returns:
    (loss_sum, weight_sum), float32 scalars.
  """
  weights = _class_weighted(targets, weights, class_weights)
  x = logits.astype(jnp.float32)  # [..., K]
  log_z = jax.nn.logsumexp(x, axis=-1)
  is_target = jax.nn.one_hot(targets, x.shape[-1], dtype=jnp.bool_)
  log_p = jnp.sum(jnp.where(is_target, x, 0.0), axis=-1) - log_z
  others = jax.nn.logsumexp(jnp.where(is_target, -jnp.inf, x), axis=-1)
  loss = -jnp.exp(gamma * (others - log_z)) * log_p  # [...]
  return jnp.sum(loss * weights), jnp.sum(weights)


def multiclass_hinge(logits: Array, targets: Array,
                     weights: Array | None = None, *,
                     class_weights: Array | None = None
                     ) -> tuple[Array, Array]:
  """Crammer-Singer multi-class hinge: max(0, max_{k != y} (1 + s_k) - s_y).

  optax.multiclass_hinge_loss computes max_k (s_k + 1 - [k = y]) - s_y; the
  k = y term is s_y, so this is exactly the clipped Crammer-Singer form
  (0 once the target's score beats every other by a margin of 1).

  Args:
    logits: [..., K] scores s (any float dtype; computed in float32).
    targets: [...] integer class ids in [0, K).
    weights: [...] per-example weights; 0 for padding. None = all ones.
    class_weights: [K] per-class weights, as in cross_entropy.
  Returns:
    (loss_sum, weight_sum), float32 scalars.
  """
  weights = _class_weighted(targets, weights, class_weights)
  loss = optax.losses.multiclass_hinge_loss(logits.astype(jnp.float32),
                                            targets)
  return jnp.sum(loss * weights), jnp.sum(weights)


def binary_log_loss(logits: Array, labels: Array,
                    weights: Array | None = None, *,
                    pos_weight: Array | float | None = None
                    ) -> tuple[Array, Array]:
  """-[y log sigmoid(x) + (1 - y) log sigmoid(-x)]: (sum, weight sum).

  Binary: logits, labels, weights [B]. Multi-label (independent sigmoids):
  logits, labels [B, K] with per-example weights [B]; an example's loss is
  the MEAN over its K labels, so the weighted mean of the sums equals
  sklearn's log_loss averaged over labels (metrics.classification_metrics
  with multi_label=True) and PyTorch's BCEWithLogitsLoss(reduction='mean').
  weights of the labels' own shape (or None) weight each element instead.

  Args:
    logits: [...] scores; labels: [...] in {0, 1} (or soft labels in [0, 1]).
    weights: [...] of the labels' shape, or their leading dims ([B]).
    pos_weight: scales the positive term only, -pos_weight * y log sigmoid(x)
      (PyTorch's pos_weight; the denominator is unchanged): a scalar or [K]
      per label, e.g. negatives / positives per label against imbalance.
  """
  loss_fn = optax.sigmoid_binary_cross_entropy
  if pos_weight is not None:
    loss_fn = functools.partial(_pos_weighted_sigmoid_cross_entropy,
                                pos_weight=pos_weight)
  return _elementwise_loss(loss_fn, logits, labels, weights)


def _pos_weighted_sigmoid_cross_entropy(logits, labels, *, pos_weight):
  # optax's loss plus (pos_weight - 1) times its positive term -y log p.
  extra = -labels * jax.nn.log_sigmoid(logits)
  pos_weight = jnp.asarray(pos_weight, jnp.float32)
  return (optax.sigmoid_binary_cross_entropy(logits, labels)
          + (pos_weight - 1.0) * extra)


def mean_squared_error(predictions: Array, targets: Array,
                       weights: Array | None = None) -> tuple[Array, Array]:
  """(prediction - target)^2: (sum, weight sum). No 1/2 factor.

  Several outputs: predictions, targets [B, D] with weights [B]: an
  example's loss is the mean over its D outputs, so the mean equals
  sklearn's mean_squared_error (multioutput='uniform_average').
  """
  return _elementwise_loss(optax.squared_error, predictions, targets, weights)


def huber(predictions: Array, targets: Array, weights: Array | None = None,
          *, delta: float = 1.0) -> tuple[Array, Array]:
  """optax.huber_loss: (sum, weight sum); shapes and weights as for MSE.

  Per element, with e = prediction - target:
    0.5 e^2                          if |e| <= delta
    0.5 delta^2 + delta (|e| - delta) otherwise
  (PyTorch's HuberLoss; not divided by delta as SmoothL1Loss is). Its
  gradient is e clipped to [-delta, delta].
  """
  if predictions.shape != targets.shape:  # optax would broadcast [B, 1], [B]
    raise ValueError(f'predictions {predictions.shape} and targets '
                     f'{targets.shape} differ in shape')
  return _elementwise_loss(functools.partial(optax.huber_loss, delta=delta),
                           predictions, targets, weights)


def _elementwise_loss(loss_fn: Callable[[Array, Array], Array],
                      predictions: Array, targets: Array,
                      weights: Array | None) -> tuple[Array, Array]:
  """(sum of weighted loss_fn(predictions, targets) in float32, weight sum).

  Weights of the loss's shape (or None) weight each element; weights of its
  leading dims ([B] for a [B, D] loss) weight examples, whose loss is the
  mean over the remaining dims.
  """
  loss = loss_fn(predictions.astype(jnp.float32), targets.astype(jnp.float32))
  weights = _weights_like(loss, weights)
  if weights.shape != loss.shape[:weights.ndim]:
    raise ValueError(f'weights {weights.shape} must have the shape of the '
                     f'loss {loss.shape} or of its leading dims')
  if weights.ndim < loss.ndim:
    loss = jnp.mean(loss, axis=tuple(range(weights.ndim, loss.ndim)))
  return jnp.sum(loss * weights), jnp.sum(weights)


def next_token_loss(logits: Array, targets: Array, weights: Array, *,
                    label_smoothing: float = 0.0, z_loss: float = 0.0):
  """The objective of a model trained on next tokens (translation, language
  models) as (loss_sum, (weight_sum, {'nll': (sum, weight_sum)})): the
  training loss (label-smoothed, with z-loss) and the plain negative
  log-likelihood, whose exponentiated mean is the perplexity."""
  loss, weight = cross_entropy(logits, targets, weights,
                               label_smoothing=label_smoothing, z_loss=z_loss)
  nll = loss
  if label_smoothing or z_loss:
    nll, _ = cross_entropy(logits, targets, weights)
  return loss, (weight, {'nll': (nll, weight)})


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
