"""Language modelling: a decoder-only Transformer predicting the next token.

The model family behind `config.task='language_model'` (GPT; Radford et al.
2018): `model.LanguageModel`, the translation decoder's layers without
encoder-decoder attention, trained with next-token softmax cross-entropy over
the real tokens of packed rows (documents kept apart by the masks;
transformer/data/lm.py). Evaluation reports, over every token of a split:

  loss        mean NLL per token in nats (the training objective without
              label smoothing or z-loss)
  perplexity  exp(loss)
  bits_per_character  total NLL / ln 2 / the characters of the text (as
              lm.eval_text_size counts them), so that models with different
              tokenizers (SentencePiece, characters) compare on one scale;
  bits_per_byte       the same per UTF-8 byte.

`--mode=generate` continues prompts (transformer/generate.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from transformer import losses
from transformer.config import PAD_ID, Config, ConfigError
from transformer.model import LanguageModel
from transformer.tasks import translation

Array = jax.Array
Batch = dict[str, Array]

# Prompts are padded to a multiple of this many tokens (fewer compilations).
PROMPT_BUCKET = 16
# Sample continuations in every evaluation's JSON and the final report.
EVAL_SAMPLES, EVAL_SAMPLE_WORDS, EVAL_SAMPLE_TOKENS = 3, 6, 64


@dataclasses.dataclass(frozen=True)
class LanguageModelTask:
  """config.task='language_model'. Hashable: jit takes it as static."""
  config: Config

  rate_unit = 'tokens'

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

  # Translation's objective, read through self.forward: next-token
  # cross-entropy over the real tokens (label smoothing and z-loss as
  # configured) and the plain 'nll', whose exponentiated mean is the
  # perplexity.
  loss_sums = translation.Translation.loss_sums

  def eval_sums(self, params, batch: Batch) -> dict[str, Array]:
    """{'nll': summed NLL of the real tokens, 'tokens': their count}."""
    logits = self.forward(params, batch, rng=None)
    weights = batch['weights'] * (batch['targets'] != PAD_ID)
    nll, count = losses.cross_entropy(logits, batch['targets'], weights)
    return {'nll': nll, 'tokens': count}

  # --- The outer loop's side. --------------------------------------------

  def tokenizer_corpus(self):
    from transformer.data import lm  # pylint: disable=g-import-not-at-top
    return lm.tokenizer_corpus(self.config)

  def train_dataset(self, tokenizer, *, process_index: int,
                    process_count: int):
    from transformer.data import lm  # pylint: disable=g-import-not-at-top
    return lm.train_dataset(self.config, tokenizer,
                            process_index=process_index,
                            process_count=process_count)

  def evaluator(self, tokenizer, mesh, split: str, num_examples: int = 0):
    return Evaluator(self, tokenizer, mesh, split, num_examples)

  def generate_texts(self, params, tokenizer, prompts: Iterable[str], mesh,
                     *, warn, max_new_tokens: int | None = None
                     ) -> Iterator[tuple[str, str]]:
    """(prompt, continuation) per prompt, in order, batched by
    data.eval_batch_size; prompt i samples with key fold_in(seed, i)."""
    from transformer import generate  # pylint: disable=g-import-not-at-top
    from transformer import train as train_lib  # pylint: disable=g-import-not-at-top
    settings = self.config.generate
    if max_new_tokens is not None:
      settings = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
    ways = train_lib.data_parallel_size(mesh)
    size = -(-self.config.data.eval_batch_size // ways) * ways
    seed = jax.random.key(settings.seed)
    for number, batch in _batches(prompts, size):
      ids = [self._prompt_ids(tokenizer, p, settings.max_new_tokens, warn)
             for p in batch]
      width = -(-max(max(map(len, ids)), 1) // PROMPT_BUCKET) * PROMPT_BUCKET
      rows = np.full((size, width), PAD_ID, np.int32)
      lengths = np.zeros(size, np.int32)
      for i, row in enumerate(ids):
        rows[i, :len(row)], lengths[i] = row, len(row)
      keys = jax.vmap(jax.random.fold_in, (None, 0))(
          seed, jnp.arange(number, number + size))
      out = np.asarray(generate.generate(params, self.config.model, rows,
                                         lengths, keys, settings))
      for i, prompt in enumerate(batch):
        yield prompt, _continuation(tokenizer, ids[i],
                                    generate.continuation_ids(out[i]))

  def _prompt_ids(self, tokenizer, prompt: str, new: int, warn) -> list[int]:
    ids = tokenizer.encode(prompt)
    model = self.config.model
    room = model.max_length - new
    if model.positions == 'learned' and len(ids) > room:
      if room <= 0:
        raise ConfigError(
            f'generate.max_new_tokens={new} leaves no room for a prompt in '
            f'model.max_length={model.max_length} learned positions: lower '
            'generate.max_new_tokens')
      warn(f'prompt of {len(ids)} tokens: keeping its last {room}, so that '
           f'it and generate.max_new_tokens={new} fit model.max_length='
           f'{model.max_length}')
      ids = ids[-room:]
    return ids

  def predict_lines(self, params, tokenizer, lines: Iterable[str], mesh, *,
                    warn) -> Iterator[str]:
    """--mode=predict as --mode=generate with prompts: one JSON object per
    line."""
    for prompt, continuation in self.generate_texts(
        params, tokenizer, (line.rstrip('\n') for line in lines), mesh,
        warn=warn):
      yield json.dumps({'prompt': prompt, 'continuation': continuation},
                       ensure_ascii=False)


def _batches(items: Iterable[str], size: int
             ) -> Iterator[tuple[int, list[str]]]:
  """(index of the first, up to `size` items), reading `items` lazily."""
  batch, first = [], 0
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield first, batch
      batch, first = [], first + size
  if batch:
    yield first, batch


def _continuation(tokenizer, prompt_ids: list[int], new_ids: list[int]
                  ) -> str:
  """The text the new tokens add to the prompt. Decoded together with the
  prompt, since SentencePiece drops a piece's leading space at the start of
  a text; falls back to the new tokens alone if the prompt does not decode
  to a prefix."""
  prompt = tokenizer.decode(prompt_ids)
  full = tokenizer.decode(list(prompt_ids) + list(new_ids))
  return full[len(prompt):] if full.startswith(prompt) else tokenizer.decode(
      new_ids)


# ---------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------


def _pad_rows(batch: dict[str, np.ndarray], multiple: int
              ) -> dict[str, np.ndarray]:
  """Rows of weight 0 up to a multiple of the data axis' devices."""
  rows = len(batch['targets'])
  extra = -rows % multiple
  if not extra:
    return batch
  return {k: np.concatenate([v, np.zeros((extra,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


class Evaluator:
  """Perplexity and bits per character over every token of a split."""

  def __init__(self, task: LanguageModelTask, tokenizer, mesh, split: str,
               num_examples: int = 0):
    from transformer import train as train_lib  # pylint: disable=g-import-not-at-top
    from transformer.data import lm  # pylint: disable=g-import-not-at-top
    self.task, self.tokenizer, self.mesh, self.split = (task, tokenizer, mesh,
                                                        split)
    config = task.config
    ways = train_lib.data_parallel_size(mesh)
    self.batches = [_pad_rows(b, ways) for b in lm.eval_batches(
        config, tokenizer, split, max_documents=num_examples)]
    self.size = lm.eval_text_size(config, split, max_documents=num_examples)
    documents = lm.load_documents(config, split)
    self.prompts = [' '.join(documents[i].split()[:EVAL_SAMPLE_WORDS])
                    for i in range(min(EVAL_SAMPLES, len(documents)))]
    self._step = jax.jit(lambda params, batch: train_lib.eval_step(
        params, batch, task=task))

  def __call__(self, params) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(metrics, a few sample continuations of the split's first words)."""
    from transformer import sharding  # pylint: disable=g-import-not-at-top
    start, nll, tokens = time.time(), 0.0, 0.0
    for batch in self.batches:
      sums = jax.device_get(self._step(params, {
          k: sharding.to_mesh(v, self.mesh) for k, v in batch.items()}))  # pylint: disable=protected-access
      nll, tokens = nll + float(sums['nll']), tokens + float(sums['tokens'])
    bits = nll / math.log(2)
    metrics = {
        'loss': nll / max(tokens, 1.0),
        'perplexity': math.exp(min(nll / max(tokens, 1.0), 700.0)),
        'bits_per_character': bits / max(self.size['characters'], 1),
        'bits_per_byte': bits / max(self.size['bytes'], 1),
        'tokens': int(tokens), 'characters': int(self.size['characters']),
        'bytes': int(self.size['bytes']),
    }
    samples = [{'prompt': p, 'continuation': c} for p, c in
               self.task.generate_texts(params, self.tokenizer, self.prompts,
                                        self.mesh, warn=lambda _: None,
                                        max_new_tokens=EVAL_SAMPLE_TOKENS)]
    metrics['seconds'] = time.time() - start
    return metrics, samples

  def summary(self, metrics: dict[str, Any]) -> str:
    return (f'loss {metrics["loss"]:.4f}  perplexity '
            f'{metrics["perplexity"]:.3f}  bits_per_character '
            f'{metrics["bits_per_character"]:.4f}  ({metrics["tokens"]:,} '
            f'tokens, {metrics["seconds"]:.0f}s)')

  def file_name(self, steps: list[int]) -> str:
    return f'{self.split}_step{steps[-1]}' + (
        f'_avg{len(steps)}' if len(steps) > 1 else '')

  def report(self, metrics: dict[str, Any], outputs: list[dict[str, str]],
             base: str, *, samples: int = 0) -> str:
    """The summary and the sample continuations (all of them: `samples`,
    the examples other tasks print, does not apply)."""
    del samples
    steps = metrics['checkpoint_steps']
    lines = [f'\n{self.split} split, checkpoint {steps[-1]}:',
             '  ' + self.summary(metrics), f'Metrics and samples: {base}.json']
    for sample in outputs:
      lines.append(f'  {sample["prompt"]!r} -> {sample["continuation"]!r}')
    return '\n'.join(lines)

  def write(self, directory: str, name: str, samples: list[dict[str, str]],
            metrics: dict[str, Any]) -> str:
    """NAME.json: the metrics, with the sample continuations."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, name)
    with open(f'{base}.json', 'w', encoding='utf-8') as f:
      json.dump({**metrics, 'samples': samples}, f, indent=2,
                ensure_ascii=False)
    return base


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
