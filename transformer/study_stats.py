"""The statistics of a study (--mode=study): pure functions of numbers.

Each setting of a study is trained with several seeds; what a seed changes
(initialisation, dropout, data order) is the noise the comparison must see
through. Per setting: the mean over seeds, their standard deviation and a
Student-t confidence interval of the mean. Between two settings: the paired
difference over the same seeds (seed k of both saw the same data order and
started from the same initialisation, where their settings leave these
alike), with scipy's paired t-test.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Mapping, NamedTuple

import numpy as np
import scipy.stats


class Interval(NamedTuple):
  """The mean of n values, their sample standard deviation (ddof=1) and a
  confidence interval of the mean; None where n is too small (no values:
  all None; one value: the mean only)."""
  n: int
  mean: float | None
  std: float | None
  low: float | None
  high: float | None


class PairedDifference(NamedTuple):
  """values - reference over the n seeds both have: the mean difference and
  the paired t-test's two-sided p-value (None under 2 pairs; NaN where
  scipy gives none, e.g. every difference zero)."""
  n: int
  mean: float | None
  p_value: float | None


def finite(values: Iterable[float | None]) -> list[float]:
  """The values that are numbers and finite (a missing metric is None)."""
  return [float(v) for v in values
          if isinstance(v, (int, float)) and not isinstance(v, bool) and
          math.isfinite(v)]


def describe(values: Iterable[float | None],
             confidence: float = 0.95) -> Interval:
  """Mean, standard deviation and the Student-t interval
  mean ± t_{(1+confidence)/2, n-1} · s / √n of the finite `values`."""
  x = np.asarray(finite(values), dtype=np.float64)
  n = len(x)
  if n == 0:
    return Interval(0, None, None, None, None)
  mean = float(x.mean())
  if n < 2:
    return Interval(1, mean, None, None, None)
  std = float(x.std(ddof=1))
  half = float(scipy.stats.t.ppf((1 + confidence) / 2, n - 1)) * std / (
      math.sqrt(n))
  return Interval(n, mean, std, mean - half, mean + half)


def paired(values: Mapping[int, float | None],
           reference: Mapping[int, float | None]) -> PairedDifference:
  """values - reference, paired by seed (the keys) over the seeds where
  both are finite."""
  seeds = sorted(s for s in set(values) & set(reference)
                 if len(finite([values[s], reference[s]])) == 2)
  if not seeds:
    return PairedDifference(0, None, None)
  a = np.array([values[s] for s in seeds], dtype=np.float64)
  b = np.array([reference[s] for s in seeds], dtype=np.float64)
  mean = float((a - b).mean())
  if len(seeds) < 2:
    return PairedDifference(1, mean, None)
  with warnings.catch_warnings():  # identical pairs: scipy warns, gives NaN
    warnings.simplefilter('ignore', RuntimeWarning)
    p_value = float(scipy.stats.ttest_rel(a, b).pvalue)
  return PairedDifference(len(seeds), mean, p_value)


def best(means: Mapping[str, float | None], direction: str | None
         ) -> str | None:
  """The key of the best finite mean ('max': highest, 'min': lowest; the
  first of a tie); None without a direction or a finite mean."""
  if direction not in ('max', 'min'):
    return None
  candidates = [(name, value) for name, value in means.items()
                if finite([value])]
  if not candidates:
    return None
  sign = 1.0 if direction == 'max' else -1.0
  return max(candidates, key=lambda item: sign * item[1])[0]
