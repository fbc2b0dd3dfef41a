"""Classification and regression: the encoder, pooling and a head.

`config.task='classification'`: K class names learnt from the training split
(saved as WORKDIR/labels.json with their counts); the head gives K logits
(softmax losses: cross_entropy, focal, hinge, and against imbalance
logit_adjusted, ldam and balanced_softmax, which use the counts), or one
logit for two classes with train.loss='log_loss' (sigmoid), or, with
data.multi_label, K independent sigmoid logits (log_loss; any number of
labels per text).
`config.task='regression'`: one output per target (data.label_column, or
data.rater_spread), trained on targets standardised with the training
split's means and standard deviations (WORKDIR/targets.json); predictions
are reported in the original units.

The family, one module per job:
  __init__.py   the tasks, what a run learns from its training split
                (`prepare_classification`, `prepare_regression`), the
                benchmark's task, and `load_split`: the (text, label) pairs
                of a split of data.source
  sources.py    the built-in sources: VADER, Bible genres, TFDS, the toy task
  files.py      the users' TSV, CSV or JSON Lines files (data.source='text')
  pipeline.py   grain batches for training, evaluation and prediction
  evaluate.py   the evaluator (loss, metrics, predictions written)
  metrics.py    accuracy, F1, ROC-AUC, correlations (scikit-learn, scipy)
  baselines.py  TF-IDF + linear models, VADER's lexicon, on the same splits
  benchmark.py  --mode=benchmark's hooks: random batches, FLOPs, rates
  pictures.py   --mode=visualize: encoder attention, confusion matrix
Losses are in transformer/losses.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from transformer import losses, sharding
from transformer.config import Config, ConfigError
from transformer.data.corpus import DataError, check_split
from transformer.model import EncoderClassifier
from transformer.tasks import base
from transformer.tasks.labelled import benchmark as benchmark_lib
from transformer.tasks.labelled import evaluate
from transformer.tasks.labelled import files
from transformer.tasks.labelled import long_tail
from transformer.tasks.labelled import metrics as metrics_lib
from transformer.tasks.labelled import pictures as pictures_lib
from transformer.tasks.labelled import pipeline
from transformer.tasks.labelled import sources
from transformer.tasks.labelled.sources import Example

Array = jax.Array
Batch = dict[str, Array]

LABELS_FILE, TARGETS_FILE = 'labels.json', 'targets.json'
SOFTMAX_LOSSES = ('cross_entropy', 'focal', 'hinge', 'logit_adjusted', 'ldam',
                  'balanced_softmax')
REGRESSION_LOSSES = ('mse', 'huber')


@dataclasses.dataclass(frozen=True)
class _Labelled(base.Task):
  """What classification and regression share: the model, data, evaluation
  and prediction around a head of `num_outputs` scores per text."""
  config: Config

  num_outputs = 1
  rate_unit = 'examples'  # what the loss averages over (the log's rate)

  @classmethod
  def missing_split(cls, config: Config, split: str) -> str | None:
    return files.missing_split(config, split)

  def try_it(self, command: str) -> str:
    """The line that ends a training run's report."""
    return f'predict:   echo "A sentence to label." | {command} --mode=predict'

  def model(self, *, sow_weights: bool = False) -> EncoderClassifier:
    return EncoderClassifier(self.config.model, self.num_outputs,
                             sow_weights=sow_weights,
                             dropout_impl=self.config.train.dropout_rng)

  def init_params(self, rng: Array):
    tokens = jnp.ones((1, 8), jnp.int32)
    return self.model().init(rng, tokens)['params']

  def scores(self, params, inputs: Array, *, rng: Array | None = None
             ) -> Array:
    """[B, L] ids -> [B, num_outputs] float32; dropout iff rng."""
    return self.model().apply(
        {'params': params}, inputs, deterministic=rng is None,
        rngs=None if rng is None else {'dropout': rng}).astype(jnp.float32)

  def loss_sums(self, params, batch: Batch, rng: Array):
    scores = self.scores(params, batch['inputs'], rng=rng)
    # 'step' (the updates so far) is there in training only.
    return self.objective(scores, batch['labels'],
                          jnp.ones(batch['labels'].shape[:1], jnp.float32),
                          step=batch.get('step'))

  def eval_sums(self, params, batch: Batch) -> dict[str, Array]:
    scores = self.scores(params, batch['inputs'])
    loss, (weight, _) = self.objective(scores, batch['labels'],
                                       batch['weights'])
    return {'loss': loss, 'weight': weight}

  # --- The outer loop's side. --------------------------------------------

  def examples(self, split: str) -> Sequence[Example]:
    return load_split(self.config, split)

  def tokenizer_corpus(self):
    return _Texts(self.examples('train'))

  def train_dataset(self, tokenizer, *, process_index: int,
                    process_count: int):
    examples = self.examples('train')
    class_ids = (self.class_ids([label for _, label in examples])
                 if self.config.data.class_sampling != 'none' else None)
    return pipeline.train_dataset(
        self.config, tokenizer, examples, self.encode_label,
        class_ids=class_ids, process_index=process_index,
        process_count=process_count)

  def evaluator(self, tokenizer, mesh, split: str, num_examples: int = 0):
    return evaluate.Evaluator(self, tokenizer, mesh, split, num_examples)

  def check_labels(self, examples: Sequence[Example], split: str) -> None:
    """Raises DataError if a split's labels do not fit the task (the
    evaluator checks; nothing to check for regression)."""
    del examples, split

  def predict_lines(self, params, tokenizer, lines: Iterable[str], mesh, *,
                    warn) -> Iterator[str]:
    """One output line per input line: 'label<TAB>probability' or the value;
    an empty line gives an empty line."""
    del warn
    predict = jax.jit(self.scores)
    size = sharding.padded_batch_size(self.config.data.eval_batch_size, mesh)
    for rows, nonempty in pipeline.line_batches(
        self.config, tokenizer, iter(lines), size):
      scores = sharding.to_host(predict(params, sharding.to_mesh(rows, mesh)))
      for row, keep in zip(scores[:len(nonempty)], nonempty):
        yield self.format_prediction(row) if keep else ''

  # --- Benchmark and pictures. --------------------------------------------

  def benchmark(self) -> benchmark_lib.LabelledHooks:
    return benchmark_lib.LabelledHooks(self)

  def attention_layers(self) -> tuple[int, int]:
    """The encoder's layers; EncoderClassifier builds no decoder."""
    return self.config.model.num_encoder_layers, 0


