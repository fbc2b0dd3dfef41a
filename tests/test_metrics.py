"""Evaluation metrics against sklearn and scipy, and hand-computed values.

The implementation calls sklearn too; these tests pin the wiring: the order
of the labels, the averaging modes, the probability column ROC-AUC reads,
absent classes, and that the output is plain JSON.
"""

import json
import math
import warnings

import jax
import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from transformer import losses
from transformer.tasks.labelled import metrics

NAMES = ['ant', 'bee', 'cat', 'dog']


def assert_close(got, want, rtol=1e-9, atol=1e-12):
  """assert_allclose, which counts NaN == NaN, after checking finiteness."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert np.all(np.isfinite(got)), got
  assert np.all(np.isfinite(want)), want
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def assert_json(result):
  """json.dumps takes it as it is, and no value is NaN or infinite."""
  text = json.dumps(result, allow_nan=False)
  assert json.loads(text) == result


@pytest.fixture(autouse=True)
def no_warnings():
  """Metrics must not spam warnings (scipy's ConstantInputWarning, sklearn's
  'y_prob values do not sum to one', zero_division, ...)."""
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    yield


def random_classification(seed, n=300, k=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, k, n)
  probabilities = rng.dirichlet(np.ones(k), n)
  # Make the predictions better than chance.
  probabilities[np.arange(n), labels] += rng.random(n)
  return labels, probabilities / probabilities.sum(1, keepdims=True)


def test_classification_matches_sklearn():
  labels, p = random_classification(0)
  result = metrics.classification_metrics(labels, p, NAMES)
  predicted = p.argmax(1)
  assert result['examples'] == 300
  assert_close(result['accuracy'], skm.accuracy_score(labels, predicted))
  assert_close(result['macro_f1'],
               skm.f1_score(labels, predicted, average='macro'))
  assert_close(result['log_loss'], skm.log_loss(labels, p))
  precision, recall, f1, support = skm.precision_recall_fscore_support(
      labels, predicted)
  assert list(result['per_class']) == NAMES  # in the classes' order
  for k, name in enumerate(NAMES):
    scores = result['per_class'][name]
    assert_close(scores['precision'], precision[k])
    assert_close(scores['recall'], recall[k])
    assert_close(scores['f1'], f1[k])
    assert scores['support'] == support[k] == np.sum(labels == k)
  assert result['confusion_matrix'] == skm.confusion_matrix(
      labels, predicted).tolist()
  assert 'roc_auc' not in result  # binary only
  assert_json(result)


def test_float32_softmax_probabilities_are_accepted():
  labels, p = random_classification(1)
  p32 = np.asarray(jax.nn.softmax(np.log(p).astype(np.float32)))
  assert p32.dtype == np.float32
  result = metrics.classification_metrics(labels, p32, NAMES)  # no warning
  assert_close(result['log_loss'], skm.log_loss(labels, p), rtol=1e-5)


def test_three_classes_by_hand():
  labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
  predicted = np.array([0, 0, 1, 1, 1, 2, 2, 0])
  # 0.6 on the predicted class, 0.2 on each other.
  p = np.full((8, 3), 0.2)
  p[np.arange(8), predicted] = 0.6
  result = metrics.classification_metrics(labels, p, ['a', 'b', 'c'])
  # Rows true, columns predicted: a -> 2 a, 1 b; b -> 2 b, 1 c;
  # c -> 1 a, 1 c.
  assert result['confusion_matrix'] == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]
  # Precision = diagonal / column sum: a 2/3, b 2/3, c 1/2; recall =
  # diagonal / row sum: a 2/3, b 2/3, c 1/2; so F1 = 2/3, 2/3, 1/2 and
  # macro-F1 = (2/3 + 2/3 + 1/2) / 3 = 11/18.
  assert_close(result['macro_f1'], 11 / 18)
  for name, want in [('a', 2 / 3), ('b', 2 / 3), ('c', 1 / 2)]:
    for score in ('precision', 'recall', 'f1'):
      assert_close(result['per_class'][name][score], want)
  assert [s['support'] for s in result['per_class'].values()] == [3, 3, 2]
  assert_close(result['accuracy'], 5 / 8)
  # 5 right at p = 0.6, 3 wrong at p = 0.2: (5 ln(1/0.6) + 3 ln 5) / 8.
  assert_close(result['log_loss'], (5 * math.log(1 / 0.6) + 3 * math.log(5))
               / 8)
  # Balanced accuracy: the mean recall (2/3 + 2/3 + 1/2) / 3 = 11/18.
  assert_close(result['balanced_accuracy'], 11 / 18)
  assert metrics.summary_line(result, 'classification') == (
      'accuracy 0.625  balanced_accuracy 0.611  macro_f1 0.611  '
      'log_loss 0.9228')


def test_binary_roc_auc_by_hand():
  # Positive-class scores: negatives 0.1, 0.4; positives 0.35, 0.8. Of the
  # 4 (positive, negative) pairs, 3 are ranked right (0.35 < 0.4 is not):
  # AUC = 3/4. Reading column 0 instead would give 1/4.
  labels = np.array([0, 0, 1, 1])
  positive = np.array([0.1, 0.4, 0.35, 0.8])
  p = np.stack([1 - positive, positive], axis=1)
  result = metrics.classification_metrics(labels, p, ['neg', 'pos'])
  assert_close(result['roc_auc'], 0.75)
  assert_close(result['roc_auc'], skm.roc_auc_score(labels, positive))
  assert_close(result['accuracy'], 0.75)  # 0.4 predicted positive
  assert_json(result)
  assert metrics.summary_line(result, 'classification').endswith(
      'roc_auc 0.750')


def test_binary_roc_auc_matches_sklearn():
  labels, p = random_classification(2, k=2)
  result = metrics.classification_metrics(labels, p, ['no', 'yes'])
  assert_close(result['roc_auc'], skm.roc_auc_score(labels, p[:, 1]))


def test_binary_with_one_class_present_has_no_auc():
  labels = np.zeros(5, np.int64)
  p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])
  result = metrics.classification_metrics(labels, p, ['no', 'yes'])
  assert result['roc_auc'] is None
  assert_close(result['log_loss'], skm.log_loss(labels, p, labels=[0, 1]))
  assert result['per_class']['yes']['support'] == 0
  assert_json(result)
  assert 'roc_auc' not in metrics.summary_line(result, 'classification')


def test_classes_absent_from_predictions_and_labels():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 3, 100)  # 'dog' (3) never occurs
  p = rng.dirichlet(np.ones(4), 100)
  p[:, 2] = 0  # 'cat' (2) is never predicted
  p /= p.sum(1, keepdims=True)
  predicted = p.argmax(1)
  result = metrics.classification_metrics(labels, p, NAMES)
  assert result['per_class']['cat'] == {
      'precision': 0.0, 'recall': 0.0, 'f1': 0.0,
      'support': int(np.sum(labels == 2))}
  assert result['per_class']['dog']['support'] == 0
  assert result['confusion_matrix'][3] == [0, 0, 0, 0]
  assert [row[2] for row in result['confusion_matrix']] == [0, 0, 0, 0]
  # Macro over the classes in the labels or the predictions: 'cat' counts
  # as 0; 'dog' counts only if predicted.
  assert_close(result['macro_f1'], skm.f1_score(
      labels, predicted, average='macro', zero_division=0))
  present = np.union1d(labels, predicted)
  f1 = [result['per_class'][NAMES[k]]['f1'] for k in present]
  assert_close(result['macro_f1'], np.mean(f1))
  assert_close(result['log_loss'],
               skm.log_loss(labels, p, labels=np.arange(4)))
  assert_json(result)


def test_multi_label_matches_sklearn():
  rng = np.random.default_rng(4)
  n, k = 200, 4
  labels = (rng.random((n, k)) < [0.5, 0.3, 0.1, 0.02]).astype(np.int64)
  logits = rng.normal(size=(n, k)) + 2 * (labels - 0.5)
  p = 1 / (1 + np.exp(-logits))
  result = metrics.classification_metrics(labels, p, NAMES, multi_label=True)
  predicted = (p > 0.5).astype(np.int64)
  assert_close(result['accuracy'], skm.accuracy_score(labels, predicted))
  assert_close(result['accuracy'],
               np.mean(np.all(labels == predicted, axis=1)))  # subset
  assert_close(result['macro_f1'], skm.f1_score(
      labels, predicted, average='macro', zero_division=0))
  per_label = [skm.log_loss(labels[:, j], p[:, j], labels=[0, 1])
               for j in range(k)]
  assert_close(result['log_loss'], np.mean(per_label))
  for j, name in enumerate(NAMES):
    y, yhat = labels[:, j], predicted[:, j]
    scores = result['per_class'][name]
    assert_close(scores['precision'], skm.precision_score(y, yhat,
                                                          zero_division=0))
    assert_close(scores['recall'], skm.recall_score(y, yhat))
    assert_close(scores['f1'], skm.f1_score(y, yhat, zero_division=0))
    assert scores['support'] == y.sum()
    assert result['confusion_matrix'][j] == skm.confusion_matrix(
        y, yhat, labels=[0, 1]).tolist()
  assert_json(result)
  # The training loss's mean is this log loss.
  loss = losses.mean(*losses.binary_log_loss(
      logits.astype(np.float32), labels, np.ones(n, np.float32)))
  assert_close(loss, result['log_loss'], rtol=1e-5)


def test_regression_matches_sklearn_and_scipy():
  rng = np.random.default_rng(5)
  targets = rng.normal(size=200)
  predictions = targets + rng.normal(scale=0.5, size=200)
  result = metrics.regression_metrics(targets, predictions)
  assert result['examples'] == 200
  assert_close(result['mse'], skm.mean_squared_error(targets, predictions))
  assert_close(result['mae'], skm.mean_absolute_error(targets, predictions))
  assert_close(result['pearson'],
               scipy.stats.pearsonr(targets, predictions).statistic)
  assert_close(result['spearman'],
               scipy.stats.spearmanr(targets, predictions).statistic)
  assert 'pearson_per_output' not in result
  assert_json(result)
  line = metrics.summary_line(result, 'regression')
  assert line == (f"mse {result['mse']:.4g}  mae {result['mae']:.4g}  "
                  f"pearson {result['pearson']:.3f}  "
                  f"spearman {result['spearman']:.3f}")


def test_multi_output_regression_averages_outputs():
  rng = np.random.default_rng(6)
  targets = rng.normal(size=(150, 3)) * [1.0, 10.0, 0.1]
  predictions = targets + rng.normal(size=(150, 3))
  result = metrics.regression_metrics(targets, predictions)
  assert_close(result['mse'], np.mean((targets - predictions) ** 2))
  assert_close(result['mse'], skm.mean_squared_error(targets, predictions))
  assert_close(result['mae'], skm.mean_absolute_error(targets, predictions))
  for name, fn in [('pearson', scipy.stats.pearsonr),
                   ('spearman', scipy.stats.spearmanr)]:
    per_output = [fn(targets[:, d], predictions[:, d]).statistic
                  for d in range(3)]
    assert_close(result[f'{name}_per_output'], per_output)
    assert_close(result[name], np.mean(per_output))
  # The training loss's mean is this MSE.
  loss = losses.mean(*losses.mean_squared_error(
      predictions.astype(np.float32), targets.astype(np.float32),
      np.ones(150, np.float32)))
  assert_close(loss, result['mse'], rtol=1e-5)
  assert_json(result)


def test_constant_predictions_give_none_without_warnings():
  targets = np.array([1.0, 2.0, 4.0, 3.0])
  result = metrics.regression_metrics(targets, np.full(4, 2.5))
  assert result['pearson'] is None and result['spearman'] is None
  assert_close(result['mse'], np.mean((targets - 2.5) ** 2))
  assert_json(result)
  assert metrics.summary_line(result, 'regression') == (
      'mse 1.25  mae 1  pearson n/a  spearman n/a')
  # One constant output of two: that output None, so is the mean.
  two = np.stack([targets, targets[::-1]], axis=1)
  result = metrics.regression_metrics(
      two, np.stack([targets * 2, np.zeros(4)], axis=1))
  assert result['pearson'] is None
  assert_close(result['pearson_per_output'][0], 1.0)
  assert result['pearson_per_output'][1] is None
  assert_json(result)


def test_bad_inputs_raise():
  labels, p = random_classification(7)
  with pytest.raises(ValueError, match='label names'):
    metrics.classification_metrics(labels, p, NAMES[:3])
  with pytest.raises(ValueError, match='sum to 1'):
    metrics.classification_metrics(labels, p * 0.5, NAMES)
  with pytest.raises(ValueError, match='shape'):
    metrics.regression_metrics(np.zeros(4), np.zeros((4, 1)))
  with pytest.raises(ValueError, match='task'):
    metrics.summary_line({}, 'translation')


# ---------------------------------------------------------------------------
# Balanced accuracy and the recalls of the many, medium and few classes.
# ---------------------------------------------------------------------------


def sklearn_balanced_accuracy(labels, predicted):
  """sklearn's score; it warns when a predicted class is absent from the
  labels (it leaves such a class out, as it should)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)
    return skm.balanced_accuracy_score(labels, predicted)


