"""The losses against class imbalance (issue 23 §2), each against its paper's
equation written here in NumPy, and its gradient against jax.grad of the
same equation in jax.numpy: effective-number weights (Cui et al. 2019),
logit adjustment (Menon et al. 2021, eqs. 9 and 10), LDAM (Cao et al. 2019,
eq. 13) with deferred re-weighting (sec. 3.3), Balanced Softmax (Ren et al.
2020, eq. 4); then through the classification task, and trained end to end.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import tiny_classify
from transformer import losses
from transformer import train as train_lib
from transformer.config import (Config, ConfigError, DataConfig, EvalConfig,
                                ModelConfig, TrainConfig)
from transformer.tasks import labelled
from transformer.tasks.labelled import evaluate as labelled_evaluate
from transformer.tasks.labelled import pipeline as labelled_pipeline

B, K = 12, 4
COUNTS = np.array([400, 90, 16, 3])  # a long tail
CLASS_WEIGHTS = np.array([0.25, 1.0, 2.0, 4.0])


def assert_close(got, want, rtol=1e-5, atol=0.0):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert np.all(np.isfinite(got)), got
  assert np.all(np.isfinite(want)), want
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def case(seed):
  """logits [B, K] float32, targets [B] (every class), weights [B] with
  padding zeros and unequal values."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=(B, K)).astype(np.float32)
  targets = np.arange(B) % K
  weights = rng.choice([0.0, 0.5, 1.0, 2.0], size=B).astype(np.float32)
  weights[:2] = [0.0, 1.0]
  return logits, targets, weights


# ---------------------------------------------------------------------------
# The papers' equations, for xp = numpy (float64 values) or jax.numpy (their
# gradients by jax.grad). Each returns (sum of weighted losses, weight sum).
# ---------------------------------------------------------------------------


def weighted_sums(xp, loss, targets, weights, class_weights):
  w = weights * class_weights[targets]
  return xp.sum(w * loss), xp.sum(w)


def logit_adjusted_reference(xp, logits, targets, weights, counts, tau,
                             class_weights):
  """Menon et al. eq. 10: -log e^{f_y + tau log pi_y} / sum_k e^{f_k + tau
  log pi_k}, pi = n_k / n."""
  prior = counts / xp.sum(counts)
  z = xp.exp(logits + tau * xp.log(prior))  # [B, K]
  p = z[xp.arange(len(targets)), targets] / xp.sum(z, axis=-1)
  return weighted_sums(xp, -xp.log(p), targets, weights, class_weights)


def balanced_softmax_reference(xp, logits, targets, weights, counts,
                               class_weights):
  """Ren et al. eq. 4: p_y = n_y e^{f_y} / sum_k n_k e^{f_k}."""
  z = counts * xp.exp(logits)  # [B, K]
  p = z[xp.arange(len(targets)), targets] / xp.sum(z, axis=-1)
  return weighted_sums(xp, -xp.log(p), targets, weights, class_weights)


def ldam_reference(xp, logits, targets, weights, counts, max_margin, scale,
                   class_weights):
  """Cao et al. eq. 13: -log e^{s(z_y - D_y)} / (e^{s(z_y - D_y)} +
  sum_{j != y} e^{s z_j}), D_j = C / n_j^{1/4}, max_j D_j = max_margin."""
  c = max_margin * xp.min(counts) ** 0.25
  margin = c / counts ** 0.25  # [K]
  rows = xp.arange(len(targets))
  target = xp.exp(scale * (logits[rows, targets] - margin[targets]))
  is_target = np.eye(logits.shape[-1], dtype=bool)[targets]
  others = xp.sum(xp.where(is_target, 0.0, xp.exp(scale * logits)), axis=-1)
  loss = -xp.log(target / (target + others))
  return weighted_sums(xp, loss, targets, weights, class_weights)


def effective_number_reference(counts, beta):
  """Cui et al.: w_k = (1 - beta) / (1 - beta^{n_k}), scaled to sum to K."""
  w = (1.0 - beta) / (1.0 - beta ** np.asarray(counts, np.float64))
  return w * len(w) / w.sum()


def check_value_and_gradient(loss_fn, reference, logits, targets, weights):
  """loss_fn(logits) against reference(np, float64 logits), and the
  gradient of the mean against jax.grad of reference(jnp, .)."""
  total, weight = loss_fn(jnp.asarray(logits))
  want_total, want_weight = reference(np, logits.astype(np.float64))
  assert_close(total, want_total)
  assert_close(weight, want_weight, rtol=1e-6)
  grad = jax.grad(lambda x: losses.mean(*loss_fn(x)))(jnp.asarray(logits))
  want = jax.grad(lambda x: jnp.divide(*reference(jnp, x)))(
      jnp.asarray(logits))
  assert_close(grad, want, rtol=1e-4, atol=1e-7)
  assert np.all(np.asarray(grad)[weights == 0] == 0)  # padding: no gradient


