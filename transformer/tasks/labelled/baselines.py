"""Non-Transformer baselines on exactly the splits the experiments use.

  python -m transformer.baselines --experiment=vader_3way [--set=KEY=VALUE]
      [--output=FILE]

Run from the repository root (experiments/ is found there). The data comes
from `load_split(config, split)` (__init__.py) and the metrics from
metrics.py, as in the Transformer's evaluation, so the numbers compare one
to one.

Classification: 'majority' predicts the training split's most frequent class
with the training class frequencies as probabilities (so log loss is
defined); 'tfidf_logistic' is TF-IDF of word 1-2 grams (sublinear tf,
min_df=2, fitted on train) and multinomial logistic regression (sklearn,
newton-cg), with class_weight from train.class_weights ('balanced' as in
bible_genre_balanced). Multi-label (data.multi_label): 'majority' gives each
label its training frequency as its probability (so it predicts the labels
held by most training texts), 'tfidf_logistic' one binary logistic
regression per label (sklearn's OneVsRestClassifier).
Regression: 'mean' predicts the training mean; 'tfidf_ridge' is the same
features and sklearn's Ridge (several targets: one multi-output Ridge); for
data.source='vader' with the rating as the only target also
'vader_lexicon', VADER's own rule-based compound score (vaderSentiment
3.3.2, read from the source archive that .ci/setup fetches; nothing is
downloaded).

No choice looks at the test split: every model is fitted on train, the
regularisation strength (C or alpha, a 5-point grid) is the one with the best
valid score, and that train fit is kept (no refit on train + valid: the
Transformer does not train on valid either). Valid scores are therefore
slightly optimistic; test scores are not.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import tarfile
import tempfile
import time
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from transformer import experiment
from transformer.config import Config, ConfigError
from transformer.data import corpus
from transformer.tasks import labelled
from transformer.tasks.labelled import metrics as metrics_lib
from transformer.tasks.labelled import sources


SPLITS = ('train', 'valid', 'test')
# Half-decade steps; a choice at either end is flagged in the output (the
# optimum may lie outside). C's grid spans the optima the experiments'
# valid splits chose (README).
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
ALPHA_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
MAX_ITER = 2000
# BLAS threads while fitting: the problems are too small to gain from more,
# and on a shared machine more were slower (README).
BLAS_THREADS = 1

Splits = dict[str, tuple[list[str], list]]


# ---------------------------------------------------------------------------
# Data and features.
# ---------------------------------------------------------------------------


def load_splits(config: Config) -> Splits:
  """{split: (texts, labels)} of config.data.source, from load_split."""
  splits = {}
  for split in SPLITS:
    examples = labelled.load_split(config, split)
    pairs = [examples[i] for i in range(len(examples))]
    splits[split] = ([t for t, _ in pairs], [label for _, label in pairs])
  return splits


def tfidf_features(splits: Splits) -> dict[str, Any]:
  """{split: sparse TF-IDF matrix}; vocabulary and idf from train only."""
  vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                               min_df=2)
  features = {'train': vectorizer.fit_transform(splits['train'][0])}
  for split in ('valid', 'test'):
    features[split] = vectorizer.transform(splits[split][0])
  return features


def label_names(labels: Sequence) -> list[str]:
  """The sorted class names of a split's labels (sets for multi-label), as
  the Transformer's labels.json lists them."""
  return sorted({name for label in labels for name in
                 (label if isinstance(label, tuple) else (label,))})


def label_ids(labels: Sequence, names: Sequence[str]) -> np.ndarray:
  """[N] class ids in `names` order, or for multi-label sets the [N, K]
  indicator matrix; a class unseen in training is an error (the
  Transformer's task refuses it too)."""
  if labels and isinstance(labels[0], tuple):
    unknown = sorted(set(label_names(labels)) - set(names))
    if unknown:
      raise ValueError(f'labels {unknown} are not in the training split')
    return np.asarray([[n in label for n in names] for label in labels],
                      np.int64)
  index = {name: i for i, name in enumerate(names)}
  unknown = sorted(set(labels) - set(index))
  if unknown:
    raise ValueError(f'labels {unknown} are not in the training split')
  return np.asarray([index[label] for label in labels], np.int64)