def one_hot_probabilities(predicted, k, high=0.7):
  p = np.full((len(predicted), k), (1 - high) / (k - 1))
  p[np.arange(len(predicted)), predicted] = high
  return p


@pytest.mark.parametrize('seed,k', [(10, 2), (11, 4), (12, 7)])
def test_balanced_accuracy_matches_sklearn(seed, k):
  rng = np.random.default_rng(seed)
  # Imbalanced labels, so that balanced accuracy differs from accuracy.
  labels = rng.choice(k, 400, p=np.arange(1, k + 1) / np.sum(
      np.arange(1, k + 1)))
  _, p = random_classification(seed, n=400, k=k)
  result = metrics.classification_metrics(
      labels, p, [f'c{i}' for i in range(k)])
  predicted = p.argmax(1)
  assert_close(result['balanced_accuracy'],
               sklearn_balanced_accuracy(labels, predicted))
  # The definition: the mean over classes of diag / row sum.
  cm = skm.confusion_matrix(labels, predicted, labels=np.arange(k))
  assert_close(result['balanced_accuracy'],
               np.mean(np.diag(cm) / cm.sum(axis=1)))
  assert_json(result)


def test_balanced_accuracy_with_a_class_never_predicted_or_absent():
  # Classes 0..3; 'cat' (2) is never predicted, 'dog' (3) never true but
  # predicted once. Recalls over the true classes: ant 2/3, bee 2/2, cat 0/2
  # -> (2/3 + 1 + 0) / 3 = 5/9; dog has no recall and is left out.
  labels = np.array([0, 0, 0, 1, 1, 2, 2])
  predicted = np.array([0, 0, 3, 1, 1, 0, 1])
  p = one_hot_probabilities(predicted, 4)
  result = metrics.classification_metrics(labels, p, NAMES)
  assert_close(result['balanced_accuracy'], 5 / 9)
  assert_close(result['balanced_accuracy'],
               sklearn_balanced_accuracy(labels, predicted))
  assert_json(result)


