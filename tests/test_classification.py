"""Classification and regression: pooling, the heads' losses through the
task, re-sampling, the labelled pipeline, and learning a separable problem.

End to end runs (launch.py, resume, errors) are in test_launch.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from transformer import model as model_lib
from transformer import train as train_lib
from transformer.config import (PAD_ID, Config, ConfigError, DataConfig,
                                ModelConfig, TrainConfig)
from transformer.tasks import labelled
from transformer.tasks.labelled import pipeline as labelled_pipeline

MODEL = ModelConfig(vocab_size=40, d_model=32, d_ff=64, num_heads=4,
                    num_encoder_layers=2, num_decoder_layers=0,
                    dropout_rate=0.0, max_length=32)
CONFIG = Config(task='classification', model=MODEL,
                data=DataConfig(source='toy', max_length=16, batch_size=32,
                                eval_batch_size=32),
                train=TrainConfig(schedule='constant', learning_rate=3e-3,
                                  warmup_steps=1, label_smoothing=0.0))


def assert_finite(*arrays):
  for a in arrays:
    assert np.all(np.isfinite(np.asarray(a, np.float64)))


def classification(config=CONFIG, labels=('a', 'b', 'c'), weights=None):
  return labelled.Classification(config, labels, weights)


def test_mean_pooling_ignores_what_is_under_padding():
  rng = np.random.default_rng(0)
  encoded = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
  garbage = np.where(mask[..., None], encoded, 1e6)
  got = model_lib.pool(jnp.asarray(garbage), jnp.asarray(mask), 'mean')
  want = np.stack([encoded[i, mask[i] == 1].mean(0) for i in range(3)])
  assert_finite(got)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_array_equal(
      model_lib.pool(jnp.asarray(garbage), jnp.asarray(mask), 'first'),
      encoded[:, 0])


@pytest.mark.parametrize('pooling', ['mean', 'first'])
def test_more_padding_changes_no_score(pooling):
  config = dataclasses.replace(
      CONFIG, model=dataclasses.replace(MODEL, pooling=pooling))
  task = classification(config)
  params = task.init_params(jax.random.key(0))
  # A random head (it starts at zero), so that the scores depend on the text.
  head = params['head']['kernel']
  params['head']['kernel'] = jax.random.normal(jax.random.key(1), head.shape)
  short = np.array([[5, 6, 7, 3, 0, 0, 0, 0], [9, 3, 0, 0, 0, 0, 0, 0]],
                   np.int32)
  long = np.pad(short, ((0, 0), (0, 8)))
  a, b = task.scores(params, short), task.scores(params, long)
  assert_finite(a, b)
  np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  assert not np.allclose(a[0], a[1])  # the texts differ, so do the scores


def numpy_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_class_weighted_cross_entropy_through_the_task():
  counts = [30, 10, 2]
  weights = labelled.class_weights('balanced', counts)
  labels = np.repeat(np.arange(3), counts)
  np.testing.assert_allclose(
      weights, compute_class_weight('balanced', classes=np.arange(3),
                                    y=labels), rtol=1e-6)
  task = classification(weights=weights)
  rng = np.random.default_rng(1)
  scores = rng.normal(size=(6, 3)).astype(np.float32)
  y = np.array([0, 1, 2, 2, 0, 1], np.int32)
  loss, (weight, metrics) = task.objective(jnp.asarray(scores), jnp.asarray(y),
                                           jnp.ones(6))
  w = np.asarray(weights)[y]
  nll = -numpy_log_softmax(scores.astype(np.float64))[np.arange(6), y]
  assert_finite(loss, weight)
  np.testing.assert_allclose(loss / weight, (w * nll).sum() / w.sum(),
                             rtol=1e-5)
  # The metrics are plain means: log loss unweighted, accuracy of argmax.
  log_loss, count = metrics['log_loss']
  np.testing.assert_allclose(log_loss / count, nll.mean(), rtol=1e-5)
  correct, count = metrics['accuracy']
  assert float(correct) == float(np.sum(scores.argmax(1) == y)) and count == 6


def test_explicit_class_weights_and_their_errors():
  assert labelled.class_weights('1,2.5,0', [4, 4, 4]) == (1.0, 2.5, 0.0)
  assert labelled.class_weights('none', [4, 4]) is None
  for bad in ('1,2', 'a,b,c', '1,-1,1'):
    with pytest.raises(ConfigError, match='train.class_weights'):
      labelled.class_weights(bad, [4, 4, 4])


def test_binary_log_loss_head_gives_class_probabilities():
  config = dataclasses.replace(CONFIG, train=dataclasses.replace(
      CONFIG.train, loss='log_loss'))
  task = classification(config, ('neg', 'pos'))
  assert task.num_outputs == 1
  scores = np.array([[0.0], [2.0], [-1.0]])
  p = task.probabilities(scores)
  np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-scores[:, 0])))
  np.testing.assert_allclose(p.sum(1), 1.0)
  assert task.format_prediction(np.array([2.0])) == 'pos\t0.8808'


def test_regression_standardises_and_reports_original_units():
  task = labelled.Regression(dataclasses.replace(CONFIG, task='regression'),
                             mean=(1.5,), std=(2.0,))
  encoded = task.encode_label(4.5)
  np.testing.assert_allclose(encoded, [1.5])
  np.testing.assert_allclose(task.values(np.array([[1.5], [0.0]])), [4.5, 1.5])
  scores, targets = jnp.array([[0.5], [-1.0]]), jnp.array([[0.0], [0.0]])
  _, (_, metrics) = task.objective(scores, targets, jnp.ones(2))
  mse, count = metrics['mse']
  # In original units the errors are 0.5 * 2 and 1.0 * 2.
  np.testing.assert_allclose(mse / count, (1.0**2 + 2.0**2) / 2, rtol=1e-6)


def test_resampling_balances_the_classes_deterministically():
  classes = np.array([0] * 20 + [1] * 5 + [2] * 2)
  over = labelled_pipeline.resample(classes, 'oversample', seed=0, epochs=3)
  under = labelled_pipeline.resample(classes, 'undersample', seed=0, epochs=3)
  for indices, per_class in ((over, 20), (under, 2)):
    epochs = indices.reshape(3, -1)
    for epoch in epochs:
      assert np.bincount(classes[epoch]).tolist() == [per_class] * 3
  # Oversampling keeps every example of every class in each epoch.
  assert all(set(range(27)) <= set(epoch) for epoch in over.reshape(3, -1))
  # Undersampling draws new subsets of the large class, reproducibly.
  firsts = [set(e[classes[e] == 0]) for e in under.reshape(3, -1)]
  assert len({frozenset(f) for f in firsts}) > 1
  np.testing.assert_array_equal(
      under, labelled_pipeline.resample(classes, 'undersample', seed=0,
                                        epochs=3))
  assert not np.array_equal(under, labelled_pipeline.resample(
      classes, 'undersample', seed=1, epochs=3))


class CharTokenizer:
  """Ids 4.. for the letters: enough for the pipeline."""

  def encode(self, text):
    return [4 + ord(c) - ord('a') for c in text.replace(' ', '')]


def test_labelled_pipeline_is_resumable_with_oversampling():
  examples = [('ab' * (i % 5 + 1), 'x' if i % 7 else 'y') for i in range(70)]
  config = dataclasses.replace(CONFIG, data=dataclasses.replace(
      CONFIG.data, class_sampling='oversample', batch_size=8))
  task = classification(config, ('x', 'y'))
  class_ids = task.class_ids([label for _, label in examples])
  make = lambda: iter(labelled_pipeline.train_dataset(
      config, CharTokenizer(), examples, task.encode_label,
      class_ids=class_ids))
  it = make()
  first = [next(it) for _ in range(5)]
  state = it.get_state()
  expected = [next(it) for _ in range(5)]
  resumed = make()
  resumed.set_state(state)
  for got, want in zip([next(resumed) for _ in range(5)], expected):
    for key in ('inputs', 'labels'):
      np.testing.assert_array_equal(got[key], want[key])
  labels = np.concatenate([b['labels'] for b in first + expected])
  # Oversampled: the rare class ('y', 1 in 7) is about half of each epoch.
  assert 0.35 < labels.mean() < 0.65
  assert first[0]['inputs'].shape == (8, 16) and first[0]['inputs'].dtype == np.int32


def train_steps(task, next_batch, steps: int):
  """`steps` generic train steps on one device from seed 0: (state, the
  last step's metrics)."""
  mesh = train_lib.make_mesh(jax.devices()[:1])
  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  state = init_fn(jax.random.key(0))
  step = train_lib.jit_train_step(task, mesh, sharding)
  dropout_rng = train_lib.seed_rngs(task.config)[1]
  for _ in range(steps):
    state, metrics = step(state, next_batch(), dropout_rng)
  return state, metrics


def test_a_separable_problem_is_learnt_to_100_percent():
  """Each row holds filler ids and one marker id (5, 6 or 7) somewhere: the
  marker is the class. The generic train step learns it exactly."""
  task = classification()
  rng = np.random.default_rng(0)

  def batch(n):
    inputs = rng.integers(10, 40, (n, 12)).astype(np.int32)
    labels = rng.integers(0, 3, n).astype(np.int32)
    inputs[np.arange(n), rng.integers(0, 8, n)] = 5 + labels
    inputs[:, 10:] = PAD_ID
    return {'inputs': inputs, 'labels': labels}

  state, metrics = train_steps(task, lambda: batch(32), 150)
  test = batch(512)
  scores = jax.jit(task.scores)(state.params, test['inputs'])
  assert_finite(scores, metrics['loss'])
  assert float(np.mean(np.argmax(scores, 1) == test['labels'])) == 1.0


# ---------------------------------------------------------------------------
# Several labels per text; several regression targets.
# ---------------------------------------------------------------------------

MULTI = dataclasses.replace(
    CONFIG, data=dataclasses.replace(CONFIG.data, multi_label=True),
    train=dataclasses.replace(CONFIG.train, loss='log_loss'))


def test_multi_label_objective_equals_sklearn():
  from sklearn import metrics as skm  # pylint: disable=import-outside-toplevel
  task = classification(MULTI)
  assert task.num_outputs == 3 and not task.sigmoid
  sets = [('a', 'c'), (), ('b',), ('a', 'b', 'c'), ('c',)]
  labels = np.stack([task.encode_label(s) for s in sets])
  np.testing.assert_array_equal(
      labels, [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]])
  scores = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  scores[3] = [2.0, 1.0, 3.0]  # all three right: counts for subset accuracy
  loss, (weight, sums) = task.objective(jnp.asarray(scores),
                                        jnp.asarray(labels), jnp.ones(5))
  p = 1 / (1 + np.exp(-scores.astype(np.float64)))
  want = skm.log_loss(labels.ravel(), p.ravel())
  assert_finite(loss, weight, *sums['accuracy'], *sums['log_loss'])
  np.testing.assert_allclose(loss / weight, want, rtol=1e-5)
  np.testing.assert_allclose(np.divide(*sums['log_loss']), want, rtol=1e-5)
  np.testing.assert_allclose(np.divide(*sums['accuracy']),
                             skm.accuracy_score(labels, p > 0.5))
  metrics = task.metrics(sets, scores)
  assert metrics['accuracy'] == skm.accuracy_score(labels, p > 0.5)
  assert metrics['macro_f1'] == pytest.approx(skm.f1_score(
      labels, p > 0.5, average='macro', zero_division=0))
  np.testing.assert_allclose(task.probabilities(scores), p)