def select_on_valid(grid: Sequence[float], fit: Callable[[float], Any],
                    valid_score: Callable[[Any], tuple]
                    ) -> tuple[float, Any, dict[str, tuple]]:
  """Fits one model per grid value and keeps the best by valid_score
  (higher is better). It gets no test data, so the test split cannot
  influence the choice. Returns (value, model, {value: score})."""
  best, scores = None, {}
  for value in grid:
    model = fit(value)
    scores[str(value)] = score = valid_score(model)
    if best is None or score > best[2]:
      best = (value, model, score)
  return best[0], best[1], scores


def _grid_note(value: float, grid: Sequence[float]) -> str | None:
  if value in (grid[0], grid[-1]):
    return f'chosen at the edge of the grid {list(grid)}'
  return None


# ---------------------------------------------------------------------------
# Classification.
# ---------------------------------------------------------------------------


def majority(splits: Splits, names: Sequence[str]) -> dict:
  """The training split's most frequent class, with the training class
  frequencies as every example's probabilities. Multi-label: each label's
  share of the training texts as its probability."""
  train = label_ids(splits['train'][1], names)
  multi_label = train.ndim == 2
  if multi_label:
    prior = train.mean(axis=0)
    predicts = [n for n, p in zip(names, prior)
                if p > metrics_lib.MULTI_LABEL_THRESHOLD]
  else:
    counts = np.bincount(train, minlength=len(names))
    prior = counts / counts.sum()
    predicts = names[int(prior.argmax())]
  result = {'predicts': predicts}
  for split in ('valid', 'test'):
    y = label_ids(splits[split][1], names)
    result[split] = metrics_lib.classification_metrics(
        y, np.tile(prior, (len(y), 1)), names, multi_label=multi_label)
  return result


def class_weight(setting: str, counts: Sequence[int],
                 beta: float = 0.999) -> Any:
  """train.class_weights as sklearn's class_weight (None, 'balanced' or
  {class id: weight}): the Transformer's weights (labelled.class_weights)
  for the training `counts`; 'balanced' is the same n / (K * count_k)."""
  if setting in ('none', 'balanced'):
    return None if setting == 'none' else 'balanced'
  return dict(enumerate(labelled.class_weights(setting, list(counts), beta)))


def tfidf_logistic(features: dict, splits: Splits, names: Sequence[str],
                   weight_setting: str = 'none', beta: float = 0.999) -> dict:
  """TF-IDF + logistic regression, C chosen on valid by accuracy (macro-F1
  when classes are weighted: what the weighting is for), ties broken by the
  lower valid log loss."""
  y = {s: label_ids(splits[s][1], names) for s in SPLITS}
  multi_label = y['train'].ndim == 2
  weights = class_weight(
      weight_setting, [] if multi_label else
      np.bincount(y['train'], minlength=len(names)).tolist(), beta)
  key = 'accuracy' if weights is None else 'macro_f1'

  def fit(c: float):
    # Multinomial (softmax) for K > 2. newton-cg, not the default lbfgs:
    # lbfgs took more iterations and time on bible_genre and stopped less
    # converged (README).
    model = LogisticRegression(C=c, class_weight=weights, solver='newton-cg',
                               max_iter=MAX_ITER)
    if multi_label:  # one binary model per label: its column's probability
      model = OneVsRestClassifier(model)
    return model.fit(features['train'], y['train'])

  def evaluate(model, split: str) -> dict:
    return metrics_lib.classification_metrics(
        y[split], model.predict_proba(features[split]), names,
        multi_label=multi_label)

  def score(model) -> tuple:
    m = evaluate(model, 'valid')
    return (m[key], -m['log_loss'])

  c, model, scores = select_on_valid(C_GRID, fit, score)
  return {'C': c, 'selected_by': f'valid {key}, then log_loss',
          'valid_scores': {k: v[0] for k, v in scores.items()},
          'class_weight': weight_setting, 'note': _grid_note(c, C_GRID),
          'iterations': int(max(np.max(m.n_iter_) for m in
                                getattr(model, 'estimators_', [model]))),
          'valid': evaluate(model, 'valid'), 'test': evaluate(model, 'test')}