class _Texts:
  """The texts of (text, label) examples, as 1-tuples for the tokenizer."""

  def __init__(self, examples):
    self.examples = examples

  def __len__(self) -> int:
    return len(self.examples)

  def __getitem__(self, index: int) -> tuple[str]:
    return (self.examples[index][0],)


@dataclasses.dataclass(frozen=True)
class Classification(_Labelled):
  """config.task='classification' with the run's class names, their
  weights (train.class_weights) and training counts (labels.json: the
  priors and margins of the imbalance losses and eval.logit_adjust_tau)."""
  labels: tuple[str, ...] = ()
  class_weights: tuple[float, ...] | None = None
  counts: tuple[int, ...] = ()

  RUN_FILES = (LABELS_FILE,)
  CURVE_SCORES = ('accuracy', 'macro_f1')
  BEST_METRICS = {'accuracy': 'max', 'macro_f1': 'max', 'roc_auc': 'max',
                  'balanced_accuracy': 'max', 'few_recall': 'max',
                  'log_loss': 'min', 'loss': 'min'}
  HEADLINE_METRICS = ('balanced_accuracy', 'macro_f1', 'accuracy',
                      'few_recall')

  @property
  def num_outputs(self) -> int:
    return 1 if self.sigmoid else len(self.labels)

  @property
  def multi_label(self) -> bool:
    return self.config.data.multi_label

  @property
  def sigmoid(self) -> bool:
    """Two classes, one logit: P(class 1) = sigmoid(logit)."""
    return self.config.train.loss == 'log_loss' and not self.multi_label

  def objective(self, scores: Array, labels: Array, weights: Array, *,
                step: Array | None = None):
    """(loss_sum, (weight_sum, {metric: (sum, count)})) of [B, outputs]
    scores. Class weights weight the loss only; the metrics (accuracy, log
    loss) are plain means over the examples.

    step: the updates so far, in training; with train.drw_start the class
    weights apply from that step on. Evaluation has no step and weighs the
    classes as training does from drw_start on, so that its reported loss
    is the objective the run ends with, whenever it is evaluated (as
    without train.drw_start).
    """
    t = self.config.train
    cw = (None if self.class_weights is None else
          losses.deferred_class_weights(self.class_weights, step,
                                        t.drw_start))
    if self.multi_label:  # labels [B, K] in {0, 1}: K independent sigmoids
      loss = log_loss = losses.binary_log_loss(scores, labels, weights)
      exact = jnp.all((scores > 0) == (labels > 0.5), axis=-1)
      correct = jnp.sum(exact * weights), jnp.sum(weights)
      return loss[0], (loss[1], {'accuracy': correct, 'log_loss': log_loss})
    if self.sigmoid:
      y = labels.astype(jnp.float32)
      loss = losses.binary_log_loss(
          scores[:, 0], y, weights if cw is None else weights * cw[labels])
      log_loss = losses.binary_log_loss(scores[:, 0], y, weights)
      predicted = (scores[:, 0] > 0).astype(labels.dtype)
    else:
      loss = {'cross_entropy': lambda: losses.cross_entropy(
                  scores, labels, weights, label_smoothing=t.label_smoothing,
                  class_weights=cw),
              'focal': lambda: losses.focal_loss(
                  scores, labels, weights, gamma=t.focal_gamma,
                  class_weights=cw),
              'hinge': lambda: losses.multiclass_hinge(
                  scores, labels, weights, class_weights=cw),
              'logit_adjusted': lambda: losses.logit_adjusted_cross_entropy(
                  scores, labels, weights, counts=self.training_counts(),
                  tau=t.logit_adjust_tau, class_weights=cw),
              'ldam': lambda: losses.ldam(
                  scores, labels, weights, counts=self.training_counts(),
                  max_margin=t.ldam_max_margin, class_weights=cw),
              'balanced_softmax': lambda: losses.balanced_softmax(
                  scores, labels, weights, counts=self.training_counts(),
                  class_weights=cw)}[t.loss]()
      log_loss = losses.cross_entropy(scores, labels, weights)
      predicted = jnp.argmax(scores, axis=-1)
    correct = jnp.sum((predicted == labels) * weights), jnp.sum(weights)
    return loss[0], (loss[1], {'accuracy': correct, 'log_loss': log_loss})

  def training_counts(self) -> tuple[int, ...]:
    """The training split's count per class; ValueError if not given."""
    if len(self.counts) != len(self.labels):
      raise ValueError(
          f'Classification has {len(self.counts)} training counts for '
          f'{len(self.labels)} classes: train.loss={self.config.train.loss} '
          'and eval.logit_adjust_tau need one per class (labels.json; '
          'prepare_classification sets them)')
    return self.counts

  def class_ids(self, labels) -> np.ndarray:
    index = {name: i for i, name in enumerate(self.labels)}
    return np.asarray([index[label] for label in labels], np.int32)

  def encode_label(self, label) -> np.ndarray:
    """A class id, or multi-label: the [K] float32 indicator of the set."""
    if self.multi_label:
      return np.asarray([name in label for name in self.labels], np.float32)
    return np.int32(self.labels.index(label))

  def probabilities(self, scores: np.ndarray) -> np.ndarray:
    """[N, num_outputs] scores -> [N, K] class probabilities (multi-label:
    each label's own).

    Post-hoc logit adjustment (eval.logit_adjust_tau = tau > 0; Menon et
    al. 2021, eq. 9): the softmax of logits - tau * log pi, pi the training
    prior, so the argmax is argmax_k f_k - tau log pi_k. It is applied here
    and only here: every evaluation's metrics (Evaluator -> metrics), the
    predictions it writes, --mode=predict and the final evaluation all take
    their probabilities from this method (format_prediction, metrics). The
    evaluation's 'loss' stays the training objective on the raw scores.
    """
    x = scores.astype(np.float64)
    if self.multi_label:
      return 1.0 / (1.0 + np.exp(-x))
    if self.sigmoid:
      p = 1.0 / (1.0 + np.exp(-x[:, 0]))
      return np.stack([1.0 - p, p], axis=1)
    tau = self.config.eval.logit_adjust_tau
    if tau:
      x = x - tau * losses.log_prior(self.training_counts())
    x = np.exp(x - x.max(axis=1, keepdims=True))
    return x / x.sum(axis=1, keepdims=True)

  def format_label(self, label) -> str:
    """The label as one TSV field (a set joined by data.label_separator)."""
    text = (self.config.data.label_separator.join(label) if self.multi_label
            else str(label))
    return text.replace('\t', ' ').replace('\n', ' ')

  def label_columns(self) -> tuple[str, ...]:
    return ('label',)

  def format_prediction(self, scores: np.ndarray) -> str:
    """'label<TAB>probability'; multi-label: the labels with probability >
    0.5 and their probabilities, each list joined by data.label_separator
    (both empty when none is)."""
    p = self.probabilities(scores[None])[0]
    if self.multi_label:
      chosen = np.flatnonzero(p > metrics_lib.MULTI_LABEL_THRESHOLD)
      sep = self.config.data.label_separator
      return (sep.join(self.labels[i] for i in chosen) + '\t' +
              sep.join(f'{p[i]:.4f}' for i in chosen))
    return f'{self.labels[int(np.argmax(p))]}\t{float(np.max(p)):.4f}'

  def prediction_columns(self) -> tuple[str, ...]:
    return ('prediction', 'probability')

  def metrics(self, targets: list, scores: np.ndarray) -> dict[str, Any]:
    labels = (np.stack([self.encode_label(t) for t in targets])
              if self.multi_label else self.class_ids(targets))
    return metrics_lib.classification_metrics(
        labels, self.probabilities(scores), self.labels,
        multi_label=self.multi_label,
        train_counts=self.counts if len(self.counts) == len(self.labels)
        else None)

  def check_labels(self, examples: Sequence[Example], split: str) -> None:
    """DataError if the split has a class the training split lacks."""
    seen = {name for _, label in examples for name in
            (label if self.multi_label else (str(label),))}
    unknown = sorted(seen - set(self.labels))
    if unknown:
      raise DataError(
          f'the {split!r} split has labels the training split does not '
          f'have: {unknown[:5]}; the model knows {list(self.labels)} '
          f'(WORKDIR/{LABELS_FILE}).')

  def random_labels(self, rng: np.random.Generator, rows: int) -> np.ndarray:
    """[rows] uniformly random int32 class ids (the benchmark's)."""
    return rng.integers(0, len(self.labels), rows, dtype=np.int32)

  def random_labels_note(self) -> str:
    return f'uniformly random labels of {len(self.labels)} classes'

  def pictures(self, run: base.PictureRun) -> list[str]:
    """The encoder's attention and the newest evaluation's confusion
    matrix (pictures.py)."""
    return pictures_lib.classification_pictures(run)

  def export_spec(self) -> base.ExportSpec:
    """BertForSequenceClassification with the class names. One sigmoid
    logit z (two classes, log_loss) becomes the logits (0, z), whose softmax
    is (1 - sigmoid(z), sigmoid(z)); eval.logit_adjust_tau is folded into
    the bias (Menon et al. 2021, eq. 9): the export predicts as
    --mode=predict does."""
    tau = self.config.eval.logit_adjust_tau
    head = None
    if self.sigmoid:
      head = (np.array([[0.0, 1.0]]), np.zeros(2))
    elif tau and not self.multi_label:
      head = (np.eye(len(self.labels)),
              -tau * losses.log_prior(self.training_counts()))
    problem = ('multi_label_classification' if self.multi_label else
               'single_label_classification')
    return _export_spec(self.config, self.labels, problem, head)