def test_balanced_accuracy_of_one_class():
  labels = np.zeros(4, np.int64)
  predicted = np.array([0, 1, 0, 0])
  result = metrics.classification_metrics(
      labels, one_hot_probabilities(predicted, 2), ['no', 'yes'])
  assert_close(result['balanced_accuracy'], 0.75)
  assert_close(result['balanced_accuracy'],
               sklearn_balanced_accuracy(labels, predicted))


def group_recall(labels, predicted, classes):
  """The mean of sklearn's per-class recall_score over `classes` present in
  the labels; None if none is."""
  present = [c for c in classes if np.any(labels == c)]
  if not present:
    return None
  return np.mean([skm.recall_score(labels == c, predicted == c)
                  for c in present])


def test_many_medium_few_recall_by_hand():
  # 8 classes; training counts give the order (most to least frequent)
  # 5, 1, 0, 7, 3, 6, 2, 4 (ties by class index: 0 and 7 at 50, across the
  # cut), cut 3 / 3 / 2 by np.array_split: many {5, 1, 0}, medium {7, 3,
  # 6}, few {2, 4}.
  names = [f'c{i}' for i in range(8)]
  train_counts = [50, 300, 10, 40, 5, 900, 40, 50]
  rng = np.random.default_rng(20)
  labels = rng.integers(0, 8, 500)
  predicted = np.where(rng.random(500) < 0.6, labels,
                       rng.integers(0, 8, 500))
  result = metrics.classification_metrics(
      labels, one_hot_probabilities(predicted, 8), names,
      train_counts=train_counts)
  for key, classes in [('many_recall', [5, 1, 0]),
                       ('medium_recall', [7, 3, 6]),
                       ('few_recall', [2, 4])]:
    assert_close(result[key], group_recall(labels, predicted, classes))
  # And each group's value is the mean of the per-class recalls reported.
  recall = [result['per_class'][n]['recall'] for n in names]
  assert_close(result['few_recall'], (recall[2] + recall[4]) / 2)
  assert_json(result)
  line = metrics.summary_line(result, 'classification')
  assert line.endswith(f"few_recall {result['few_recall']:.3f}")
  assert f"balanced_accuracy {result['balanced_accuracy']:.3f}" in line