# ---------------------------------------------------------------------------
# Regression.
# ---------------------------------------------------------------------------


def _targets(splits: Splits) -> dict[str, np.ndarray]:
  """{split: [N] targets, or [N, D] for several}."""
  return {s: np.asarray(splits[s][1], np.float64) for s in SPLITS}


def mean_baseline(splits: Splits) -> dict:
  """The training mean (of each target) for every example (correlations
  are undefined)."""
  t = _targets(splits)
  mean = t['train'].mean(axis=0)
  return {'predicts': mean.tolist(), **{
      s: metrics_lib.regression_metrics(t[s], np.broadcast_to(mean, t[s].shape))
      for s in ('valid', 'test')}}


def tfidf_ridge(features: dict, splits: Splits) -> dict:
  """TF-IDF + ridge regression, alpha chosen by the lowest valid MSE."""
  t = _targets(splits)

  def fit(alpha: float) -> Ridge:
    return Ridge(alpha=alpha).fit(features['train'], t['train'])

  def evaluate(model, split: str) -> dict:
    return metrics_lib.regression_metrics(
        t[split], model.predict(features[split]))

  alpha, model, scores = select_on_valid(
      ALPHA_GRID, fit, lambda m: (-evaluate(m, 'valid')['mse'],))
  return {'alpha': alpha, 'selected_by': 'valid mse',
          'valid_scores': {k: -v[0] for k, v in scores.items()},
          'note': _grid_note(alpha, ALPHA_GRID),
          'valid': evaluate(model, 'valid'), 'test': evaluate(model, 'test')}


# ---------------------------------------------------------------------------
# VADER's lexicon scorer, loaded from the source archive.
# ---------------------------------------------------------------------------

VADER_CODE_SUBDIR = 'vader_code'
_VADER_PACKAGE = 'vaderSentiment-3.3.2/vaderSentiment/'
# The module reads both lexicons from its own directory
# (os.path.dirname(getsourcefile(...))) in SentimentIntensityAnalyzer().
# Its only non-stdlib imports (requests, nltk) are inside the
# `if __name__ == '__main__':` demo, which importing does not run.
VADER_FILES = ('vader_lexicon.txt', 'emoji_utf8_lexicon.txt',
               'vaderSentiment.py')  # the module last: it marks completion


def extract_vader(sdist: str, directory: str) -> str:
  """Extracts VADER_FILES from the sdist into `directory` once; returns the
  module's path. Files land by rename, the module last, so a concurrent or
  interrupted run never finds the module without its lexicons."""
  module_path = os.path.join(directory, VADER_FILES[-1])
  if os.path.exists(module_path):
    return module_path
  if not os.path.exists(sdist):
    raise corpus.DataError(
        f'the VADER baseline needs {sdist}; fetch it with: '
        f'{sources.vader_fetch_command(os.path.dirname(sdist))}')
  os.makedirs(directory, exist_ok=True)
  with tarfile.open(sdist, 'r:gz') as archive, tempfile.TemporaryDirectory(
      dir=directory) as tmp:
    for name in VADER_FILES:
      data = archive.extractfile(_VADER_PACKAGE + name).read()
      with open(os.path.join(tmp, name), 'wb') as f:
        f.write(data)
      os.replace(os.path.join(tmp, name), os.path.join(directory, name))
  return module_path


