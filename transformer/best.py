"""The best checkpoint and early stopping (eval.best_metric, eval.patience).

The loop evaluates every eval.every steps. `BestMetric` says which of the
evaluation's numbers ranks checkpoints and in which direction (each task
family declares its metrics' directions: Task.BEST_METRICS); `Progress` is
what early stopping remembers: the best value so far, where, and how many
evaluations since. Progress is saved in every checkpoint's metrics, so a
resumed run continues with the same count and stops at the same step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# Every key of a checkpoint's metrics written here starts with this.
_PREFIX = 'best_'


@dataclasses.dataclass(frozen=True)
class BestMetric:
  """Which evaluation number ranks checkpoints: eval.best_metric on a split."""
  name: str
  higher_is_better: bool
  split: str

  def value_of(self, metrics: dict[str, Any]) -> float | None:
    """The metric in an evaluation's numbers; None if absent or undefined
    (e.g. a correlation of a constant prediction)."""
    value = metrics.get(self.name)
    if value is None or not math.isfinite(float(value)):
      return None
    return float(value)

  def better(self, value: float, than: float | None) -> bool:
    """Strictly better: a tie keeps the earlier checkpoint."""
    if than is None:
      return True
    return value > than if self.higher_is_better else value < than

  def rank(self, checkpoint_metrics: dict[str, Any] | None) -> float:
    """A checkpoint's rank for keeping (larger is better): its value of this
    metric if it was evaluated with it, else -inf (rotation only)."""
    if not checkpoint_metrics or checkpoint_metrics.get(
        f'{_PREFIX}metric') != self.name or (
            f'{_PREFIX}evaluated' not in checkpoint_metrics):
      return -math.inf
    value = float(checkpoint_metrics[f'{_PREFIX}evaluated'])
    return value if self.higher_is_better else -value

  def describe(self, value: float) -> str:
    return f'{self.split} {self.name} {value:.4g}'


@dataclasses.dataclass
class Progress:
  """Early stopping's memory: the best value, its step, evaluations since."""
  metric: BestMetric
  best_value: float | None = None
  best_step: int | None = None
  evals_since_best: int = 0

  def update(self, step: int, value: float | None) -> bool:
    """Records the evaluation at `step`; True if it is a new best."""
    if value is not None and self.metric.better(value, self.best_value):
      self.best_value, self.best_step, self.evals_since_best = value, step, 0
      return True
    self.evals_since_best += 1
    return False

  def checkpoint_metrics(self, evaluated: float | None) -> dict[str, Any]:
    """What a checkpoint saves: this progress, and the value of the
    evaluation at its step if there was one (what ranks it)."""
    metrics = {f'{_PREFIX}metric': self.metric.name,
               f'{_PREFIX}higher_is_better': self.metric.higher_is_better,
               f'{_PREFIX}split': self.metric.split,
               f'{_PREFIX}evals_since': self.evals_since_best}
    if self.best_value is not None:
      metrics[f'{_PREFIX}value'] = self.best_value
      metrics[f'{_PREFIX}step'] = self.best_step
    if evaluated is not None:
      metrics[f'{_PREFIX}evaluated'] = evaluated
    return metrics

  @classmethod
  def restore(cls, metric: BestMetric, saved: dict[str, Any] | None
              ) -> Progress:
    """The progress saved with a checkpoint; fresh if it saved none, or
    tracked another metric (eval.best_metric changed on resume)."""
    if not saved or saved.get(f'{_PREFIX}metric') != metric.name:
      return cls(metric)
    return cls(metric, saved.get(f'{_PREFIX}value'),
               saved.get(f'{_PREFIX}step'),
               int(saved.get(f'{_PREFIX}evals_since', 0)))


def best_of(checkpoints: dict[int, dict[str, Any] | None]
            ) -> tuple[int, BestMetric, float] | None:
  """(step, metric, value) of the best evaluated checkpoint among
  {step: its saved metrics}, ranked by the metric the newest of them
  tracked; None if none was evaluated with it."""
  tracked = [m for _, m in sorted(checkpoints.items())
             if m and f'{_PREFIX}metric' in m]
  if not tracked:
    return None
  newest = tracked[-1]
  metric = BestMetric(newest[f'{_PREFIX}metric'],
                      bool(newest[f'{_PREFIX}higher_is_better']),
                      newest.get(f'{_PREFIX}split', 'valid'))
  best = None
  for step, saved in sorted(checkpoints.items()):
    if metric.rank(saved) == -math.inf:
      continue
    value = float(saved[f'{_PREFIX}evaluated'])
    if best is None or metric.better(value, best[2]):
      best = (step, metric, value)
  return best