@dataclasses.dataclass(frozen=True)
class Regression(_Labelled):
  """config.task='regression': D standardised targets, named."""
  names: tuple[str, ...] = ('value',)
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)

  RUN_FILES = (TARGETS_FILE,)
  CURVE_SCORES = ('pearson', 'spearman')
  BEST_METRICS = {'pearson': 'max', 'spearman': 'max', 'mse': 'min',
                  'mae': 'min', 'loss': 'min'}
  HEADLINE_METRICS = ('pearson', 'spearman', 'mse')

  @property
  def num_outputs(self) -> int:
    return len(self.names)

  def objective(self, scores: Array, labels: Array, weights: Array, *,
                step: Array | None = None):
    del step  # no class weights to defer
    t = self.config.train
    if t.loss == 'huber':
      loss = losses.huber(scores, labels, weights, delta=t.huber_delta)
    else:
      loss = losses.mean_squared_error(scores, labels, weights)
    # MSE in the original units: each output's error times its std.
    std = jnp.asarray(self.std, jnp.float32)
    mse = losses.mean_squared_error(scores * std, labels * std, weights)
    return loss[0], (loss[1], {'mse': mse})

  def encode_label(self, value) -> np.ndarray:
    """A float (one target) or a tuple of D floats -> [D] standardised."""
    return ((np.atleast_1d(np.asarray(value, np.float64)) - self.mean) /
            self.std).astype(np.float32)

  def values(self, scores: np.ndarray) -> np.ndarray:
    """Standardised outputs [N, D] -> predictions in the original units:
    [N] for one target, else [N, D]."""
    values = scores.astype(np.float64) * self.std + np.asarray(self.mean)
    return values[:, 0] if self.num_outputs == 1 else values

  def format_label(self, value) -> str:
    """The target(s) as TSV fields, one per target."""
    return '\t'.join(str(v) for v in np.atleast_1d(value))

  def label_columns(self) -> tuple[str, ...]:
    return ('label',) if self.num_outputs == 1 else self.names

  def format_prediction(self, scores: np.ndarray) -> str:
    """The predicted values, tab-separated in the order of the targets."""
    return '\t'.join(f'{v:.4f}' for v in
                     np.atleast_1d(self.values(scores[None])[0]))

  def prediction_columns(self) -> tuple[str, ...]:
    return (('prediction',) if self.num_outputs == 1 else
            tuple(f'predicted {name}' for name in self.names))

  def metrics(self, targets: list, scores: np.ndarray) -> dict[str, Any]:
    result = metrics_lib.regression_metrics(np.asarray(targets, np.float64),
                                            self.values(scores))
    if self.num_outputs > 1:
      result['targets'] = list(self.names)
    return result

  def random_labels(self, rng: np.random.Generator, rows: int) -> np.ndarray:
    """[rows, D] standard normal float32 targets (the benchmark's)."""
    return rng.standard_normal((rows, self.num_outputs)).astype(np.float32)

  def random_labels_note(self) -> str:
    return 'standard normal targets'

  def pictures(self, run: base.PictureRun) -> list[str]:
    """The encoder's attention (pictures.py)."""
    return pictures_lib.encoder_pictures(run)

  def export_spec(self) -> base.ExportSpec:
    """BertForSequenceClassification for regression, its outputs in the
    targets' units: output * std + mean folded into the head."""
    return _export_spec(self.config, self.names, 'regression',
                        (np.diag(self.std), np.asarray(self.mean)))


