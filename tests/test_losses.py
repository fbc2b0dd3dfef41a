"""Losses against hand-computed values and NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transformer import losses

K = 11


def np_log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def np_cross_entropy(logits, targets, weights, eps=0.0, class_weights=None):
  """Per token: -sum_k q_k log p_k, q = (1-eps) onehot + eps/K, minus H(q)."""
  logp = np_log_softmax(logits)
  k = logits.shape[-1]
  q = (1 - eps) * np.eye(k)[targets] + eps / k
  entropy = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0), -1)
  per_token = -np.sum(q * logp, -1) - entropy
  w = np.asarray(weights, np.float64)
  if class_weights is not None:
    w = w * np.asarray(class_weights)[targets]
  return np.sum(per_token * w), np.sum(w)


def random_case(seed, shape=(3, 5)):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=3.0, size=shape + (K,)).astype(np.float32)
  targets = rng.integers(0, K, shape)
  weights = (rng.random(shape) < 0.7).astype(np.float32)
  return logits, targets, weights


def test_textbook_cross_entropy():
  # Predicted [0.1, 0.7, 0.2], true class 1: -ln 0.7 = 0.3567.
  logits = jnp.log(jnp.array([[0.1, 0.7, 0.2]]))
  total, weight = losses.cross_entropy(logits, jnp.array([1]))
  assert weight == 1.0
  assert total == pytest.approx(0.357, abs=5e-4)
  assert total == pytest.approx(-np.log(0.7), rel=1e-6)


@pytest.mark.parametrize('eps', [0.0, 0.1, 0.3])
@pytest.mark.parametrize('weighted', [False, True])
def test_cross_entropy_matches_numpy(eps, weighted):
  logits, targets, weights = random_case(0)
  class_weights = np.linspace(0.5, 2.0, K) if weighted else None
  total, weight = losses.cross_entropy(
      jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights),
      label_smoothing=eps,
      class_weights=None if class_weights is None else jnp.asarray(class_weights))
  want_total, want_weight = np_cross_entropy(logits, targets, weights, eps,
                                             class_weights)
  np.testing.assert_allclose(total, want_total, rtol=1e-5)
  np.testing.assert_allclose(weight, want_weight, rtol=1e-6)


def test_label_smoothing_agrees_with_optax_smooth_labels():
  logits, targets, _ = random_case(1)
  eps = 0.1
  smoothed = optax.smooth_labels(jax.nn.one_hot(targets, K), eps)
  reference = optax.softmax_cross_entropy(logits, smoothed).sum()
  floor = losses.smoothed_entropy(eps, K) * targets.size
  total, _ = losses.cross_entropy(logits, targets, label_smoothing=eps)
  np.testing.assert_allclose(total, reference - floor, rtol=1e-5)


def test_perfect_smoothed_prediction_scores_zero():
  eps, targets = 0.1, jnp.array([0, 3, 7])
  q = (1 - eps) * jax.nn.one_hot(targets, K) + eps / K
  total, _ = losses.cross_entropy(jnp.log(q), targets, label_smoothing=eps)
  assert abs(float(total)) < 1e-5
  # Any other prediction scores more.
  worse, _ = losses.cross_entropy(jnp.log(q) + jax.nn.one_hot(targets, K),
                                  targets, label_smoothing=eps)
  assert worse > 1e-3


def test_padded_tokens_contribute_exactly_zero():
  logits, targets, weights = random_case(2)
  total, weight = losses.cross_entropy(logits, targets, weights,
                                       label_smoothing=0.1, z_loss=1e-4)
  rng = np.random.default_rng(3)
  pad = weights == 0
  other_logits = np.where(pad[..., None], rng.normal(size=logits.shape) * 50,
                          logits).astype(np.float32)
  other_targets = np.where(pad, rng.integers(0, K, targets.shape), targets)
  total2, weight2 = losses.cross_entropy(other_logits, other_targets, weights,
                                         label_smoothing=0.1, z_loss=1e-4)
  real_only, _ = losses.cross_entropy(logits[~pad], targets[~pad],
                                      label_smoothing=0.1, z_loss=1e-4)
  # Both sides below come from the code under test: NaN would equal NaN.
  assert np.all(np.isfinite([float(total), float(total2), float(real_only)]))
  assert float(total2) == float(total) and float(weight2) == float(weight)
  np.testing.assert_allclose(total, real_only, rtol=1e-6)
  assert weight == pad.size - pad.sum()


def test_gradient_is_softmax_minus_one_hot():
  logits, targets, _ = random_case(4)
  grad = jax.grad(lambda x: losses.cross_entropy(x, targets)[0])(logits)
  want = np.exp(np_log_softmax(logits)) - np.eye(K)[targets]
  np.testing.assert_allclose(grad, want, atol=1e-6)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_hand_written_gradient_matches_finite_differences(dtype):
  """Smoothed, weighted, class-weighted, z-loss: grad against a float64
  central difference of the NumPy loss (the VJP is written by hand)."""
  logits, targets, weights = random_case(9, shape=(2, 3))
  logits = np.asarray(jnp.asarray(logits, dtype), np.float64)
  class_weights = np.linspace(0.5, 1.5, K)
  eps, z = 0.1, 1e-2

  def np_loss(x):
    total, _ = np_cross_entropy(x, targets, weights, eps, class_weights)
    log_z = np.log(np.exp(x).sum(-1))
    w = weights * class_weights[targets]
    return total + z * np.sum(log_z**2 * w)

  want = np.zeros_like(logits)
  for index in np.ndindex(logits.shape):
    step = np.zeros_like(logits)
    step[index] = 1e-5
    want[index] = (np_loss(logits + step) - np_loss(logits - step)) / 2e-5
  grad = jax.grad(lambda x: losses.cross_entropy(
      x, targets, weights, label_smoothing=eps, class_weights=class_weights,
      z_loss=z)[0])(jnp.asarray(logits, dtype))
  assert grad.dtype == dtype
  tolerance = 1e-5 if dtype == jnp.float32 else 1e-2
  np.testing.assert_allclose(np.asarray(grad, np.float64), want,
                             atol=tolerance)


def test_z_loss_adds_log_z_squared():
  logits, targets, weights = random_case(5)
  coefficient = 1e-3
  with_z, _ = losses.cross_entropy(logits, targets, weights, z_loss=coefficient)
  plain, _ = losses.cross_entropy(logits, targets, weights)
  z = np.log(np.exp(np.asarray(logits, np.float64)).sum(-1))
  np.testing.assert_allclose(with_z - plain,
                             coefficient * np.sum(z**2 * weights), rtol=1e-4)


def test_binary_log_loss_and_mse_match_numpy():
  rng = np.random.default_rng(6)
  x = rng.normal(scale=3, size=(4, 6)).astype(np.float32)
  y = (rng.random((4, 6)) < 0.5).astype(np.float32)
  w = (rng.random((4, 6)) < 0.8).astype(np.float32)
  p = 1 / (1 + np.exp(-x.astype(np.float64)))
  want = -np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p)))
  total, weight = losses.binary_log_loss(x, y, w)
  np.testing.assert_allclose(total, want, rtol=1e-5)
  assert weight == w.sum()
  target = rng.normal(size=(4, 6)).astype(np.float32)
  total, weight = losses.mean_squared_error(x, target, w)
  np.testing.assert_allclose(total, np.sum(w * (x - target) ** 2), rtol=1e-5)


def test_accuracy_and_perplexity():
  logits, targets, weights = random_case(7)
  correct, weight = losses.token_accuracy(logits, targets, weights)
  assert correct == np.sum((logits.argmax(-1) == targets) * weights)
  nll, weight = losses.cross_entropy(logits, targets, weights)
  want_nll, _ = np_cross_entropy(logits, targets, weights)
  np.testing.assert_allclose(losses.perplexity(nll, weight),
                             np.exp(want_nll / weights.sum()), rtol=1e-5)
  assert losses.mean(jnp.array(3.0), jnp.array(0.0)) == 0.0


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_extreme_logits_stay_finite(dtype):
  logits = jnp.array([[1e4, -1e4, 0.0, -1e4], [-1e4, -1e4, -1e4, 1e4]], dtype)
  targets = jnp.array([1, 3])

  def total(x):
    ce = losses.cross_entropy(x, targets, label_smoothing=0.1, z_loss=1e-4)[0]
    return ce + losses.binary_log_loss(x[:, 0], jnp.array([0.0, 1.0]))[0]

  value, grad = jax.value_and_grad(total)(logits)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad, np.float32)))
  # The first token puts all mass on class 0 and the target scores the
  # minimum: loss = x_0 - x_1 (1e4 is 9984 in bfloat16).
  plain, _ = losses.cross_entropy(logits[:1], targets[:1])
  x = np.asarray(logits, np.float64)
  np.testing.assert_allclose(plain, x[0, 0] - x[0, 1], rtol=1e-6)
