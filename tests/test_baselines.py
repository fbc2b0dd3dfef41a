"""transformer/tasks/labelled/baselines.py on the toy tasks (fast), and the VADER loader."""

import collections
import dataclasses
import math
import os
import random

import numpy as np
import pytest

from experiments import tiny_classify
from transformer.config import Config, DataConfig, TrainConfig
from transformer.tasks.labelled import baselines, sources


def _finite(value) -> float:
  """The value as a float, asserting that it is a finite number."""
  assert value is not None and math.isfinite(value), value
  return float(value)


@pytest.fixture(scope='module')
def classify_config() -> Config:
  return tiny_classify.get_config()


@pytest.fixture(scope='module')
def classify_splits(classify_config):
  return baselines.load_splits(classify_config)


@pytest.fixture(scope='module')
def classify_result(classify_config, classify_splits):
  return baselines.run(classify_config, classify_splits)


def test_majority_accuracy_is_the_test_frequency_of_the_train_majority(
    classify_result, classify_splits):
  # Reference by plain counting, independent of baselines.majority.
  train_counts = collections.Counter(classify_splits['train'][1])
  top = max(train_counts.values())
  winner = min(c for c, n in train_counts.items() if n == top)  # argmax tie
  test_labels = classify_splits['test'][1]
  expected = sum(label == winner for label in test_labels) / len(test_labels)
  result = classify_result['baselines']['majority']
  assert result['predicts'] == winner
  assert _finite(result['test']['accuracy']) == pytest.approx(expected)
  # Probabilities are the training frequencies: log loss is the cross
  # entropy of the test labels under them.
  n = sum(train_counts.values())
  log_loss = -sum(math.log(train_counts[y] / n) for y in test_labels) / len(
      test_labels)
  assert _finite(result['test']['log_loss']) == pytest.approx(log_loss)


def test_tfidf_logistic_solves_the_toy_task(classify_result):
  result = classify_result['baselines']['tfidf_logistic']
  assert result['C'] in baselines.C_GRID
  for split in ('valid', 'test'):
    assert _finite(result[split]['accuracy']) > 0.9
    assert _finite(result[split]['macro_f1']) > 0.9
    _finite(result[split]['log_loss'])
    for scores in result[split]['per_class'].values():
      assert _finite(scores['recall']) > 0.8


def test_choice_of_c_ignores_the_test_labels(classify_config,
                                             classify_splits, classify_result):
  texts, labels = classify_splits['test']
  shuffled = list(labels)
  random.Random(0).shuffle(shuffled)
  assert shuffled != labels
  other = baselines.run(classify_config, {**classify_splits,
                                          'test': (texts, shuffled)})
  before = classify_result['baselines']['tfidf_logistic']
  after = other['baselines']['tfidf_logistic']
  assert after['C'] == before['C']
  assert after['valid_scores'] == before['valid_scores']
  for key in ('accuracy', 'macro_f1', 'log_loss'):
    assert _finite(after['valid'][key]) == _finite(before['valid'][key])
  # The test metrics did see the shuffle: chance level, not ~1.
  assert _finite(after['test']['accuracy']) < 0.6


def test_balanced_class_weights_reach_sklearn(classify_config,
                                              classify_splits):
  config = dataclasses.replace(
      classify_config, train=TrainConfig(class_weights='balanced'))
  result = baselines.run(config, classify_splits)['baselines']
  assert result['tfidf_logistic']['class_weight'] == 'balanced'
  assert 'macro_f1' in result['tfidf_logistic']['selected_by']
  assert _finite(result['tfidf_logistic']['test']['accuracy']) > 0.9


def test_regression_baselines_on_the_toy_task(classify_config):
  config = dataclasses.replace(classify_config, task='regression',
                               train=TrainConfig(loss='mse'))
  splits = baselines.load_splits(config)
  result = baselines.run(config, splits)['baselines']
  assert set(result) == {'mean', 'tfidf_ridge'}  # no VADER on toy data
  train = splits['train'][1]
  assert _finite(result['mean']['predicts']) == pytest.approx(
      sum(train) / len(train))
  test = splits['test'][1]
  variance = sum((y - sum(train) / len(train)) ** 2 for y in test) / len(
      test)
  assert _finite(result['mean']['test']['mse']) == pytest.approx(variance)
  ridge = result['tfidf_ridge']
  assert ridge['alpha'] in baselines.ALPHA_GRID
  for split in ('valid', 'test'):
    assert _finite(ridge[split]['pearson']) > 0.9
    assert _finite(ridge[split]['mse']) < _finite(result['mean'][split]['mse'])


_SDIST = sources.vader_sdist_path(Config())


@pytest.mark.skipif(not os.path.exists(_SDIST),
                    reason=f'the vaderSentiment sdist is not at {_SDIST} '
                    '(.ci/setup fetches it)')
def test_vader_loader_scores_obvious_sentences(tmp_path):
  module = baselines.extract_vader(_SDIST, str(tmp_path / 'vader_code'))
  assert os.path.dirname(module) == str(tmp_path / 'vader_code')
  for name in baselines.VADER_FILES:
    assert os.path.isfile(tmp_path / 'vader_code' / name)
  analyzer = baselines._import_file(module).SentimentIntensityAnalyzer()
  assert _finite(analyzer.polarity_scores('I love this!')['compound']) > 0.5
  assert _finite(
      analyzer.polarity_scores('This is terrible.')['compound']) < -0.3
  # A second call finds the files and does not extract again.
  assert baselines.extract_vader(_SDIST, str(tmp_path / 'vader_code')) == (
      module)


def test_multi_label_baselines_on_the_toy_task():
  from sklearn import metrics as skm  # pylint: disable=import-outside-toplevel
  config = Config(task='classification', data=DataConfig(
      source='toy', multi_label=True))
  splits = baselines.load_splits(config)
  result = baselines.run(config, splits)
  names = ['blue', 'green', 'red']
  assert result['labels'] == names
  train = np.array([[n in l for n in names] for l in splits['train'][1]])
  test = np.array([[n in l for n in names] for l in splits['test'][1]])
  majority = result['baselines']['majority']
  prior = train.mean(0)
  # Each label's training share is its probability; none is held by most.
  assert majority['predicts'] == [n for n, p in zip(names, prior) if p > 0.5]
  assert _finite(majority['test']['log_loss']) == pytest.approx(
      skm.log_loss(test.ravel(), np.tile(prior, (len(test), 1)).ravel()))
  predicted = np.array([n in majority['predicts'] for n in names])
  assert majority['test']['accuracy'] == pytest.approx(
      np.mean(np.all(test == predicted, axis=1)))
  # One logistic regression per label sees each colour word: near perfect.
  assert _finite(result['baselines']['tfidf_logistic']['test']['accuracy']) \
      > 0.95


def test_mean_baseline_of_several_targets():
  splits = {s: (['a', 'b', 'c'], [(1.0, 10.0), (2.0, 20.0), (3.0, 60.0)])
            for s in ('train', 'valid', 'test')}
  result = baselines.mean_baseline(splits)
  assert result['predicts'] == [2.0, 30.0]
  # sklearn's uniform average of the two outputs' MSE: (2/3 + 1400/3) / 2.
  assert _finite(result['test']['mse']) == pytest.approx((2 / 3 + 1400 / 3) / 2)