def _export_spec(config: Config, names: Sequence[str], problem: str,
                 head) -> base.ExportSpec:
  """The labelled families' export: the pipeline's [BOS] + pieces + EOS
  (pipeline.encode_text), one label name per output."""
  return base.ExportSpec(
      'BertForSequenceClassification', bos=pipeline.starts_with_bos(config),
      eos=True, config={'id2label': {str(i): n for i, n in enumerate(names)},
                        'label2id': {n: i for i, n in enumerate(names)},
                        'problem_type': problem}, head=head)


# ---------------------------------------------------------------------------
# What a run learns from its training split, saved in the workdir.
# ---------------------------------------------------------------------------


def _read_or_create(path: str, create: bool, compute) -> dict:
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  if not create:
    raise ConfigError(f'{path} is missing: it is written when training '
                      'starts; train this workdir first')
  values = compute()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(values, f, indent=1)
  os.replace(path + '.tmp', path)
  return values


def _check_loss(config: Config, allowed: tuple[str, ...]) -> None:
  if config.train.loss not in allowed:
    raise ConfigError(f'train.loss={config.train.loss!r} does not fit '
                      f'task={config.task}: use one of {", ".join(allowed)}')


def class_weights(setting: str, counts: list[int], beta: float = 0.999
                  ) -> tuple[float, ...] | None:
  """train.class_weights -> one weight per class, or None for 'none'.
  beta: train.class_weights_beta, of 'effective_number'."""
  if setting == 'none':
    return None
  if setting == 'balanced':
    return tuple(float(w) for w in losses.balanced_class_weights(counts))
  if setting == 'effective_number':
    return tuple(float(w) for w in
                 losses.effective_number_weights(counts, beta))
  try:
    weights = tuple(float(w) for w in setting.split(','))
  except ValueError:
    weights = ()
  if len(weights) != len(counts) or min(weights, default=-1) < 0:
    raise ConfigError(
        f'train.class_weights={setting!r}: expected none, balanced, '
        f'effective_number, or {len(counts)} non-negative numbers separated '
        f'by commas, one per class in the order of WORKDIR/{LABELS_FILE}')
  return weights