# ---------------------------------------------------------------------------
# The losses and weights against the equations.
# ---------------------------------------------------------------------------


def test_effective_number_weights_on_a_hand_example():
  # counts [1, 2], beta 1/2: E_1 = 1, E_2 = (1 - 1/4) / (1/2) = 1.5, so
  # w ~ [1, 2/3], and scaled to sum to K = 2: [1.2, 0.8].
  assert_close(losses.effective_number_weights([1, 2], 0.5), [1.2, 0.8],
               rtol=1e-12)


@pytest.mark.parametrize('beta', [0.5, 0.9, 0.99, 0.999, 0.9999])
def test_effective_number_weights_match_the_formula(beta):
  got = losses.effective_number_weights(COUNTS, beta)
  assert_close(got, effective_number_reference(COUNTS, beta), rtol=1e-10)
  assert_close(got.sum(), K, rtol=1e-12)
  # The rarer, the heavier (at small beta the large classes tie: E_n ~ 1 /
  # (1 - beta) once beta^n ~ 0).
  assert np.all(np.diff(got) >= 0) and got[-1] > got[0]
  assert labelled.class_weights('effective_number', COUNTS.tolist(),
                                beta) == tuple(got)


def test_effective_number_weights_limits():
  # beta -> 0: E_n = 1 for every class, equal weights.
  assert_close(losses.effective_number_weights(COUNTS, 0.0), np.ones(K),
               rtol=1e-12)
  assert_close(losses.effective_number_weights(COUNTS, 1e-9), np.ones(K),
               rtol=1e-8)
  # beta -> 1: E_n -> n, the balanced weights n / (K n_k) up to a factor.
  near_one = losses.effective_number_weights(COUNTS, 1.0 - 1e-9)
  balanced = losses.balanced_class_weights(COUNTS)
  assert_close(near_one / near_one.sum(), balanced / balanced.sum(),
               rtol=1e-5)
  with pytest.raises(ValueError, match='beta'):
    losses.effective_number_weights(COUNTS, 1.0)
  with pytest.raises(ValueError, match='every class'):
    losses.effective_number_weights([3, 0, 2], 0.9)


