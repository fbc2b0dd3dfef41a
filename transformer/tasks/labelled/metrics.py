"""Evaluation metrics of classification and regression, from sklearn and scipy.

These run on the host, once per evaluation, over every example's
probabilities or predictions gathered in NumPy (the losses in losses.py are
the in-graph sums). Every value returned is a plain Python float, int, list,
dict or None, so `json.dumps` takes the result as it is. A metric that is
undefined on the data (ROC-AUC with one class present, a correlation with a
constant input) is None, never NaN: NaN is not valid JSON.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import scipy.stats
from sklearn import metrics as skm

# Multi-label: a label is predicted when its sigmoid exceeds this, i.e. its
# logit is > 0 (sklearn's predict convention for binary decision functions).
MULTI_LABEL_THRESHOLD = 0.5


def _float(value) -> float | None:
  """A plain float, or None where it is NaN or infinite."""
  value = float(value)
  return value if math.isfinite(value) else None


def _probabilities(probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
  """[N, K] float64; softmax rows renormalised (float32 sums are 1 +- 1e-7).

  sklearn's log_loss warns when rows do not sum to 1 within sqrt(eps) of
  their dtype, which float32 softmax outputs cast to float64 miss.
  """
  p = np.asarray(probabilities, np.float64)
  if p.ndim != 2:
    raise ValueError(f'probabilities must be [N, K], got shape {p.shape}')
  if multi_label:
    return p
  sums = p.sum(axis=1)
  if not np.allclose(sums, 1.0, atol=1e-3):
    raise ValueError(f'probability rows must sum to 1, got sums in '
                     f'[{sums.min()}, {sums.max()}]')
  return p / sums[:, None]


def _per_class(names: Sequence[str], precision, recall, f1, support) -> dict:
  return {name: {'precision': float(p), 'recall': float(r), 'f1': float(f),
                 'support': int(s)}
          for name, p, r, f, s in zip(names, precision, recall, f1, support)}


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           label_names: Sequence[str], *,
                           multi_label: bool = False,
                           train_counts: Sequence[int] | None = None) -> dict:
  """Accuracy, macro-F1, log loss, per-class scores, confusion matrix, AUC.

  Single-label (softmax): the prediction is the argmax. 'macro_f1' is
  sklearn's f1_score(average='macro'): the unweighted mean over the classes
  present in the labels or the predictions (a class absent from both is
  not counted as an F1 of 0). 'per_class' and 'confusion_matrix' (rows
  true, columns predicted) cover all K classes in label_names' order.
  'roc_auc' is there for K == 2 only: of probabilities[:, 1] (class 1 is the
  positive one), None when the labels hold one class.
  'balanced_accuracy' is the mean recall over the classes present in the
  labels (sklearn's balanced_accuracy_score; a class never predicted counts
  as 0), None with no labels. With train_counts, 'many_recall',
  'medium_recall' and 'few_recall' are the mean recalls of the thirds of
  the classes by training count (see recall_by_frequency), and each
  class's 'per_class' entry has its 'train_count'.

  Multi-label (independent sigmoids): a label is predicted when its
  probability is > 0.5. 'accuracy' is subset accuracy (every label right);
  'macro_f1' the mean of the K labels' F1 (a label never true and never
  predicted counts as 0, zero_division=0); 'log_loss' the binary log loss
  averaged over labels and examples (the mean of sklearn's log_loss per
  label, and the mean of losses.binary_log_loss); 'confusion_matrix' one
  [[tn, fp], [fn, tp]] per label; 'support' the positives per label.

  Args:
    labels: [N] int class ids in [0, K); multi-label: [N, K] in {0, 1}.
    probabilities: [N, K]; rows sum to 1 unless multi_label.
    label_names: K names, the keys of 'per_class'.
    train_counts: K training counts in label_names' order (labels.json's
      'counts'), for the many/medium/few recalls; ignored if multi_label.
  Returns:
    A JSON-serialisable dict; 'examples' is N.
  """
  p = _probabilities(probabilities, multi_label)
  num_classes = p.shape[1]
  if len(label_names) != num_classes:
    raise ValueError(f'{len(label_names)} label names for {num_classes} '
                     f'classes')
  y = np.asarray(labels).astype(np.int64)
  if multi_label:
    return _multi_label_metrics(y, p, label_names)
  if y.shape != (p.shape[0],):
    raise ValueError(f'labels {y.shape} do not match probabilities {p.shape}')
  classes = np.arange(num_classes)
  predicted = p.argmax(axis=1)
  scores = skm.precision_recall_fscore_support(
      y, predicted, labels=classes, zero_division=0)
  recall, support = scores[1], scores[3]
  result = {
      'examples': int(len(y)),
      'accuracy': float(skm.accuracy_score(y, predicted)),
      'macro_f1': float(skm.f1_score(y, predicted, average='macro',
                                     zero_division=0)),
      'log_loss': _float(skm.log_loss(y, p, labels=classes)),
      'per_class': _per_class(label_names, *scores),
      'confusion_matrix': skm.confusion_matrix(
          y, predicted, labels=classes).tolist(),
  }
  if num_classes == 2:
    both = len(np.unique(y)) == 2  # AUC needs a positive and a negative
    result['roc_auc'] = (_float(skm.roc_auc_score(y, p[:, 1])) if both
                         else None)
  result['balanced_accuracy'] = _mean_recall(recall, support,
                                             np.ones(num_classes, bool))
  if train_counts is not None:
    result.update(recall_by_frequency(recall, support, train_counts))
    for name, count in zip(label_names, train_counts):  # for studies' order
      result['per_class'][name]['train_count'] = int(count)
  return result


def _mean_recall(recall: np.ndarray, support: np.ndarray,
                 members: np.ndarray) -> float | None:
  """The mean recall of the member classes present in the labels (a class
  with no example has no recall); None if there is none."""
  defined = members & (support > 0)
  return float(np.mean(recall[defined])) if defined.any() else None


# The frequency groups of recall_by_frequency, most frequent first.
FREQUENCY_GROUPS = ('many', 'medium', 'few')


def recall_by_frequency(recall: Sequence[float], support: Sequence[int],
                        train_counts: Sequence[int]) -> dict:
  """'many_recall', 'medium_recall', 'few_recall': mean recalls of the
  thirds of the classes by training count.

  The long-tail literature's many/medium/few-shot split (Liu et al.,
  "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019) uses
  fixed count thresholds (> 100, 20-100, < 20 images), which say little
  for a handful of text classes; here the classes sorted by training count,
  most first (ties by class index, i.e. by name), are cut into 3 groups by
  np.array_split: sizes ceil or floor of K/3, larger groups first (K=3:
  1/1/1, K=8: 3/3/2, K=2: 1/1/0). A group's value is the mean recall of its
  classes present in the evaluated split (support > 0), None if none is.

  Args:
    recall, support: per class, in label order (sklearn's
      precision_recall_fscore_support).
    train_counts: per class, in the same order.
  """
  counts = np.asarray(train_counts)
  recall, support = np.asarray(recall, np.float64), np.asarray(support)
  if counts.shape != recall.shape:
    raise ValueError(f'{counts.size} training counts for {recall.size} '
                     'classes')
  order = np.argsort(-counts, kind='stable')
  result = {}
  for name, group in zip(FREQUENCY_GROUPS, np.array_split(order, 3)):
    members = np.zeros(len(counts), bool)
    members[group] = True
    result[f'{name}_recall'] = _mean_recall(recall, support, members)
  return result


def _multi_label_metrics(y: np.ndarray, p: np.ndarray,
                         label_names: Sequence[str]) -> dict:
  """classification_metrics for y, p [N, K] (see there)."""
  if y.shape != p.shape:
    raise ValueError(f'labels {y.shape} do not match probabilities {p.shape}')
  predicted = (p > MULTI_LABEL_THRESHOLD).astype(np.int64)
  scores = skm.precision_recall_fscore_support(y, predicted, zero_division=0)
  # Every label has N examples, so the mean over labels of the per-label
  # means is the mean over all N * K binary losses: one call.
  log_loss = skm.log_loss(y.ravel(), p.ravel(), labels=[0, 1])
  return {
      'examples': int(len(y)),
      'accuracy': float(skm.accuracy_score(y, predicted)),
      'macro_f1': float(skm.f1_score(y, predicted, average='macro',
                                     zero_division=0)),
      'log_loss': _float(log_loss),
      'per_class': _per_class(label_names, *scores),
      'confusion_matrix': skm.multilabel_confusion_matrix(
          y, predicted).tolist(),
  }


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float | None:
  """fn(a, b).statistic, None where undefined: a constant input or N < 2.

  Checked beforehand, so scipy's ConstantInputWarning is never raised.
  """
  if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return None
  return _float(fn(a, b).statistic)


def regression_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict:
  """MSE, MAE (sklearn), Pearson and Spearman correlations (scipy.stats).

  Several outputs ([N, D]): mse and mae are sklearn's uniform average over
  outputs; 'pearson' and 'spearman' the mean of the D per-output
  correlations, which are also listed ('pearson_per_output', ...). A
  correlation is None where undefined (a constant prediction or target, or
  N < 2), and so is a mean over outputs with any output undefined.

  Args:
    targets: [N] or [N, D]; predictions: the same shape.
  Returns:
    A JSON-serialisable dict; 'examples' is N.
  """
  t = np.asarray(targets, np.float64)
  y = np.asarray(predictions, np.float64)
  if t.shape != y.shape or t.ndim not in (1, 2):
    raise ValueError(f'targets {t.shape} and predictions {y.shape} must be '
                     f'the same [N] or [N, D] shape')
  result = {'examples': int(len(t)),
            'mse': float(skm.mean_squared_error(t, y)),
            'mae': float(skm.mean_absolute_error(t, y))}
  t2, y2 = t.reshape(len(t), -1), y.reshape(len(y), -1)  # [N, D]
  for name, fn in (('pearson', scipy.stats.pearsonr),
                   ('spearman', scipy.stats.spearmanr)):
    per_output = [_correlation(fn, t2[:, d], y2[:, d])
                  for d in range(t2.shape[1])]
    undefined = any(r is None for r in per_output)
    result[name] = None if undefined else float(np.mean(per_output))
    if t.ndim == 2:
      result[f'{name}_per_output'] = per_output
  return result


# Headline metrics per task, in log order; losses get more digits than
# scores bounded by 1.
_SUMMARY = {'classification': ('accuracy', 'balanced_accuracy', 'macro_f1',
                               'log_loss', 'roc_auc', 'few_recall'),
            'regression': ('mse', 'mae', 'pearson', 'spearman')}
_SCORES = {'accuracy', 'balanced_accuracy', 'macro_f1', 'roc_auc',
           'few_recall', 'pearson', 'spearman'}
# Shown only where defined (roc_auc: one class present; few_recall: no
# class of the few in the split, or K < 3).
_OPTIONAL = {'roc_auc', 'few_recall'}


def summary_line(metrics: dict, task: str) -> str:
  """One log line, e.g. 'accuracy 0.912  macro_f1 0.905  log_loss 0.231'.

  balanced_accuracy and few_recall are shown where present (single-label;
  few_recall with training counts), roc_auc and few_recall where defined;
  another undefined value (a regression correlation) shows as 'n/a'.
  """
  if task not in _SUMMARY:
    raise ValueError(f'task must be one of {sorted(_SUMMARY)}, got {task!r}')
  parts = []
  for name in _SUMMARY[task]:
    value = metrics.get(name)
    if value is None:
      if name not in _OPTIONAL and name in metrics:
        parts.append(f'{name} n/a')
      continue
    parts.append(f'{name} {value:.3f}' if name in _SCORES
                 else f'{name} {value:.4g}')
  return '  '.join(parts)