def _check_multi_label(config: Config) -> None:
  """The settings that single-label classification has and multi-label
  does not."""
  t, data = config.train, config.data
  wrong = [(f'train.loss={t.loss!r}', "train.loss='log_loss' (one sigmoid "
            'per label)')] if t.loss != 'log_loss' else []
  if t.class_weights != 'none':
    wrong.append((f'train.class_weights={t.class_weights!r}',
                  "train.class_weights='none'"))
  if data.class_sampling != 'none':
    wrong.append((f'data.class_sampling={data.class_sampling!r}',
                  "data.class_sampling='none' (a text may hold several "
                  'classes)'))
  if wrong:
    raise ConfigError(
        'data.multi_label=true does not fit ' +
        ', '.join(w for w, _ in wrong) + ': use ' +
        ', '.join(u for _, u in wrong))


def prepare_classification(config: Config, workdir: str, *, create: bool
                           ) -> Classification:
  """The run's classes; labels.json holds their names and training counts
  (multi-label: the training texts holding each)."""
  _check_loss(config, SOFTMAX_LOSSES + ('log_loss',))
  if config.data.multi_label:
    _check_multi_label(config)
  _check_logit_adjustment(config)

  def compute():
    counts: dict[str, int] = {}
    examples = Classification(config).examples('train')
    for _, label in examples:
      for name in (label if config.data.multi_label else (str(label),)):
        counts[name] = counts.get(name, 0) + 1
    names = sorted(counts)
    values = {'labels': names, 'counts': [counts[n] for n in names],
              'multi_label': config.data.multi_label}
    if getattr(examples, 'record', None) is not None:  # data.imbalance_ratio
      values['long_tail'] = examples.record
    return values
  saved = _read_or_create(os.path.join(workdir, LABELS_FILE), create, compute)
  if saved.get('multi_label', False) != config.data.multi_label:
    raise ConfigError(
        f'{os.path.join(workdir, LABELS_FILE)} was written with '
        f'data.multi_label={saved.get("multi_label", False)}; this run asks '
        f'for {config.data.multi_label}: use the saved setting, a new '
        '--workdir, or --restart')
  if len(saved['labels']) < 2 and not config.data.multi_label:
    raise ConfigError(f'the training split has one class only '
                      f'({saved["labels"]}): nothing to classify')
  if (config.train.loss == 'log_loss' and len(saved['labels']) != 2 and
      not config.data.multi_label):
    raise ConfigError(
        f'train.loss=log_loss (one sigmoid output) is for two classes; the '
        f'training split has {len(saved["labels"])}: use cross_entropy, or '
        'data.multi_label=true for any number of labels per text')
  return Classification(config, tuple(saved['labels']),
                        class_weights(config.train.class_weights,
                                      saved['counts'],
                                      config.train.class_weights_beta),
                        tuple(saved['counts']))


