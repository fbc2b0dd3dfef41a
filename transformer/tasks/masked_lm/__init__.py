"""Masked language modelling: BERT's pretraining objective (Devlin et al.
2019, sec. 3.1).

The model family behind `config.task='masked_lm'`: `model.MaskedLanguageModel`,
the Transformer's encoder (its parameters under 'encoder', as a
classifier's, so that one warm-starts from it), BERT's transform (dense,
activation, LayerNorm) and an output projection tied to the token
embedding. 15% of the ordinary tokens of each training batch are chosen
(train.mask_rate), of those 80% become [MASK] (MASK_ID; the tokenizer
reserves '<mask>' there), 10% a random token and 10% stay
(masking.py); the loss is the cross-entropy of the original tokens at the
chosen positions only, as (sum, weight). The masking is drawn inside the
jitted train step from the step's key, so a resumed run is exact.
Evaluation (evaluate.py) masks each split once with a fixed key, so that
its numbers compare across steps and runs: the masked-token `loss` (nats),
`accuracy` and `perplexity` = exp(loss).

The package:

  masking.py    the corruption: (tokens, key) -> (inputs, weights)
  gather.py     training projects only the chosen positions (exact)
  data.py       documents (the language model's sources, and the text
                column of users' labelled files), packed rows with BOS
                ([CLS]) and EOS ([SEP]), masked evaluation batches
  evaluate.py   the `Evaluator`
  fill.py       --mode=predict: each [MASK] of a line filled
  benchmark.py  what --mode=benchmark measures (FLOPs, rates)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from transformer import losses
from transformer.config import Config, ConfigError
from transformer.model import MaskedLanguageModel
from transformer.tasks import base
from transformer.tasks.language_model import data as lm_data
from transformer.tasks.masked_lm import benchmark as benchmark_lib
from transformer.tasks.masked_lm import data
from transformer.tasks.masked_lm import evaluate
from transformer.tasks.masked_lm import fill
from transformer.tasks.masked_lm import gather
from transformer.tasks.masked_lm import masking

Array = jax.Array
Batch = dict[str, Array]
MASK_PIECE = '<mask>'


@dataclasses.dataclass(frozen=True)
class MaskedLMTask(base.Task):
  """config.task='masked_lm'. Hashable: jit takes it as static."""
  config: Config

  rate_unit: ClassVar[str] = 'masked_tokens'  # what the loss averages over
  CURVE_SCORES: ClassVar[tuple[str, ...]] = ('accuracy',)
  BEST_METRICS: ClassVar[dict[str, str]] = {
      'loss': 'min', 'perplexity': 'min', 'accuracy': 'max'}
  HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ('loss', 'accuracy')
  SENTENCE_PURPOSE: ClassVar[str] = 'to fill'
  RESERVED_PIECES: ClassVar[tuple[str, ...]] = (MASK_PIECE,)

  @classmethod
  def missing_split(cls, config: Config, split: str) -> str | None:
    return data.missing_split(config, split)

  def try_it(self, command: str) -> str:
    return (f'fill in:   echo "In the beginning God [MASK] the heavens" | '
            f'{command} --mode=predict')

  # --- The pure core. ----------------------------------------------------

  def model(self, *, sow_weights: bool = False) -> MaskedLanguageModel:
    return MaskedLanguageModel(self.config.model, sow_weights=sow_weights,
                               dropout_impl=self.config.train.dropout_rng)

  def init_params(self, rng: Array):
    return MaskedLanguageModel(self.config.model).init(
        rng, jnp.ones((1, 8), jnp.int32))['params']

  def logits(self, params, inputs: Array, positions: Array | None = None,
             segmentation: Array | None = None, *,
             rng: Array | None = None) -> Array:
    """[B, L] ids (some masked) -> [B, L, vocab] float32 logits of the
    original tokens; dropout with `rng`, none without."""
    return self.model().apply(
        {'params': params}, inputs, positions, segmentation,
        deterministic=rng is None,
        rngs=None if rng is None else {'dropout': rng})

  def loss_sums(self, params, batch: Batch, rng: Array):
    """BERT's loss: the batch masked with a key drawn from the step's
    (masking.py), cross-entropy of the original tokens at the chosen
    positions (label smoothing and z-loss as configured), with the plain
    'nll' and the 'accuracy': (loss_sum, (weight_sum, metric_sums))."""
    train = self.config.train
    mask_rng, dropout_rng = jax.random.split(rng)
    targets = batch['targets']
    inputs, weights = masking.mask_tokens(
        targets, mask_rng, self.config.model.vocab_size,
        rate=train.mask_rate, mask_share=train.mask_token_rate,
        random_share=train.random_token_rate)
    model = self.model()
    encoded = model.apply(
        {'params': params}, inputs, batch.get('targets_positions'),
        batch.get('targets_segmentation'), deterministic=False,
        rngs={'dropout': dropout_rng}, method=MaskedLanguageModel.encode)
    predict = lambda h: model.apply({'params': params}, h,
                                    method=MaskedLanguageModel.predict)

    def objective(logits, targets, weights):
      loss, (weight, metrics) = losses.next_token_loss(
          logits, targets, weights, label_smoothing=train.label_smoothing,
          z_loss=train.z_loss)
      correct, _ = losses.token_accuracy(logits, targets, weights)
      return loss, (weight, {**metrics, 'accuracy': (correct, weight)})

    # Only the chosen positions are projected onto the vocabulary
    # (gather.py): the same loss, without most of the step's FLOPs.
    return gather.loss_at_chosen(predict, encoded, targets, weights,
                                 rate=train.mask_rate, loss_fn=objective)

  def predictions(self, params, batch: Batch) -> Array:
    """[B, L] argmax of the logits of an evaluation batch (its 'inputs')."""
    logits = self.logits(params, batch['inputs'], batch['targets_positions'],
                         batch['targets_segmentation'])
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  def eval_sums(self, params, batch: Batch) -> dict[str, Array]:
    """{'nll', 'correct', 'tokens'} summed over the chosen positions of a
    masked evaluation batch (data.eval_batches)."""
    logits = self.logits(params, batch['inputs'], batch['targets_positions'],
                         batch['targets_segmentation'])
    nll, count = losses.cross_entropy(logits, batch['targets'],
                                      batch['weights'])
    correct, _ = losses.token_accuracy(logits, batch['targets'],
                                       batch['weights'])
    return {'nll': nll, 'correct': correct, 'tokens': count}

  # --- The outer loop's side. --------------------------------------------

  def tokenizer_corpus(self):
    return data.tokenizer_corpus(self.config)

  def train_dataset(self, tokenizer, *, process_index: int,
                    process_count: int):
    return data.train_dataset(self.config, tokenizer,
                              process_index=process_index,
                              process_count=process_count)

  def evaluator(self, tokenizer, mesh, split: str,
                num_examples: int = 0) -> evaluate.Evaluator:
    return evaluate.Evaluator(self, tokenizer, mesh, split, num_examples)

  def predict_lines(self, params, tokenizer, lines: Iterable[str], mesh, *,
                    warn) -> Iterator[str]:
    """Each [MASK] of a line filled: one JSON object per line (fill.py)."""
    return fill.fill_lines(self, params, tokenizer, lines, mesh, warn=warn)

  # --- Optional hooks. ---------------------------------------------------

  def train_log_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    """Adds the perplexity exp(nll) of the masked tokens."""
    if 'nll' not in metrics:
      return metrics
    return {**metrics, 'perplexity': float(np.exp(metrics['nll']))}

  def benchmark(self) -> benchmark_lib.MaskedLMBenchmark:
    return benchmark_lib.MaskedLMBenchmark(self)

  def attention_layers(self) -> tuple[int, int]:
    """The encoder's layers; MaskedLanguageModel builds no decoder."""
    return self.config.model.num_encoder_layers, 0

  def export_spec(self) -> base.ExportSpec:
    """BERT's masked LM; a text is [BOS] pieces [EOS] ([CLS] ... [SEP]), as
    the documents and --mode=predict's lines are."""
    return base.ExportSpec('BertForMaskedLM', bos=True, eos=True)


