"""Language modelling: a decoder-only Transformer predicting the next token.

The model family behind `config.task='language_model'` (GPT; Radford et al.
2018): `model.LanguageModel`, the translation decoder's layers without
encoder-decoder attention, trained with next-token softmax cross-entropy over
the real tokens of packed rows (documents kept apart by the masks; data.py).
Evaluation (evaluate.py) reports, over every token of a split:

  loss        mean NLL per token in nats (the training objective without
              label smoothing or z-loss)
  perplexity  exp(loss)
  bits_per_character  total NLL / ln 2 / the characters of the text (as
              data.eval_text_size counts them), so that models with different
              tokenizers (SentencePiece, characters) compare on one scale;
  bits_per_byte       the same per UTF-8 byte.

The package:

  data.py       documents of each source (Bible, users' text files, TFDS
                lm1b, toy), the training pipeline, evaluation batches
  generate.py   cached generation and prompts -> continuations
                (`--mode=generate`, `--mode=predict`)
  evaluate.py   the `Evaluator`
  benchmark.py  what --mode=benchmark measures (FLOPs, generation speed)
  pictures.py   --mode=visualize: the causal self-attention of a text
  ngram.py      the Kneser-Ney n-gram baseline (python -m transformer.ngram)
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from transformer import losses
from transformer.config import PAD_ID, Config, ConfigError
from transformer.model import LanguageModel
from transformer.tasks import base
from transformer.tasks.language_model import benchmark as benchmark_lib
from transformer.tasks.language_model import data
from transformer.tasks.language_model import evaluate
from transformer.tasks.language_model import generate
from transformer.tasks.language_model import pictures as pictures_lib

Array = jax.Array
Batch = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class LanguageModelTask(base.Task):
  """config.task='language_model'. Hashable: jit takes it as static."""
  config: Config

  EXTRA_MODES: ClassVar[tuple[str, ...]] = ('generate',)
  CURVE_SCORES: ClassVar[tuple[str, ...]] = ('bits_per_character',)
  BEST_METRICS: ClassVar[dict[str, str]] = {
      'loss': 'min', 'perplexity': 'min', 'bits_per_character': 'min',
      'bits_per_byte': 'min'}
  HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ('bits_per_character',
                                                 'perplexity')
  SENTENCE_PURPOSE: ClassVar[str] = 'to continue'

  @classmethod
  def missing_split(cls, config: Config, split: str) -> str | None:
    return data.missing_split(config, split)

  def try_it(self, command: str) -> str:
    return f'generate:  {command} --mode=generate --prompt="In the beginning"'

  # --- The pure core. ----------------------------------------------------

  def model(self, *, sow_weights: bool = False) -> LanguageModel:
    return LanguageModel(self.config.model, sow_weights=sow_weights,
                         dropout_impl=self.config.train.dropout_rng)

  def init_params(self, rng: Array):
    return LanguageModel(self.config.model).init(
        rng, jnp.ones((1, 8), jnp.int32))['params']

  def forward(self, params, batch: Batch, *, rng: Array | None) -> Array:
    """Logits [B, L, vocab]; logits[:, t] predicts targets[:, t]."""
    return self.model().apply(
        {'params': params}, batch['targets'], batch.get('targets_positions'),
        batch.get('targets_segmentation'), deterministic=rng is None,
        rngs=None if rng is None else {'dropout': rng})

  def loss_sums(self, params, batch: Batch, rng: Array):
    """Next-token cross-entropy over the real tokens (label smoothing and
    z-loss as configured), with the plain 'nll', whose exponentiated mean
    is the perplexity: (loss_sum, (weight_sum, {metric: (sum, count)}))."""
    train = self.config.train
    logits = self.forward(params, batch, rng=rng)
    weights = (batch['targets'] != PAD_ID).astype(jnp.float32)
    return losses.next_token_loss(
        logits, batch['targets'], weights,
        label_smoothing=train.label_smoothing, z_loss=train.z_loss)

  def eval_sums(self, params, batch: Batch) -> dict[str, Array]:
    """{'nll': summed NLL of the real tokens, 'tokens': their count}."""
    logits = self.forward(params, batch, rng=None)
    weights = batch['weights'] * (batch['targets'] != PAD_ID)
    nll, count = losses.cross_entropy(logits, batch['targets'], weights)
    return {'nll': nll, 'tokens': count}

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

  def generate_texts(self, params, tokenizer, prompts: Iterable[str], mesh,
                     *, warn, max_new_tokens: int | None = None
                     ) -> Iterator[tuple[str, str]]:
    """(prompt, continuation) per prompt, in order, batched by
    data.eval_batch_size; prompt i samples with key fold_in(seed, i)."""
    return generate.generate_texts(self.config, params, tokenizer, prompts,
                                   mesh, warn=warn,
                                   max_new_tokens=max_new_tokens)

  def predict_lines(self, params, tokenizer, lines: Iterable[str], mesh, *,
                    warn) -> Iterator[str]:
    """--mode=predict as --mode=generate with prompts: one JSON object per
    line."""
    for prompt, continuation in self.generate_texts(
        params, tokenizer, (line.rstrip('\n') for line in lines), mesh,
        warn=warn):
      yield json.dumps({'prompt': prompt, 'continuation': continuation},
                       ensure_ascii=False)

  # --- Optional hooks. ---------------------------------------------------

  def train_log_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    """Adds the perplexity exp(nll) of the training batches."""
    if 'nll' not in metrics:
      return metrics
    return {**metrics, 'perplexity': float(np.exp(metrics['nll']))}

  def benchmark(self) -> benchmark_lib.LanguageModelBenchmark:
    return benchmark_lib.LanguageModelBenchmark(self)

  def attention_layers(self) -> tuple[int, int]:
    """No encoder: --layers picks among the decoder's layers."""
    return 0, self.config.model.num_decoder_layers

  def pictures(self, run: base.PictureRun) -> list[str]:
    return pictures_lib.pictures(run)

  def export_spec(self) -> base.ExportSpec:
    """GPT-2; the model reads BOS before a text (shift_right), so the
    exported tokenizer puts it there."""
    return base.ExportSpec('GPT2LMHeadModel', bos=True)


def prepare(config: Config, workdir: str, *, create: bool
            ) -> LanguageModelTask:
  """A language model needs nothing from the data beyond the tokenizer."""
  del workdir, create
  if config.model.num_decoder_layers <= 0:
    raise ConfigError('task=language_model needs model.num_decoder_layers '
                      '>= 1 (the decoder-only stack)')
  return LanguageModelTask(config)


def benchmark_task(config: Config) -> LanguageModelTask:
  """The task --mode=benchmark measures: needs no run."""
  return prepare(config, '', create=False)


__all__ = ['LanguageModelTask', 'benchmark_task', 'prepare']