def _check_logit_adjustment(config: Config) -> None:
  """eval.logit_adjust_tau adjusts a softmax over K classes' logits."""
  if config.eval.logit_adjust_tau and (config.task != 'classification' or
                                       config.data.multi_label or
                                       config.train.loss == 'log_loss'):
    raise ConfigError(
        f'eval.logit_adjust_tau={config.eval.logit_adjust_tau} (post-hoc '
        'logit adjustment) is for task=classification with softmax outputs '
        f'(train.loss one of {", ".join(SOFTMAX_LOSSES)}), not '
        f'task={config.task}, train.loss={config.train.loss}, '
        f'data.multi_label={config.data.multi_label}: use '
        'eval.logit_adjust_tau=0')


def target_names(config: Config) -> tuple[str, ...]:
  """The regression targets: the columns of data.label_column (users'
  files), or 'rating' (and 'spread') for VADER."""
  if config.data.source == 'vader':
    return ('rating', 'spread') if config.data.rater_spread else ('rating',)
  if config.data.source == 'text':
    return tuple(c.strip() for c in config.data.label_column.split(','))
  return ('value',)


def prepare_regression(config: Config, workdir: str, *, create: bool
                       ) -> Regression:
  """The run's targets; targets.json holds their names, training means and
  standard deviations (a constant target gets std 1)."""
  _check_loss(config, REGRESSION_LOSSES)
  _check_logit_adjustment(config)
  names = target_names(config)

  def compute():
    values = np.asarray([v for _, v in Regression(config).examples('train')],
                        np.float64).reshape(-1, len(names))
    return {'names': list(names),
            'mean': values.mean(axis=0).tolist(),
            'std': [s or 1.0 for s in values.std(axis=0).tolist()],
            'examples': len(values)}
  saved = _read_or_create(os.path.join(workdir, TARGETS_FILE), create,
                          compute)
  # Runs before several targets existed saved one mean and std as floats.
  saved_names = tuple(saved.get('names', ('value',)))
  if len(saved_names) != len(names):
    raise ConfigError(
        f'{os.path.join(workdir, TARGETS_FILE)} holds {len(saved_names)} '
        f'target(s) {list(saved_names)}; this run asks for {list(names)}: '
        'use the saved targets, a new --workdir, or --restart')
  return Regression(config, names,
                    tuple(np.atleast_1d(saved['mean']).tolist()),
                    tuple(np.atleast_1d(saved['std']).tolist()))


