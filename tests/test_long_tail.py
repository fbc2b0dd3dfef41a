"""Long-tailed training splits (data.imbalance_ratio): the class counts of
Cui et al. (CVPR 2019) sec. 6, the draw, and the subset sequence."""

import collections
import json
import math
import pickle

import numpy as np
import pytest

from transformer.config import Config, DataConfig
from transformer.data.corpus import DataError
from transformer.tasks.labelled import long_tail
from transformer.tasks.labelled import sources


def make_labels(counts, seed=0):
  """Shuffled labels with counts[name] of each class name."""
  labels = [name for name, n in counts.items() for _ in range(n)]
  order = np.random.default_rng(seed).permutation(len(labels))
  return [labels[i] for i in order]


def formula(n_max, k, ratio):
  """n_i = floor(n_max * R^(-i / (K - 1))), written out."""
  return [math.floor(n_max * ratio ** (-i / (k - 1))) for i in range(k)]


@pytest.mark.parametrize('k', [2, 3, 8])
@pytest.mark.parametrize('ratio', [1, 10, 50, 100])
def test_counts_follow_the_formula(k, ratio):
  # Class names in reverse frequency order, so that sorting by name would
  # give another order; every class has at least n_max examples' worth
  # except where the formula asks for more than it has (R = 1).
  n_max = 2000
  available = {f'c{k - i:02d}': n_max - 7 * i for i in range(k)}
  labels = make_labels(available, seed=k)
  indices, record = long_tail.long_tail_indices(labels, ratio, seed=3)
  names = [f'c{k - i:02d}' for i in range(k)]  # most to least frequent
  want = formula(n_max, k, ratio)
  kept = collections.Counter(labels[i] for i in indices)
  assert record['classes'] == names
  assert record['available'] == [available[n] for n in names]
  assert record['target'] == want
  assert record['kept'] == [min(w, available[n]) for w, n in zip(want, names)]
  assert [kept[n] for n in names] == record['kept']
  assert want[0] == n_max and want[-1] == math.floor(n_max / ratio)
  assert record['capped'] == [n for n, w in zip(names, want)
                              if available[n] < w]
  if ratio == 1:  # every class capped at what it has but the first
    assert record['capped'] == names[1:]
    assert len(indices) == len(labels)
  else:
    assert record['capped'] == []
  assert record['ratio'] == float(ratio) and record['seed'] == 3
  assert record['examples'] == len(labels)
  assert record['kept_examples'] == len(indices) == sum(record['kept'])
  assert json.loads(json.dumps(record, allow_nan=False)) == record


def test_hand_computed_counts():
  # K = 3, n_max = 1000, R = 100: 1000, 1000 / 10 = 100, 1000 / 100 = 10.
  labels = make_labels({'a': 1000, 'b': 500, 'c': 400})
  _, record = long_tail.long_tail_indices(labels, 100, seed=0)
  assert record['target'] == [1000, 100, 10]
  # K = 4, R = 8: 1000 * 8^(-i/3) = 1000, 500, 250, 125.
  labels = make_labels({'w': 1000, 'x': 900, 'y': 800, 'z': 700})
  _, record = long_tail.long_tail_indices(labels, 8, seed=0)
  assert record['target'] == record['kept'] == [1000, 500, 250, 125]
  # R divides n_max: the last class keeps exactly n_max / R, though
  # 49 * 49^-1 is 0.999... in floating point.
  labels = make_labels({'a': 49, 'b': 49})
  _, record = long_tail.long_tail_indices(labels, 49, seed=0)
  assert record['target'] == [49, 1]


def test_ties_are_broken_by_class_name():
  labels = make_labels({'b': 100, 'a': 100, 'c': 100})
  _, record = long_tail.long_tail_indices(labels, 10, seed=0)
  assert record['classes'] == ['a', 'b', 'c']
  assert record['kept'] == formula(100, 3, 10) == [100, 31, 10]


def test_capped_classes_keep_all_they_have():
  # Order by count: big 1000, mid 900, tiny 50. R = 10: targets 1000, 316,
  # 100; 'tiny' has 50 < 100, keeps all 50 and is noted.
  labels = make_labels({'big': 1000, 'mid': 900, 'tiny': 50})
  indices, record = long_tail.long_tail_indices(labels, 10, seed=1)
  assert record['target'] == [1000, 316, 100]
  assert record['kept'] == [1000, 316, 50]
  assert record['capped'] == ['tiny']
  tiny = [i for i, label in enumerate(labels) if label == 'tiny']
  assert set(tiny) <= set(indices.tolist())