@pytest.mark.parametrize('tau', [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize('weighted', [False, True])
def test_logit_adjusted_matches_menon_eq_10(tau, weighted):
  logits, targets, weights = case(0)
  cw = CLASS_WEIGHTS if weighted else np.ones(K)
  check_value_and_gradient(
      lambda x: losses.logit_adjusted_cross_entropy(
          x, targets, weights, counts=COUNTS, tau=tau,
          class_weights=cw if weighted else None),
      lambda xp, x: logit_adjusted_reference(
          xp, x, targets, weights, xp.asarray(COUNTS, x.dtype), tau,
          xp.asarray(cw, x.dtype)),
      logits, targets, weights)


def test_logit_adjusted_with_tau_zero_is_cross_entropy():
  logits, targets, weights = case(1)
  assert_close(losses.logit_adjusted_cross_entropy(
      logits, targets, weights, counts=COUNTS, tau=0.0),
               losses.cross_entropy(logits, targets, weights), rtol=1e-6)


@pytest.mark.parametrize('weighted', [False, True])
def test_balanced_softmax_matches_ren_eq_4(weighted):
  logits, targets, weights = case(2)
  cw = CLASS_WEIGHTS if weighted else np.ones(K)
  check_value_and_gradient(
      lambda x: losses.balanced_softmax(
          x, targets, weights, counts=COUNTS,
          class_weights=cw if weighted else None),
      lambda xp, x: balanced_softmax_reference(
          xp, x, targets, weights, xp.asarray(COUNTS, x.dtype),
          xp.asarray(cw, x.dtype)),
      logits, targets, weights)


def test_balanced_softmax_is_logit_adjustment_with_tau_one():
  # log n_k = log pi_k + log n: a shift of every logit the softmax ignores.
  logits, targets, weights = case(3)
  balanced = lambda x: losses.mean(*losses.balanced_softmax(
      x, targets, weights, counts=COUNTS))
  adjusted = lambda x: losses.mean(*losses.logit_adjusted_cross_entropy(
      x, targets, weights, counts=COUNTS, tau=1.0))
  x = jnp.asarray(logits)
  assert_close(balanced(x), adjusted(x), rtol=1e-6)
  assert_close(jax.grad(balanced)(x), jax.grad(adjusted)(x), rtol=1e-5,
               atol=1e-8)


def test_ldam_margins_on_a_hand_example():
  # n^{-1/4} of [16, 1, 81] is [1/2, 1, 1/3]; the largest margin (class 1,
  # the rarest) is max_margin = 0.5, so C = 0.5.
  assert_close(losses.ldam_margins([16, 1, 81], 0.5), [0.25, 0.5, 0.5 / 3],
               rtol=1e-12)


@pytest.mark.parametrize('max_margin', [0.5, 1.0])
@pytest.mark.parametrize('scale', [1.0, 3.0])
@pytest.mark.parametrize('weighted', [False, True])
def test_ldam_matches_cao_eq_13(max_margin, scale, weighted):
  logits, targets, weights = case(4)
  cw = CLASS_WEIGHTS if weighted else np.ones(K)
  check_value_and_gradient(
      lambda x: losses.ldam(x, targets, weights, counts=COUNTS,
                            max_margin=max_margin, scale=scale,
                            class_weights=cw if weighted else None),
      lambda xp, x: ldam_reference(
          xp, x, targets, weights, xp.asarray(COUNTS, x.dtype), max_margin,
          scale, xp.asarray(cw, x.dtype)),
      logits, targets, weights)


def test_ldam_with_equal_counts_is_cross_entropy_of_a_lowered_target():
  # Equal counts: every margin is max_margin, the target's logit lowered by
  # it; scale 1.
  logits, targets, weights = case(5)
  lowered = logits - 0.3 * np.eye(K, dtype=np.float32)[targets]
  assert_close(losses.ldam(logits, targets, weights, counts=[7] * K,
                           max_margin=0.3),
               losses.cross_entropy(lowered, targets, weights), rtol=1e-6)


def imbalance_losses(logits, targets, weights):
  return {
      'logit_adjusted': losses.logit_adjusted_cross_entropy(
          logits, targets, weights, counts=COUNTS, tau=1.5,
          class_weights=CLASS_WEIGHTS),
      'balanced_softmax': losses.balanced_softmax(
          logits, targets, weights, counts=COUNTS,
          class_weights=CLASS_WEIGHTS),
      'ldam': losses.ldam(logits, targets, weights, counts=COUNTS,
                          class_weights=CLASS_WEIGHTS),
  }


def test_padding_rows_change_nothing_even_at_extreme_scores():
  logits, targets, weights = case(6)
  pad = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4] * K], np.float32)
  padded = imbalance_losses(np.concatenate([logits, pad]),
                            np.concatenate([targets, [1, 3]]),
                            np.concatenate([weights, [0.0, 0.0]]))
  for name, want in imbalance_losses(logits, targets, weights).items():
    assert_close(padded[name], want, rtol=2e-7)


def test_bfloat16_extreme_logits_give_finite_values_and_gradients():
  logits, targets, weights = case(7)
  logits[0] = [1e4, -1e4, 0.0, -1e4]  # the target's p rounds to 1 ...
  logits[1] = [-1e4, -1e4, 1e4, -1e4]  # ... and to 0
  x = jnp.asarray(logits, jnp.bfloat16)
  for name in imbalance_losses(x, targets, weights):
    value, grad = jax.value_and_grad(
        lambda x, name=name: imbalance_losses(x, targets, weights)[name][0])(x)
    assert value.dtype == jnp.float32 and np.isfinite(float(value)), name
    assert grad.dtype == jnp.bfloat16, name
    assert np.all(np.isfinite(np.asarray(grad, np.float32))), name


def test_deferred_class_weights_switch_at_the_start_step():
  cw = jnp.asarray(CLASS_WEIGHTS, jnp.float32)
  at = jax.jit(lambda step: losses.deferred_class_weights(cw, step, 5))
  for step, want in [(0, np.ones(K)), (4, np.ones(K)), (5, CLASS_WEIGHTS),
                     (100, CLASS_WEIGHTS)]:
    assert_close(at(jnp.int32(step)), want, rtol=0)
  # No step (evaluation) or start 0: the class weights.
  assert_close(losses.deferred_class_weights(cw, None, 5), CLASS_WEIGHTS,
               rtol=0)
  assert_close(losses.deferred_class_weights(cw, jnp.int32(0), 0),
               CLASS_WEIGHTS, rtol=0)


# ---------------------------------------------------------------------------
# Through the classification task.
# ---------------------------------------------------------------------------

MODEL = ModelConfig(vocab_size=40, d_model=32, d_ff=64, num_heads=4,
                    num_encoder_layers=1, num_decoder_layers=0,
                    dropout_rate=0.0, max_length=32)