# The class count of the classification task `benchmark_task` builds.
BENCHMARK_CLASSES = 4


def benchmark_task(config: Config) -> Classification | Regression:
  """The task --mode=benchmark measures, from the config alone (no workdir,
  no data): a classification of BENCHMARK_CLASSES classes (2 with
  train.loss='log_loss'), no class weights and equal training counts (the
  imbalance losses at their balanced case: the same computation, so the
  same speed); a regression on standardised targets (mean 0, std 1)."""
  regression = config.task == 'regression'
  _check_loss(config, REGRESSION_LOSSES if regression else
              SOFTMAX_LOSSES + ('log_loss',))
  if regression:
    return Regression(config)
  classes = 2 if config.train.loss == 'log_loss' else BENCHMARK_CLASSES
  return Classification(
      config, labels=tuple(f'class_{i}' for i in range(classes)),
      class_weights=None, counts=(1,) * classes)


# ---------------------------------------------------------------------------
# The data: (text, label) pairs of one split of data.source.
# ---------------------------------------------------------------------------

TASKS = ('classification', 'regression')
_LOADERS = {
    'vader': sources.vader_examples,
    'bible_genre': sources.bible_genre_examples,
    'text': files.text_examples,
    'tfds': sources.tfds_examples,
    'toy': lambda config, split: sources.toy_examples(
        split, config.task, multi_label=config.data.multi_label),
}
# The sources whose labels may be sets (data.multi_label).
MULTI_LABEL_SOURCES = ('vader', 'text', 'toy')