def test_frequency_groups_of_three_classes_and_absent_ones():
  # K = 3: one class per group, by training count: many = c (2), medium =
  # a (0), few = b (1). 'b' is absent from the evaluated labels: no recall,
  # so few_recall is None (and the summary leaves it out).
  labels = np.array([0, 0, 0, 2, 2])
  predicted = np.array([0, 1, 2, 2, 2])
  result = metrics.classification_metrics(
      labels, one_hot_probabilities(predicted, 3), ['a', 'b', 'c'],
      train_counts=[30, 3, 300])
  assert_close(result['many_recall'],
               skm.recall_score(labels == 2, predicted == 2))
  assert_close(result['many_recall'], 1.0)
  assert_close(result['medium_recall'], 1 / 3)
  assert result['few_recall'] is None
  assert_json(result)
  assert 'few_recall' not in metrics.summary_line(result, 'classification')


def test_frequency_groups_of_two_classes():
  # K = 2: np.array_split gives 1 / 1 / 0 classes; the few group is empty.
  labels = np.array([0, 0, 1, 1])
  predicted = np.array([0, 1, 1, 1])
  result = metrics.classification_metrics(
      labels, one_hot_probabilities(predicted, 2), ['no', 'yes'],
      train_counts=[10, 90])
  assert_close(result['many_recall'], 1.0)  # 'yes', 90
  assert_close(result['medium_recall'], 0.5)  # 'no', 10
  assert result['few_recall'] is None


