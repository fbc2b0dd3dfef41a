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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from transformer import sampling
from transformer.config import BOS_ID, EOS_ID, PAD_ID, GenerateConfig, ModelConfig
from transformer.model import LanguageModel

Array = jax.Array


def _step(model: LanguageModel, params, cache, tokens: Array,
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
    logits, cache = _step(model, params, cache, previous, t)
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
