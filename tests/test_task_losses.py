"""Classification and regression losses against NumPy and sklearn references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import mean_squared_error as sk_mse
from sklearn.utils.class_weight import compute_class_weight

from transformer import losses

B, K = 24, 5


def assert_close(got, want, rtol=1e-5, atol=0.0):
  """assert_allclose, which counts NaN == NaN, after checking finiteness."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert np.all(np.isfinite(got)), got
  assert np.all(np.isfinite(want)), want
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def np_log_softmax(logits):
  x = np.asarray(logits, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_sigmoid(x):
  return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def case(seed, k=K):
  """logits [B, k] float32, targets [B], weights [B] with zeros (padding)."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=(B, k)).astype(np.float32)
  targets = rng.integers(0, k, B)
  weights = (rng.random(B) < 0.75).astype(np.float32)
  return logits, targets, weights


def test_class_weighted_cross_entropy_matches_numpy():
  logits, targets, weights = case(0)
  class_weights = np.array([0.5, 1.0, 2.0, 3.0, 0.25])
  total, weight = losses.cross_entropy(logits, targets, weights,
                                       class_weights=class_weights)
  # Weighted mean as sklearn / PyTorch: sum w_i c_yi l_i / sum w_i c_yi.
  w = weights * class_weights[targets]
  nll = -np_log_softmax(logits)[np.arange(B), targets]
  assert_close(total, np.sum(w * nll))
  assert_close(weight, np.sum(w))
  assert_close(losses.mean(total, weight), np.sum(w * nll) / np.sum(w))


def test_balanced_class_weights_match_sklearn():
  rng = np.random.default_rng(1)
  labels = rng.choice(K, size=500, p=[0.5, 0.2, 0.15, 0.1, 0.05])
  counts = np.bincount(labels, minlength=K)
  got = losses.balanced_class_weights(counts)
  assert_close(got, compute_class_weight('balanced', classes=np.arange(K),
                                         y=labels), rtol=1e-12)
  assert_close(got, len(labels) / (K * counts), rtol=1e-12)
  # Each class carries n / K of the total weight.
  assert_close(got * counts, np.full(K, len(labels) / K), rtol=1e-12)


def test_balanced_weights_in_cross_entropy_match_numpy():
  logits, targets, weights = case(2)
  class_weights = losses.balanced_class_weights(np.bincount(targets,
                                                            minlength=K))
  total, weight = losses.cross_entropy(logits, targets, weights,
                                       class_weights=class_weights)
  w = weights * len(targets) / (K * np.bincount(targets)[targets])
  nll = -np_log_softmax(logits)[np.arange(B), targets]
  assert_close(losses.mean(total, weight), np.sum(w * nll) / np.sum(w))


@pytest.mark.parametrize('counts', [[3, 0, 2, 0], [4, -1]])
def test_balanced_class_weights_reject_empty_classes(counts):
  with pytest.raises(ValueError, match='every class'):
    losses.balanced_class_weights(counts)


def test_focal_with_gamma_zero_is_cross_entropy():
  logits, targets, weights = case(3)
  class_weights = np.linspace(0.5, 2.0, K)
  for cw in (None, class_weights):
    focal = losses.focal_loss(logits, targets, weights, gamma=0.0,
                              class_weights=cw)
    ce = losses.cross_entropy(logits, targets, weights, class_weights=cw)
    assert_close(focal, ce, rtol=1e-6)


@pytest.mark.parametrize('gamma', [0.5, 2.0, 5.0])
def test_focal_matches_numpy(gamma):
  logits, targets, weights = case(4)
  class_weights = np.linspace(0.5, 2.0, K)
  total, weight = losses.focal_loss(logits, targets, weights, gamma=gamma,
                                    class_weights=class_weights)
  p = np.exp(np_log_softmax(logits))[np.arange(B), targets]
  w = weights * class_weights[targets]
  assert_close(total, np.sum(w * -(1 - p) ** gamma * np.log(p)))
  assert_close(weight, np.sum(w))


def test_hinge_on_a_hand_example():
  # Scores [2, 1, 0.5]: target 0 beats the runner-up 1 by exactly the
  # margin, loss max(0, 1 + 1 - 2) = 0; target 1: 1 + 2 - 1 = 2;
  # target 2: 1 + 2 - 0.5 = 2.5.
  scores = jnp.array([[2.0, 1.0, 0.5]] * 3)
  for target, want in [(0, 0.0), (1, 2.0), (2, 2.5)]:
    total, weight = losses.multiclass_hinge(scores[:1], jnp.array([target]))
    assert_close(total, want, atol=1e-7)
    assert weight == 1.0


def test_hinge_matches_numpy():
  logits, targets, weights = case(5)
  class_weights = np.linspace(0.5, 2.0, K)
  total, weight = losses.multiclass_hinge(logits, targets, weights,
                                          class_weights=class_weights)
  s = logits.astype(np.float64)
  others = np.where(np.eye(K, dtype=bool)[targets], -np.inf, s)
  want = np.maximum(0, np.max(1 + others, -1) - s[np.arange(B), targets])
  assert np.any(want == 0) and np.any(want > 0)  # both sides of the hinge
  w = weights * class_weights[targets]
  assert_close(total, np.sum(w * want))
  assert_close(weight, np.sum(w))


def test_binary_log_loss_mean_is_sklearn_log_loss():
  rng = np.random.default_rng(6)
  x = rng.normal(scale=2.0, size=B).astype(np.float32)
  y = (rng.random(B) < 0.4).astype(np.float32)
  w = (rng.random(B) < 0.7).astype(np.float32)
  assert_close(losses.mean(*losses.binary_log_loss(x, y)),
               sk_log_loss(y, np_sigmoid(x)))
  assert_close(losses.mean(*losses.binary_log_loss(x, y, w)),
               sk_log_loss(y, np_sigmoid(x), sample_weight=w))


def test_multi_label_log_loss_averages_sklearn_over_labels():
  rng = np.random.default_rng(7)
  x = rng.normal(scale=2.0, size=(B, K)).astype(np.float32)
  y = (rng.random((B, K)) < 0.3).astype(np.float32)
  w = (rng.random(B) < 0.7).astype(np.float32)  # per example, broadcast
  p = np_sigmoid(x)
  per_label = [sk_log_loss(y[:, k], p[:, k], labels=[0, 1], sample_weight=w)
               for k in range(K)]
  total, weight = losses.binary_log_loss(x, y, w)
  assert_close(weight, w.sum())
  assert_close(losses.mean(total, weight), np.mean(per_label))
  for k in range(K):  # one label alone is the binary case
    assert_close(losses.mean(*losses.binary_log_loss(x[:, k], y[:, k], w)),
                 per_label[k])
  # No weights: every element counts once, the same mean as weights of 1.
  assert_close(losses.mean(*losses.binary_log_loss(x, y)),
               losses.mean(*losses.binary_log_loss(x, y, np.ones(B))))


def test_pos_weight_matches_numpy():
  rng = np.random.default_rng(8)
  x = rng.normal(scale=2.0, size=(B, K)).astype(np.float32)
  y = (rng.random((B, K)) < 0.3).astype(np.float32)
  w = (rng.random(B) < 0.7).astype(np.float32)
  pos_weight = np.linspace(1.0, 4.0, K)
  total, weight = losses.binary_log_loss(x, y, w, pos_weight=pos_weight)
  p = np_sigmoid(x)
  per_element = -(pos_weight * y * np.log(p) + (1 - y) * np.log(1 - p))
  assert_close(total, np.sum(w * per_element.mean(-1)))
  assert_close(weight, w.sum())


def test_mse_gradient_is_two_errors_over_n():
  rng = np.random.default_rng(9)
  predictions = rng.normal(size=B).astype(np.float32)
  targets = rng.normal(size=B).astype(np.float32)
  grad = jax.grad(lambda p: losses.mean(*losses.mean_squared_error(
      p, targets)))(jnp.asarray(predictions))
  assert_close(grad, 2 * (predictions - targets) / B)


def test_multi_output_mse_averages_outputs():
  rng = np.random.default_rng(10)
  d = 3
  predictions = rng.normal(size=(B, d)).astype(np.float32)
  targets = rng.normal(size=(B, d)).astype(np.float32)
  w = (rng.random(B) < 0.7).astype(np.float32)
  mean = losses.mean(*losses.mean_squared_error(predictions, targets,
                                                np.ones(B)))
  assert_close(mean, sk_mse(targets, predictions))  # uniform_average
  grad = jax.grad(lambda p: losses.mean(*losses.mean_squared_error(
      p, targets, w)))(jnp.asarray(predictions))
  assert_close(grad, w[:, None] * 2 * (predictions - targets) / (d * w.sum()))


@pytest.mark.parametrize('delta', [0.5, 1.0, 2.0])
def test_huber_matches_numpy_on_both_sides_of_delta(delta):
  rng = np.random.default_rng(11)
  predictions = rng.normal(scale=2.0, size=(B, 2)).astype(np.float32)
  targets = rng.normal(size=(B, 2)).astype(np.float32)
  w = (rng.random(B) < 0.7).astype(np.float32)
  e = np.abs(predictions.astype(np.float64) - targets)
  assert np.sum(e <= delta) >= 5 and np.sum(e > delta) >= 5
  per_element = np.where(e <= delta, 0.5 * e**2,
                         0.5 * delta**2 + delta * (e - delta))
  total, weight = losses.huber(predictions, targets, w, delta=delta)
  assert_close(total, np.sum(w * per_element.mean(-1)))
  assert_close(weight, w.sum())
  grad = jax.grad(lambda p: losses.huber(p, targets, delta=delta)[0])(
      jnp.asarray(predictions))
  assert_close(grad, np.clip(predictions - targets, -delta, delta), atol=1e-6)


def test_shape_mistakes_raise():
  with pytest.raises(ValueError, match='shape'):
    losses.huber(jnp.zeros((4, 1)), jnp.zeros(4))
  with pytest.raises(ValueError, match='leading dims'):
    losses.binary_log_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)),
                           jnp.ones((4, 1)))


def all_losses(logits, targets, weights):
  """Every loss here on one batch: logits [b, K], targets [b]."""
  cw = np.linspace(0.5, 2.0, K)
  multi = (jax.nn.one_hot(targets, K) + (logits > 1.0)).clip(0, 1)
  regression = jnp.asarray(targets, jnp.float32)[:, None] * jnp.ones(K)
  return {
      'ce': losses.cross_entropy(logits, targets, weights, class_weights=cw),
      'focal': losses.focal_loss(logits, targets, weights, class_weights=cw),
      'hinge': losses.multiclass_hinge(logits, targets, weights,
                                       class_weights=cw),
      'binary': losses.binary_log_loss(logits[:, 0], targets % 2, weights),
      'multi_label': losses.binary_log_loss(logits, multi, weights,
                                            pos_weight=2.0),
      'mse': losses.mean_squared_error(logits, regression, weights),
      'huber': losses.huber(logits, regression, weights),
  }


def test_zero_weights_remove_examples_exactly():
  logits, targets, weights = case(12)
  rng = np.random.default_rng(13)
  # Padding rows with extreme scores: 0 * their loss must stay 0, not NaN.
  pad_logits = rng.choice([-1e4, 0.0, 1e4], size=(7, K)).astype(np.float32)
  padded = all_losses(np.concatenate([logits, pad_logits]),
                      np.concatenate([targets, rng.integers(0, K, 7)]),
                      np.concatenate([weights, np.zeros(7, np.float32)]))
  plain = all_losses(logits, targets, weights)
  for name in plain:
    got, want = np.asarray(padded[name]), np.asarray(plain[name])
    assert np.all(np.isfinite(got)), name
    # Summation order may differ by one rounding step, no more.
    np.testing.assert_allclose(got, want, rtol=2e-7, err_msg=name)


def test_bfloat16_inputs_give_finite_float32():
  logits, targets, weights = case(14)
  logits[0, :] = [1e4, -1e4, 0.0, -1e4, -1e4]  # the target's p rounds to 1
  logits[1, :] = [-1e4, 1e4, -1e4, -1e4, -1e4]  # ... and to 0
  targets[:2] = [0, 0]
  x = jnp.asarray(logits, jnp.bfloat16)
  results = all_losses(x, targets, weights)
  want = all_losses(jnp.asarray(x, jnp.float32), targets, weights)
  for name, (total, weight) in results.items():
    assert total.dtype == weight.dtype == jnp.float32, name
    assert_close(total, want[name][0], rtol=1e-6)

  def total_loss(x):
    return sum(t for t, _ in all_losses(x, targets, weights).values())

  grad = jax.grad(total_loss)(x)
  assert grad.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(grad, np.float32)))


@pytest.mark.parametrize('gamma', [0.0, 0.5, 2.0])
def test_focal_gradient_stays_finite_where_p_rounds_to_one(gamma):
  # d/dp (1 - p)^gamma is infinite at p = 1 for gamma < 1: computed as
  # 1 - p, it gives 0 * inf = NaN.
  x = jnp.array([[1e4, -1e4, 0.0], [30.0, 0.0, -5.0], [0.0, 1e4, 0.0]],
                jnp.bfloat16)
  targets = jnp.array([0, 0, 0])
  value, grad = jax.value_and_grad(
      lambda x: losses.focal_loss(x, targets, gamma=gamma)[0])(x)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad, np.float32)))
  # Rows 1 and 2 have p_y ~ 1, loss ~ 0. Row 3: p_0 = e^-1e4 underflows,
  # (1 - p_0)^gamma = 1 and -log p_0 = log Z - 0 = 1e4 (9984 in bfloat16).
  assert_close(value, 9984.0, rtol=1e-6)