@functools.lru_cache(maxsize=None)
def _import_file(path: str) -> ModuleType:
  # A private module name: an installed vaderSentiment is left alone.
  spec = importlib.util.spec_from_file_location('_vader_sentiment_3_3_2',
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def vader_analyzer(config: Config) -> Any:
  """vaderSentiment's SentimentIntensityAnalyzer, from
  DATA_ROOT/vader_code/ (extracted from the sdist on first use)."""
  directory = os.path.join(corpus.data_root(config.data), VADER_CODE_SUBDIR)
  path = extract_vader(sources.vader_sdist_path(config), directory)
  return _import_file(path).SentimentIntensityAnalyzer()


def vader_lexicon(config: Config, splits: Splits) -> dict:
  """VADER's compound score. Pearson and Spearman are of the raw score in
  [-1, 1]; MSE and MAE of a least-squares line compound -> rating fitted on
  train, since the compound is not in rating units."""
  analyzer = vader_analyzer(config)
  t = _targets(splits)
  compound = {s: np.asarray([analyzer.polarity_scores(x)['compound']
                             for x in splits[s][0]]) for s in SPLITS}
  slope, intercept = np.polyfit(compound['train'], t['train'], 1)
  result = {'linear_map': {'slope': float(slope),
                           'intercept': float(intercept)},
            'note': ('mse/mae: rating = slope * compound + intercept, fitted '
                     'on train; pearson/spearman: the raw compound')}
  for s in ('valid', 'test'):
    m = metrics_lib.regression_metrics(t[s], slope * compound[s] + intercept)
    raw = metrics_lib.regression_metrics(t[s], compound[s])
    result[s] = {**m, 'pearson': raw['pearson'], 'spearman': raw['spearman']}
  return result


# ---------------------------------------------------------------------------
# Running and reporting.
# ---------------------------------------------------------------------------


def _timed(fn: Callable[..., dict], *args) -> dict:
  start = time.perf_counter()
  result = fn(*args)
  return {**result, 'seconds': round(time.perf_counter() - start, 2)}


def run(config: Config, splits: Splits | None = None) -> dict:
  """Every baseline of config.task; `splits` (as load_splits returns)
  replaces the loaded data, for tests. Returns a JSON-serialisable dict."""
  start = time.perf_counter()
  with threadpool_limits(BLAS_THREADS):
    result = _run(config, load_splits(config) if splits is None else splits)
  # Wall time of everything, data loading included.
  result['seconds'] = round(time.perf_counter() - start, 2)
  return result


def _run(config: Config, splits: Splits) -> dict:
  """run() on loaded splits: features once, then each baseline timed."""
  features = _timed(lambda: {'matrices': tfidf_features(splits)})
  result = {'task': config.task, 'data': labelled.describe(config),
            'examples': {s: len(splits[s][0]) for s in SPLITS},
            'tfidf_features': features['matrices']['train'].shape[1],
            'tfidf_seconds': features['seconds']}
  matrices = features['matrices']
  if config.task == 'classification':
    names = label_names(splits['train'][1])  # the Transformer's labels.json
    result['labels'] = names
    result['baselines'] = {
        'majority': _timed(majority, splits, names),
        'tfidf_logistic': _timed(tfidf_logistic, matrices, splits, names,
                                 config.train.class_weights,
                                 config.train.class_weights_beta)}
  elif config.task == 'regression':
    result['baselines'] = {'mean': _timed(mean_baseline, splits),
                           'tfidf_ridge': _timed(tfidf_ridge, matrices,
                                                 splits)}
    # A sentiment lexicon: VADER's rating only.
    if config.data.source == 'vader' and not config.data.rater_spread:
      result['baselines']['vader_lexicon'] = _timed(vader_lexicon, config,
                                                    splits)
  else:
    raise ConfigError(f'task={config.task!r}: baselines are for '
                      'classification and regression')
  return result


def table(result: dict) -> str:
  """A few lines per baseline: metrics.summary_line per split, the chosen
  strength, and per-class recall for classification."""
  lines = [result['data'], 'examples ' + '  '.join(
      f'{s} {n}' for s, n in result['examples'].items())]
  for name, b in result['baselines'].items():
    chosen = next((f'{k}={b[k]}' for k in ('C', 'alpha') if k in b), '')
    lines.append(f'{name}  {chosen}  ({b["seconds"]} s)'
                 + (f'  [{b["note"]}]' if b.get('note') else ''))
    for split in ('valid', 'test'):
      m = b[split]
      lines.append(f'  {split:5}  '
                   + metrics_lib.summary_line(m, result['task']))
      if 'per_class' in m:
        lines.append('         recall: ' + '  '.join(
            f'{c} {v["recall"]:.3f}' for c, v in m['per_class'].items()))
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--experiment', required=True)
  parser.add_argument('--set', action='append', default=[],
                      help='config override KEY=VALUE; may repeat')
  parser.add_argument('--output', help='JSON file (default: stdout, with the '
                      'table on stderr)')
  args = parser.parse_args(argv)
  experiment.run_command(args.experiment, args.set, run, table, args.output)


if __name__ == '__main__':
  main()