def test_multi_label_predictions_and_settings():
  task = classification(MULTI)
  assert task.format_prediction(np.array([2.0, -1.0, 0.5])) == \
      'a,c\t0.8808,0.6225'
  assert task.format_prediction(np.array([-2.0, -1.0, -0.5])) == '\t'
  assert task.format_label(('a', 'c')) == 'a,c'
  for change, match in [({'loss': 'cross_entropy'}, 'log_loss'),
                        ({'class_weights': 'balanced'}, 'class_weights')]:
    config = dataclasses.replace(MULTI, train=dataclasses.replace(
        MULTI.train, **change))
    with pytest.raises(ConfigError, match=f'multi_label.*{match}'):
      labelled.prepare_classification(config, '', create=False)


def test_multi_label_labels_json_counts_texts_per_label(tmp_path):
  task = labelled.prepare_classification(MULTI, str(tmp_path), create=True)
  examples = task.examples('train')
  assert task.labels == ('blue', 'green', 'red')
  saved = __import__('json').loads((tmp_path / 'labels.json').read_text())
  assert saved['multi_label'] is True
  assert saved['counts'] == [sum(name in label for _, label in examples)
                             for name in task.labels]
  with pytest.raises(ConfigError, match='multi_label=True.*--restart'):
    labelled.prepare_classification(CONFIG, str(tmp_path), create=True)


