"""Continuing prompts with a decoder-only language model, through a cache.

`generate` feeds one position per step through `LanguageModel.step`, whose
attention keeps every earlier key and value (attention.py's cache), so no
step recomputes the prefix. Prompts of different lengths share a batch:
row b reads its own prompt tokens while t < its length (they are forced, not
sampled) and samples from then on, so every row's continuation is exactly
what it would be alone. Sampling (greedy, temperature, top-k, top-p) is
transformer/sampling.py; each prompt has its own random key, so a
continuation does not depend on which other prompts share its batch.

The token sequence of row b is s = prompt + continuation; the model reads
BOS, s_0, s_1, ... at positions 0, 1, 2, ... and the output at position t
predicts s_t (as in training, where each document starts with BOS).

`generate_texts` is the text side (--mode=generate, --mode=predict, the
evaluator's samples): prompts encoded, batched by data.eval_batch_size and
padded to a multiple of PROMPT_BUCKET tokens, continuations decoded.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from transformer import sampling, sharding
from transformer.config import (BOS_ID, EOS_ID, PAD_ID, Config, ConfigError,
                                GenerateConfig, ModelConfig)
from transformer.model import LanguageModel

Array = jax.Array

# Prompts are padded to a multiple of this many tokens (fewer compilations).
PROMPT_BUCKET = 16


def cached_step(model: LanguageModel, params, cache, tokens: Array,
                position: Array):
  """[B] previous tokens at `position` -> ([B, vocab] logits, new cache)."""
  positions = jnp.full((tokens.shape[0], 1), position, jnp.int32)
  logits, variables = model.apply({'params': params, 'cache': cache},
                                  tokens[:, None], positions,
                                  method=LanguageModel.step,
                                  mutable=['cache'])
  return logits[:, 0], variables['cache']


def init_cache(model: LanguageModel, params, batch: int, length: int):
  """Zero key/value buffers of `length` positions for `batch` rows."""
  bos = jnp.full((batch, 1), BOS_ID, jnp.int32)
  _, variables = model.apply({'params': params}, bos, jnp.zeros_like(bos),
                             cache_length=length, method=LanguageModel.step,
                             mutable=['cache'])
  return variables['cache']


@functools.partial(jax.jit, static_argnames=('config', 'settings'))
def generate(params, config: ModelConfig, prompts: Array,
             prompt_lengths: Array, keys: Array, settings: GenerateConfig
             ) -> Array:
  """Continues each prompt by up to settings.max_new_tokens tokens.

  Args:
    prompts: [B, P] int32 token ids, PAD_ID after each prompt's end.
    prompt_lengths: [B] int32, 0 <= length <= P (0: generate from BOS).
    keys: [B] random keys, one per prompt (unused when temperature is 0).
    settings: temperature, top_k, top_p, max_new_tokens.
  Returns:
    [B, max_new_tokens] int32: each row's continuation; a row stops after
    EOS (which it keeps) and is PAD_ID from there on.
  """
  model = LanguageModel(config)
  batch, prompt_width = prompts.shape
  new = settings.max_new_tokens
  total = prompt_width + new  # steps; the cache holds as many positions
  sample = jax.vmap(lambda key, logits: sampling.sample(
      key, logits[None], temperature=settings.temperature,
      top_k=settings.top_k, top_p=settings.top_p)[0])
  sequence = jnp.concatenate(
      [prompts, jnp.full((batch, new), PAD_ID, jnp.int32)], axis=1)
  ends = prompt_lengths + new  # exclusive end of each row's continuation

  def body(state):
    t, previous, sequence, done, cache = state
    logits, cache = cached_step(model, params, cache, previous, t)
    # Padding and BOS are never a next token.
    logits = logits.at[:, jnp.array([PAD_ID, BOS_ID])].set(-jnp.inf)
    drawn = sample(jax.vmap(jax.random.fold_in, (0, None))(keys, t), logits)
    forced = t < prompt_lengths  # still reading the prompt
    token = jnp.where(forced, sequence[:, t], drawn)
    token = jnp.where(done, PAD_ID, token)
    sequence = sequence.at[:, t].set(token)
    done = done | (~forced & (token == EOS_ID)) | (t + 1 >= ends)
    return t + 1, token, sequence, done, cache

  def running(state):
    t, _, _, done, _ = state
    return (t < total) & ~jnp.all(done)

  start = (jnp.int32(0), jnp.full((batch,), BOS_ID, jnp.int32), sequence,
           jnp.zeros((batch,), bool), init_cache(model, params, batch, total))
  _, _, sequence, _, _ = jax.lax.while_loop(running, body, start)
  # Row b's continuation: sequence[b, length_b : length_b + new].
  index = prompt_lengths[:, None] + jnp.arange(new)[None, :]
  return jnp.take_along_axis(sequence, index, axis=1)


def continuation_ids(row) -> list[int]:
  """One row of `generate`'s output as a list, up to and without EOS."""
  ids = [int(i) for i in row]
  return ids[:ids.index(EOS_ID)] if EOS_ID in ids else [
      i for i in ids if i != PAD_ID]


# ---------------------------------------------------------------------------
# Texts: prompts in, continuations out.
# ---------------------------------------------------------------------------


def generate_texts(config: Config, params, tokenizer, prompts: Iterable[str],
                   mesh, *, warn: Callable[[str], None],
                   max_new_tokens: int | None = None
                   ) -> Iterator[tuple[str, str]]:
  """(prompt, continuation) per prompt, in order, batched by
  data.eval_batch_size; prompt i samples with key fold_in(seed, i)."""
  settings = config.generate
  if max_new_tokens is not None:
    settings = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
  size = sharding.padded_batch_size(config.data.eval_batch_size, mesh)
  seed = jax.random.key(settings.seed)
  for number, batch in _batches(prompts, size):
    ids = [prompt_ids(config.model, tokenizer, p, settings.max_new_tokens,
                      warn) for p in batch]
    width = -(-max(max(map(len, ids)), 1) // PROMPT_BUCKET) * PROMPT_BUCKET
    rows = np.full((size, width), PAD_ID, np.int32)
    lengths = np.zeros(size, np.int32)
    for i, row in enumerate(ids):
      rows[i, :len(row)], lengths[i] = row, len(row)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(
        seed, jnp.arange(number, number + size))
    out = np.asarray(generate(params, config.model, rows, lengths, keys,
                              settings))
    for i, prompt in enumerate(batch):
      yield prompt, _continuation(tokenizer, ids[i],
                                  continuation_ids(out[i]))


def prompt_ids(model: ModelConfig, tokenizer, prompt: str, new: int,
               warn: Callable[[str], None]) -> list[int]:
  """The prompt's ids; with learned positions, its last tokens that leave
  room for `new` ones in model.max_length (warned)."""
  ids = tokenizer.encode(prompt)
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


def _continuation(tokenizer, prompt: list[int], new_ids: list[int]) -> str:
  """The text the new tokens add to the prompt. Decoded together with the
  prompt, since SentencePiece drops a piece's leading space at the start of
  a text; falls back to the new tokens alone if the prompt does not decode
  to a prefix."""
  text = tokenizer.decode(prompt)
  full = tokenizer.decode(list(prompt) + list(new_ids))
  return full[len(text):] if full.startswith(text) else tokenizer.decode(
      new_ids)