def load_split(config: Config, split: str) -> Sequence[Example]:
  """The (text, label) pairs of one split of `config.data.source`
  (sources.py, files.py).

  Args:
    config: the whole config; `task` says whether labels are class names
      ('classification') or floats ('regression').
    split: 'train', 'valid' or 'test'.
  Returns:
    A random-access sequence (len, [i]) of (str, str | float), picklable.
  Raises:
    DataError: the data is missing or malformed, or does not fit the task.
  """
  check_split(split)
  if config.task not in TASKS:
    raise DataError(f'task={config.task!r} has no labelled data: '
                    'transformer/tasks/labelled/ serves '
                    f'{" and ".join(TASKS)}')
  if config.data.source not in _LOADERS:
    raise DataError(
        f'data.source={config.data.source!r} is not a source of labelled '
        f'text: expected one of {", ".join(_LOADERS)}')
  if config.data.multi_label and (config.task != 'classification' or
                                  config.data.source not in
                                  MULTI_LABEL_SOURCES):
    raise DataError(
        f'data.multi_label=true (task={config.task}, data.source='
        f'{config.data.source}): sets of labels are for task=classification '
        f'with data.source {", ".join(MULTI_LABEL_SOURCES)}')
  examples = _LOADERS[config.data.source](config, split)
  if split == 'train':  # data.imbalance_ratio: a long tail, train only
    examples = long_tail.subsample(config, examples)
  return examples


def describe(config: Config) -> str:
  """One line naming the data set, for logs."""
  data = config.data
  if data.source == 'vader':
    labels = ('the mean rating (-4..4)' if data.sentiment_classes == 0 else
              f'{data.sentiment_classes} classes of the mean rating')
    if data.rater_spread:
      labels += " and the raters' standard deviation"
    if data.multi_label:
      labels = (f'the sentiments that at least '
                f'{sources.PERCEIVED_SHARE:.0%} of the raters gave '
                '(multi-label)')
    return ('VADER human-rated sentiment (Hutto & Gilbert, ICWSM 2014; '
            f'tweets, movie and Amazon reviews, NYT editorials): {labels}')
  if data.source == 'bible_genre':
    return (f'Bible verses (World English Bible) labelled with their book\'s '
            f'genre ({len(sources.GENRES)} classes), split by chapter')
  if data.source == 'text':
    return (f'labelled text files in {data.text_dir or "(no data.text_dir)"} '
            f'(text column {data.text_column!r}, label {data.label_column!r})')
  if data.source == 'tfds':
    spec = sources.TFDS_SETS.get(data.tfds_name)
    test = f', test = its {spec.test} split' if spec else ''
    return (f'TFDS {data.tfds_name} (valid = ~10% held out of train{test})')
  if data.source == 'toy':
    if data.multi_label:
      return 'toy multi-label: the colour words (of 3) in the text'
    return ('toy classification: the majority colour word of 3' if
            config.task == 'classification' else
            'toy regression: count of "up" minus count of "down"')
  return f'data.source={data.source!r}'
