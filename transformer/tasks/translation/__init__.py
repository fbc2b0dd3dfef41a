"""Translation: the encoder-decoder Transformer of the paper.

The family behind `config.task='translation'`: teacher-forced next-token
cross-entropy for training (sec. 5.4's label smoothing), beam search and
sacreBLEU for evaluation, translation of lines for `--mode=translate` and
`--mode=predict`.

  sources.py    the parallel corpora: Bible, text files, TFDS, toy
  pipeline.py   grain batches for training (packed) and evaluation
  decode.py     greedy and beam search over the key/value cache
  evaluate.py   the evaluator (beam search, sacreBLEU) and translate_lines
  benchmark.py  --mode=benchmark's hooks: FLOPs, decoding, input pipeline
  pictures.py   --mode=visualize: the three kinds of attention
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from transformer import losses
from transformer.config import Config, PAD_ID
from transformer.model import Transformer
from transformer.tasks import base
from transformer.tasks.translation import benchmark as benchmark_lib
from transformer.tasks.translation import evaluate
from transformer.tasks.translation import pictures as pictures_lib
from transformer.tasks.translation import pipeline
from transformer.tasks.translation import sources

Array = jax.Array
Batch = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class Translation(base.Task):
  """config.task='translation'. Hashable: jit takes it as a static argument."""
  config: Config

  EXTRA_MODES = ('translate',)
  CURVE_SCORES = ('bleu',)
  BEST_METRICS = {'bleu': 'max', 'chrf': 'max', 'accuracy': 'max',
                  'nll': 'min', 'perplexity': 'min', 'loss': 'min'}
  HEADLINE_METRICS = ('bleu', 'chrf')
  SENTENCE_PURPOSE = 'to translate'

  def try_it(self, command: str) -> str:
    """The line that ends a training run's report."""
    return ('translate: echo "En el principio creó Dios los cielos y la '
            f'tierra." | {command} --mode=translate')

  # --- The pure core: what the jitted train and eval steps call. ---------

  def model(self, *, sow_weights: bool = False) -> Transformer:
    return Transformer(self.config.model, sow_weights=sow_weights,
                       dropout_impl=self.config.train.dropout_rng)

  def init_params(self, rng: Array):
    tokens = jnp.ones((1, 8), jnp.int32)
    return Transformer(self.config.model).init(rng, tokens, tokens)['params']

  def forward(self, params, batch: Batch, *, rng: Array | None) -> Array:
    """Logits [B, T, vocab] of the teacher-forced model; dropout iff rng."""
    return self.model().apply(
        {'params': params}, batch['inputs'], batch['targets'],
        batch.get('inputs_positions'), batch.get('targets_positions'),
        batch.get('inputs_segmentation'), batch.get('targets_segmentation'),
        deterministic=rng is None,
        rngs=None if rng is None else {'dropout': rng})

  def loss_sums(self, params, batch: Batch, rng: Array):
    """One (micro-)batch as (loss_sum, (weight_sum, {metric: (sum, count)})).

    The loss is the training objective (label-smoothed, with z-loss); the
    metric 'nll' is the plain negative log-likelihood of the targets, whose
    exponentiated mean is the perplexity.
    """
    train = self.config.train
    logits = self.forward(params, batch, rng=rng)
    weights = (batch['targets'] != PAD_ID).astype(jnp.float32)
    return losses.next_token_loss(
        logits, batch['targets'], weights,
        label_smoothing=train.label_smoothing, z_loss=train.z_loss)

  def eval_sums(self, params, batch: Batch) -> dict[str, Array]:
    """Sums over one batch: smoothed loss, NLL, correct tokens, token count."""
    logits = self.forward(params, batch, rng=None)
    weights = (batch['targets'] != PAD_ID).astype(jnp.float32)
    if 'weights' in batch:  # rows that only pad the last batch
      weights = weights * batch['weights'][:, None]
    loss, count = losses.cross_entropy(
        logits, batch['targets'], weights,
        label_smoothing=self.config.train.label_smoothing)
    nll, _ = losses.cross_entropy(logits, batch['targets'], weights)
    correct, _ = losses.token_accuracy(logits, batch['targets'], weights)
    return {'loss': loss, 'nll': nll, 'correct': correct, 'tokens': count}

  # --- The outer loop's side: data, evaluation, prediction. --------------

  def tokenizer_corpus(self) -> Sequence[tuple[str, ...]]:
    """What the tokenizer is trained on: both sides of the training pairs."""
    return sources.load_split(self.config.data, 'train')

  def train_dataset(self, tokenizer, *, process_index: int,
                    process_count: int):
    return pipeline.train_dataset(self.config, tokenizer,
                                  process_index=process_index,
                                  process_count=process_count)

  def evaluator(self, tokenizer, mesh, split: str, num_examples: int = 0):
    """Beam search and sacreBLEU on a split (`evaluate.Evaluator`)."""
    return evaluate.Evaluator(self, tokenizer, mesh, split, num_examples)

  def predict_lines(self, params, tokenizer, lines: Iterable[str], mesh, *,
                    warn) -> Iterator[str]:
    """One translation per line, in order (empty lines stay empty)."""
    return evaluate.translate_lines(params, self.config, tokenizer, lines,
                                    mesh, warn=warn)

  # --- Optional hooks. ----------------------------------------------------

  def train_log_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    """Adds the perplexity exp(nll), which compares with the evaluation's."""
    if 'nll' not in metrics:
      return metrics
    return {**metrics, 'perplexity': float(np.exp(metrics['nll']))}

  def benchmark(self) -> benchmark_lib.TranslationHooks:
    """Rates in target tokens, the encoder-decoder's FLOPs, decoding and
    the input pipeline (`benchmark.TranslationHooks`)."""
    return benchmark_lib.TranslationHooks(self)

  def pictures(self, run: base.PictureRun) -> list[str]:
    """The sentence's greedy translation; encoder, decoder and cross
    attention (`pictures.draw_run`)."""
    return pictures_lib.draw_run(run)


def prepare(config: Config, workdir: str, *, create: bool) -> Translation:
  """Translation needs nothing from the training data beyond the tokenizer."""
  del workdir, create
  return Translation(config)


def benchmark_task(config: Config) -> Translation:
  """The task --mode=benchmark measures: needs no run."""
  return prepare(config, '', create=False)


__all__ = ['Translation', 'benchmark_task', 'prepare']