def test_multi_label_toy_is_learnt():
  """The toy multi-label task (every colour word in the text) through the
  generic train step and the labelled pipeline."""
  task = classification(MULTI, ('blue', 'green', 'red'))
  words = sorted({w for t, _ in task.examples('train') for w in t.split()})
  tok = _WordTokenizer(words)
  data = iter(labelled_pipeline.train_dataset(
      task.config, tok, task.examples('train'), task.encode_label,
      process_index=0, process_count=1))
  state, metrics = train_steps(task, lambda: next(data), 200)
  test = task.examples('test')
  inputs = np.stack([labelled_pipeline._row(  # pylint: disable=protected-access
      labelled_pipeline.encode_text(tok, t, 16, False), 16) for t, _ in test])
  scores = np.asarray(jax.jit(task.scores)(state.params, inputs))
  assert_finite(scores, metrics['loss'])
  assert task.metrics([l for _, l in test], scores)['accuracy'] >= 0.97


class _WordTokenizer:
  """One id per word (ids from 4): enough for the toy texts."""

  def __init__(self, words):
    self.ids = {w: i + 4 for i, w in enumerate(words)}

  def encode(self, text):
    return [self.ids[w] for w in text.split()]


def test_several_regression_targets_in_original_units():
  from sklearn import metrics as skm  # pylint: disable=import-outside-toplevel
  config = dataclasses.replace(CONFIG, task='regression')
  task = labelled.Regression(config, ('x', 'y'), (1.0, -2.0), (2.0, 0.5))
  assert task.num_outputs == 2
  np.testing.assert_allclose(task.encode_label((3.0, -1.0)), [1.0, 2.0])
  targets = [(3.0, -1.0), (0.0, -2.5), (1.0, -2.0)]
  scores = np.array([[0.5, 1.0], [-1.0, 0.0], [0.2, -0.4]], np.float32)
  values = task.values(scores)
  np.testing.assert_allclose(values, scores * [2.0, 0.5] + [1.0, -2.0],
                             rtol=1e-6)
  encoded = np.stack([task.encode_label(t) for t in targets])
  _, (_, sums) = task.objective(jnp.asarray(scores), jnp.asarray(encoded),
                                jnp.ones(3))
  assert_finite(*sums['mse'])
  np.testing.assert_allclose(np.divide(*sums['mse']),
                             skm.mean_squared_error(targets, values),
                             rtol=1e-5)
  metrics = task.metrics(targets, scores)
  assert metrics['targets'] == ['x', 'y']
  assert metrics['mse'] == pytest.approx(skm.mean_squared_error(targets,
                                                                values))
  assert task.format_prediction(scores[0]) == '2.0000\t-1.5000'
  assert task.prediction_columns() == ('predicted x', 'predicted y')


def test_targets_json_for_several_targets(tmp_path):
  data = tmp_path / 'data'
  data.mkdir()
  rows = 'text\tx\ty\n' + ''.join(f'w{i}\t{i}\t{10 - 2 * i}\n'
                                  for i in range(20))
  (data / 'train.tsv').write_text(rows)
  (data / 'valid.tsv').write_text(rows)
  config = Config(task='regression', model=MODEL, train=TrainConfig(
      loss='mse'), data=DataConfig(source='text', text_dir=str(data),
                                   label_column='x,y'))
  task = labelled.prepare_regression(config, str(tmp_path), create=True)
  values = np.array([[i, 10 - 2 * i] for i in range(20)], np.float64)
  assert task.names == ('x', 'y')
  np.testing.assert_allclose(task.mean, values.mean(0))
  np.testing.assert_allclose(task.std, values.std(0))
  one = dataclasses.replace(config, data=dataclasses.replace(
      config.data, label_column='x'))
  with pytest.raises(ConfigError, match=r"2 target\(s\) \['x', 'y'\]"):
    labelled.prepare_regression(one, str(tmp_path), create=True)