def test_recall_groups_need_training_counts_and_keep_other_keys():
  labels, p = random_classification(21)
  plain = metrics.classification_metrics(labels, p, NAMES)
  grouped = metrics.classification_metrics(labels, p, NAMES,
                                           train_counts=[4, 3, 2, 1])
  for key in ('many_recall', 'medium_recall', 'few_recall'):
    assert key not in plain
  # per_class gains each class's training count; the rest is unchanged.
  assert {name: scores.pop('train_count') for name, scores in
          grouped['per_class'].items()} == dict(zip(NAMES, [4, 3, 2, 1]))
  assert {k: grouped[k] for k in plain} == plain
  # Counts falling with the class index: 4 classes cut 2 / 1 / 1.
  recall = skm.recall_score(labels, p.argmax(1), average=None)
  assert_close(grouped['many_recall'], recall[:2].mean())
  assert_close(grouped['few_recall'], recall[3])
  with pytest.raises(ValueError, match='training counts'):
    metrics.classification_metrics(labels, p, NAMES, train_counts=[1, 2, 3])
  # Multi-label: unchanged, the counts ignored.
  y = (p > 0.3).astype(np.int64)
  assert metrics.classification_metrics(
      y, p, NAMES, multi_label=True, train_counts=[4, 3, 2, 1]) == (
          metrics.classification_metrics(y, p, NAMES, multi_label=True))
  assert 'balanced_accuracy' not in metrics.classification_metrics(
      y, p, NAMES, multi_label=True)