def test_a_seed_gives_the_same_subset_and_another_seed_another():
  labels = make_labels({'a': 500, 'b': 400, 'c': 300, 'd': 200})
  first, record = long_tail.long_tail_indices(labels, 20, seed=5)
  again, record_again = long_tail.long_tail_indices(list(labels), 20, seed=5)
  other, record_other = long_tail.long_tail_indices(labels, 20, seed=6)
  np.testing.assert_array_equal(first, again)
  assert record == record_again
  assert record_other['kept'] == record['kept']  # counts do not depend on it
  assert not np.array_equal(first, other)
  # The largest class is kept whole; every other class draws a different
  # subset under the other seed.
  for name in 'bcd':
    pick = lambda ix: {i for i in ix.tolist() if labels[i] == name}
    assert pick(first) != pick(other)


def test_the_subset_is_pinned():
  """The draw is the same on every machine and NumPy version: the raw
  PCG64 stream from SeedSequence([seed, salt]). Pinned here so a change to
  the derivation is seen."""
  labels = make_labels({'a': 10, 'b': 10})
  indices, _ = long_tail.long_tail_indices(labels, 5, seed=0)
  b = [i for i, label in enumerate(labels) if label == 'b']
  rng = np.random.Generator(np.random.PCG64(
      np.random.SeedSequence([0, 0x7CDDEF08])))
  keys = rng.bit_generator.random_raw(20)
  want_b = sorted(sorted(b, key=lambda i: keys[i])[:2])
  assert [i for i in indices.tolist() if labels[i] == 'b'] == want_b
  # And literally, for alternating labels: all of 'a' (the tie goes to the
  # first name), 10 // 5 = 2 of 'b'.
  alternating = ['a', 'b'] * 10
  assert long_tail.long_tail_indices(alternating, 5, 0)[0].tolist() == [
      0, 2, 4, 5, 6, 8, 10, 12, 14, 16, 17, 18]
  assert long_tail.long_tail_indices(alternating, 5, 1)[0].tolist() == [
      0, 2, 4, 5, 6, 8, 10, 12, 13, 14, 16, 18]


def test_original_order_is_kept():
  labels = make_labels({'a': 300, 'b': 200, 'c': 100})
  indices, _ = long_tail.long_tail_indices(labels, 10, seed=2)
  assert indices.dtype == np.int64
  assert np.all(np.diff(indices) > 0)  # ascending, no repeats
  texts = [f'text {i}' for i in range(len(labels))]
  subset = long_tail.Subset(sources.Examples(texts, labels), indices)
  assert [subset[j] for j in range(len(subset))] == [
      (texts[i], labels[i]) for i in indices]


def test_subset_is_a_picklable_sequence_with_origins():
  base = sources.Examples(['x', 'y', 'z', 'w'], ['a', 'b', 'a', 'a'],
                          origins=[('g', 1), ('g', 2), ('h', 1), ('h', 2)])
  subset = long_tail.Subset(base, np.array([1, 3]), {'ratio': 2.0})
  assert len(subset) == 2
  assert subset[0] == ('y', 'b') and subset[-1] == ('w', 'a')
  assert subset.origin(1) == ('h', 2)
  assert list(subset) == [('y', 'b'), ('w', 'a')]
  clone = pickle.loads(pickle.dumps(subset))
  assert list(clone) == list(subset) and clone.record == {'ratio': 2.0}
  with pytest.raises(IndexError):
    subset[2]  # pylint: disable=pointless-statement
  plain = long_tail.Subset([('x', 'a'), ('y', 'b')], [1])
  assert plain.origin(0) is None


def config(task='classification', ratio=10.0, **data):
  return Config(task=task, seed=4,
                data=DataConfig(source='toy', imbalance_ratio=ratio, **data))


def test_subsample_the_toy_training_split():
  train = sources.toy_examples('train', 'classification')
  subset = long_tail.subsample(config(), train)
  counts = collections.Counter(label for _, label in train)
  n_max = max(counts.values())
  record = subset.record
  assert record['seed'] == 4 and record['ratio'] == 10.0
  assert record['target'] == formula(n_max, 3, 10)
  assert collections.Counter(label for _, label in subset) == dict(
      zip(record['classes'], record['kept']))
  # Off: the examples themselves.
  assert long_tail.subsample(config(ratio=0), train) is train


@pytest.mark.parametrize('task,data', [('regression', {}),
                                       ('classification',
                                        {'multi_label': True})])
def test_regression_and_multi_label_are_refused(task, data):
  examples = sources.toy_examples('train', task, size=50,
                                  multi_label=bool(data))
  with pytest.raises(DataError, match='data.imbalance_ratio'):
    long_tail.subsample(config(task, **data), examples)
  # The pure function refuses such labels too.
  with pytest.raises(DataError, match='data.imbalance_ratio'):
    long_tail.long_tail_indices([label for _, label in examples], 10, 0)


def test_a_ratio_that_empties_a_class_is_refused():
  labels = make_labels({'a': 20, 'b': 20})
  with pytest.raises(DataError, match='at most 20'):
    long_tail.long_tail_indices(labels, 21, seed=0)
  _, record = long_tail.long_tail_indices(labels, 20, seed=0)
  assert record['kept'] == [20, 1]