def prepare(config: Config, workdir: str, *, create: bool) -> MaskedLMTask:
  """A masked LM needs nothing from the data beyond the tokenizer; the
  settings are checked before any work."""
  del workdir, create
  if config.model.num_encoder_layers <= 0:
    raise ConfigError('task=masked_lm needs model.num_encoder_layers >= 1 '
                      '(the encoder stack)')
  if config.data.source not in lm_data.SOURCES:
    raise ConfigError(
        f'data.source={config.data.source!r} has no text for '
        f'task=masked_lm: expected one of {", ".join(lm_data.SOURCES)} '
        "('text' also reads the text column of labelled train.tsv/.csv/"
        '.jsonl files)')
  if config.model.vocab_size <= masking.FIRST_ORDINARY_ID:
    raise ConfigError(
        f'model.vocab_size={config.model.vocab_size} leaves no ordinary '
        f'token: ids 0-{masking.FIRST_ORDINARY_ID - 1} are PAD, UNK, BOS, '
        f'EOS and MASK; set it to {masking.FIRST_ORDINARY_ID + 1} or more')
  return MaskedLMTask(config)


def benchmark_task(config: Config) -> MaskedLMTask:
  """The task --mode=benchmark measures: needs no run."""
  return prepare(config, '', create=False)


__all__ = ['MaskedLMTask', 'benchmark_task', 'prepare']