LABELS = ('a', 'b', 'c', 'd')


def config_with(eval_tau=0.0, **train):
  return Config(task='classification', model=MODEL,
                data=DataConfig(source='toy', max_length=16),
                train=TrainConfig(label_smoothing=0.0, **train),
                eval=EvalConfig(logit_adjust_tau=eval_tau))


def task_with(eval_tau=0.0, class_weights=None, **train):
  return labelled.Classification(config_with(eval_tau, **train), LABELS,
                                 class_weights, tuple(COUNTS.tolist()))


@pytest.mark.parametrize('loss', ['logit_adjusted', 'ldam',
                                  'balanced_softmax'])
def test_task_objective_uses_the_paper_loss_with_drw(loss):
  logits, targets, weights = case(8)
  cw = tuple(losses.effective_number_weights(COUNTS, 0.999).tolist())
  task = task_with(class_weights=cw, loss=loss, drw_start=10,
                   logit_adjust_tau=0.7, ldam_max_margin=0.4)
  reference = {
      'logit_adjusted': lambda c: logit_adjusted_reference(
          np, logits.astype(np.float64), targets, weights, COUNTS, 0.7, c),
      'balanced_softmax': lambda c: balanced_softmax_reference(
          np, logits.astype(np.float64), targets, weights, COUNTS, c),
      'ldam': lambda c: ldam_reference(
          np, logits.astype(np.float64), targets, weights, COUNTS, 0.4, 1.0,
          c)}[loss]
  objective = jax.jit(lambda step: task.objective(
      jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights),
      step=step))
  # Before drw_start every class weighs 1; from it on, the class weights;
  # evaluation (no step) weighs as at the end of training.
  for step, c in [(0, np.ones(K)), (9, np.ones(K)), (10, np.asarray(cw)),
                  (11, np.asarray(cw))]:
    total, (weight, _) = objective(jnp.int32(step))
    assert_close((total, weight), reference(c))
  total, (weight, metrics) = task.objective(
      jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
  assert_close((total, weight), reference(np.asarray(cw)))
  # The metrics stay unweighted and unadjusted: plain log loss.
  log_loss, count = metrics['log_loss']
  plain = logit_adjusted_reference(np, logits.astype(np.float64), targets,
                                   weights, COUNTS, 0.0, np.ones(K))
  assert_close((log_loss, count), plain)


def test_drw_defers_the_class_weights_of_cross_entropy_in_training():
  """loss_sums reads batch['step'] (train.py passes the updates so far)."""
  cw = tuple(CLASS_WEIGHTS.tolist())
  task = task_with(class_weights=cw, drw_start=3)
  params = task.init_params(jax.random.key(0))
  params['head']['kernel'] = jax.random.normal(
      jax.random.key(1), params['head']['kernel'].shape)
  inputs = np.random.default_rng(0).integers(4, 40, (B, 8)).astype(np.int32)
  targets = np.arange(B, dtype=np.int32) % K
  scores = np.asarray(task.scores(params, inputs), np.float64)
  sums = jax.jit(lambda step: task.loss_sums(
      params, {'inputs': inputs, 'labels': targets, 'step': step}, None))
  ones = np.ones(B, np.float32)
  for step, c in [(2, np.ones(K)), (3, CLASS_WEIGHTS)]:
    total, (weight, _) = sums(jnp.int32(step))
    assert_close((total, weight), logit_adjusted_reference(
        np, scores, targets, ones, COUNTS, 0.0, c), rtol=2e-5)


def test_post_hoc_logit_adjustment_changes_predictions_as_eq_9_says():
  # Prior [0.8, 0.1, 0.05, 0.05]: scores [1, 0, -0.5, -3] predict class a
  # unadjusted; minus log pi: [1.22, 2.30, 2.50, -0.00], so class c at tau 1.
  counts = (80, 10, 5, 5)
  scores = np.array([[1.0, 0.0, -0.5, -3.0], [0.0, 0.0, 5.0, 0.0]])
  log_prior = np.log(np.asarray(counts) / 100.0)
  for tau, want in [(0.0, ['a', 'c']), (1.0, ['c', 'c']), (0.4, ['a', 'c'])]:
    task = labelled.Classification(config_with(eval_tau=tau), LABELS, None,
                                   counts)
    adjusted = np.exp(scores - tau * log_prior)
    assert_close(task.probabilities(scores),
                 adjusted / adjusted.sum(1, keepdims=True), rtol=1e-12)
    predicted = [task.format_prediction(row).split('\t')[0]
                 for row in scores]
    assert predicted == want, tau
    accuracy = task.metrics(['c', 'c'], scores)['accuracy']
    assert accuracy == np.mean(np.array(want) == 'c')


def test_classification_needs_counts_for_the_imbalance_losses():
  task = labelled.Classification(config_with(loss='ldam'), LABELS)
  with pytest.raises(ValueError, match='training counts'):
    task.objective(jnp.zeros((2, K)), jnp.zeros(2, jnp.int32), jnp.ones(2))
  task = labelled.Classification(config_with(eval_tau=1.0), LABELS)
  with pytest.raises(ValueError, match='training counts'):
    task.probabilities(np.zeros((2, K)))


@pytest.mark.parametrize('loss', ['logit_adjusted', 'ldam',
                                  'balanced_softmax'])
def test_settings_that_do_not_fit_are_refused(loss):
  regression = dataclasses.replace(config_with(loss='mse'),
                                   task='regression')
  with pytest.raises(ConfigError, match='does not fit task=regression'):
    labelled.prepare_regression(dataclasses.replace(
        regression, train=dataclasses.replace(regression.train, loss=loss)),
                                '', create=False)
  multi = config_with(loss=loss)
  multi = dataclasses.replace(multi, data=dataclasses.replace(
      multi.data, multi_label=True))
  with pytest.raises(ConfigError, match='multi_label.*log_loss'):
    labelled.prepare_classification(multi, '', create=False)
  # Post-hoc adjustment needs softmax outputs over K classes.
  for config in (dataclasses.replace(multi, train=dataclasses.replace(
      multi.train, loss='log_loss')), config_with(loss='log_loss'),
                 regression):
    config = dataclasses.replace(config, eval=EvalConfig(logit_adjust_tau=1.0))
    prepare = (labelled.prepare_regression if config.task == 'regression'
               else labelled.prepare_classification)
    with pytest.raises(ConfigError, match='eval.logit_adjust_tau'):
      prepare(config, '', create=False)


def test_benchmark_task_runs_the_imbalance_losses():
  for loss in ('logit_adjusted', 'ldam', 'balanced_softmax'):
    task = labelled.benchmark_task(config_with(loss=loss))
    total, (weight, _) = task.objective(
        jnp.asarray(case(9)[0]), jnp.asarray(case(9)[1]), jnp.ones(B))
    assert np.isfinite(float(total)) and float(weight) == B


# ---------------------------------------------------------------------------
# End to end: the toy task trains with each loss, then is evaluated.
# ---------------------------------------------------------------------------


class WordTokenizer:
  """One id per word (ids from 4): enough for the toy texts."""

  def __init__(self, words):
    self.ids = {w: i + 4 for i, w in enumerate(sorted(words))}

  def encode(self, text):
    return [self.ids[w] for w in text.split()]


@pytest.mark.parametrize('loss', ['logit_adjusted', 'ldam',
                                  'balanced_softmax'])
def test_toy_task_trains_and_evaluates_with_each_loss(loss, tmp_path):
  base = tiny_classify.get_config()
  config = dataclasses.replace(
      base, train=dataclasses.replace(
          base.train, steps=4, loss=loss, class_weights='effective_number',
          class_weights_beta=0.99, drw_start=2),
      eval=dataclasses.replace(base.eval, logit_adjust_tau=1.0))
  task = labelled.prepare_classification(config, str(tmp_path), create=True)
  train = task.examples('train')
  assert sum(task.counts) == len(train) and len(task.counts) == 3
  assert_close(task.class_weights, losses.effective_number_weights(
      task.counts, 0.99), rtol=1e-12)
  tokenizer = WordTokenizer({w for split in ('train', 'valid') for t, _ in
                             task.examples(split) for w in t.split()})
  data = iter(labelled_pipeline.train_dataset(
      config, tokenizer, train, task.encode_label, process_index=0,
      process_count=1))
  mesh = train_lib.make_mesh(jax.devices()[:1])
  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  state = init_fn(jax.random.key(0))
  step = train_lib.jit_train_step(task, mesh, sharding)
  dropout_rng = train_lib.seed_rngs(config)[1]
  for _ in range(config.train.steps):  # across drw_start
    state, metrics = step(state, next(data), dropout_rng)
    assert np.isfinite(float(metrics['loss'])), loss
    assert float(metrics['finite']) == 1.0
  evaluator = labelled_evaluate.Evaluator(task, tokenizer, mesh, 'valid', 64)
  results, predictions = evaluator(state.params)
  assert np.isfinite(results['loss']) and np.isfinite(results['log_loss'])
  assert results['logit_adjust_tau'] == 1.0 and len(predictions) == 64
  assert 'log prior' in evaluator.summary({**results, 'examples': 64})
