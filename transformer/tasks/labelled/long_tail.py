"""Long-tailed training data from any labelled source (data.imbalance_ratio).

Cui et al., "Class-Balanced Loss Based on Effective Number of Samples"
(CVPR 2019), sec. 6, build long-tailed CIFAR by keeping an exponentially
falling number of examples per class. With the K classes of the training
split ordered from the most to the least frequent (ties broken by class
name) and R the ratio of the first class's count to the last's, class i
(0-based) keeps

    n_i = floor(n_max * R^(-i / (K - 1))),

n_max being the count of the most frequent class; so n_0 = n_max and
n_{K-1} = floor(n_max / R). A class holding fewer than its n_i keeps all of
them (it is 'capped', and the record says so). Which examples a class keeps
is drawn without replacement from the seed alone: a PCG64 Generator seeded
with SeedSequence([seed, _SALT]) gives every example a key, the raw 64-bit
output of the bit generator (a stream NumPy keeps the same across versions
and machines, unlike the Generator's derived distributions), and each class
keeps its n_i smallest keys; so a seed gives the same subset everywhere. The
kept examples stay in their original order. Only the training split is
subsampled; valid and test are left as they are.

Single-label classification only: the labels are class names (str).
"""

from __future__ import annotations

import collections
import math
from typing import Any, Sequence

import numpy as np

from transformer.config import Config
from transformer.data.corpus import DataError
from transformer.tasks.labelled.sources import Example

# Mixed into the seed, so that this draw is not the one of any other use of
# config.seed (parameter init, data order). zlib.crc32(b'long_tail').
_SALT = 0x7CDDEF08


def _check_labels(labels: Sequence[Any], ratio: float) -> None:
  """DataError unless every label is a class name (single-label)."""
  for label in labels:
    if not isinstance(label, str):
      kind = ('a set of classes (data.multi_label)'
              if isinstance(label, tuple) and all(
                  isinstance(x, str) for x in label) else
              f'a {type(label).__name__} (task=regression?)')
      raise DataError(
          f'data.imbalance_ratio={ratio:g} subsamples single-label '
          f'classification data, but a training label is {kind}: {label!r}. '
          'Use data.imbalance_ratio=0 with regression or data.multi_label')


def class_order(labels: Sequence[str]) -> tuple[list[str], list[int]]:
  """The classes of `labels` from the most to the least frequent (ties by
  name), and their counts."""
  counts = collections.Counter(labels)
  names = sorted(counts, key=lambda name: (-counts[name], name))
  return names, [counts[name] for name in names]


def target_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
  """n_i = floor(n_max * R^(-i / (K - 1))) for i = 0..K-1 (Cui et al. 2019,
  sec. 6); one class keeps n_max.

  The product is raised by 1e-12 of itself before the floor: its rounding
  error may put an integer just below itself (49 * 49^-1 = 0.99999...),
  and floor(n_max / R) must be n_max // R when R divides n_max.
  """
  if num_classes == 1:
    return [n_max]
  return [math.floor(n_max * ratio ** (-i / (num_classes - 1)) * (1 + 1e-12))
          for i in range(num_classes)]


def long_tail_indices(labels: Sequence[str], ratio: float, seed: int
                      ) -> tuple[np.ndarray, dict[str, Any]]:
  """The training examples to keep for a long tail of ratio `ratio`.

  Args:
    labels: the class name of every training example, in split order.
    ratio: R >= 1, the most frequent class's target over the least's.
    seed: config.seed; the same seed gives the same indices.
  Returns:
    (indices, record): the kept positions into `labels`, ascending int64;
    and a JSON-serialisable record: 'ratio', 'seed', 'classes' (most to
    least frequent), per class in that order 'available', 'target' and
    'kept' counts, 'capped' (the classes that had fewer than their target),
    'examples' (before) and 'kept_examples' (after).
  Raises:
    DataError: a label that is not a class name (regression, multi-label),
      or a ratio that leaves a class without examples (R > n_max).
  """
  _check_labels(labels, ratio)
  if not ratio >= 1:
    raise DataError(f'data.imbalance_ratio={ratio:g} must be >= 1 (or 0: off)')
  names, available = class_order(labels)
  targets = target_counts(available[0] if available else 0, len(names),
                          ratio)
  if targets and targets[-1] < 1:
    raise DataError(
        f'data.imbalance_ratio={ratio:g} leaves class {names[-1]!r} no '
        f'training example: the most frequent class has {available[0]}, so '
        f'the least keeps floor({available[0]} / {ratio:g}) = 0; use a '
        f'ratio of at most {available[0]}')
  kept = [min(t, a) for t, a in zip(targets, available)]
  # One uniform key per example; a class keeps its `kept` smallest keys: a
  # draw without replacement that does not depend on the other classes.
  rng = np.random.Generator(np.random.PCG64(
      np.random.SeedSequence([int(seed) % 2**64, _SALT])))  # entropy >= 0
  keys = rng.bit_generator.random_raw(len(labels))  # uint64
  class_of = {name: k for k, name in enumerate(names)}
  ids = np.asarray([class_of[label] for label in labels], np.int64)
  chosen = [np.zeros(0, np.int64)]
  for k, n in enumerate(kept):
    members = np.flatnonzero(ids == k)
    chosen.append(members[np.argsort(keys[members], kind='stable')[:n]])
  indices = np.sort(np.concatenate(chosen))
  record = {'ratio': float(ratio), 'seed': int(seed), 'classes': names,
            'available': available, 'target': targets, 'kept': kept,
            'capped': [n for n, t, a in zip(names, targets, available)
                       if a < t],
            'examples': len(labels), 'kept_examples': int(len(indices))}
  return indices.astype(np.int64), record


class Subset(Sequence[Example]):
  """The examples of `base` at `indices`, in that order: random-access and
  picklable like sources.Examples (origins pass through). `record` is
  long_tail_indices's, for labels.json."""

  def __init__(self, base: Sequence[Example], indices: np.ndarray,
               record: dict[str, Any] | None = None):
    self.base = base
    self.indices = np.asarray(indices, np.int64)
    self.record = record

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> Example:
    return self.base[int(self.indices[index])]

  def origin(self, index: int) -> Any:
    origin = getattr(self.base, 'origin', None)
    return None if origin is None else origin(int(self.indices[index]))


def subsample(config: Config, examples: Sequence[Example]
              ) -> Sequence[Example]:
  """The training examples long-tailed by data.imbalance_ratio: a Subset
  whose .record goes to labels.json; `examples` itself when it is 0.

  Raises:
    DataError: data.imbalance_ratio with task=regression or
      data.multi_label, or see long_tail_indices.
  """
  ratio = config.data.imbalance_ratio
  if not ratio:
    return examples
  if config.task != 'classification' or config.data.multi_label:
    raise DataError(
        f'data.imbalance_ratio={ratio:g} subsamples single-label '
        f'classification data; this run has task={config.task}'
        + (' with data.multi_label=true' if config.data.multi_label else '')
        + ': set data.imbalance_ratio=0')
  indices, record = long_tail_indices([label for _, label in examples],
                                      ratio, config.seed)
  return Subset(examples, indices, record)
