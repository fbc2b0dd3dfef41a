"""Attention: masks, scaled dot-product attention and the multi-head module.

Shapes follow `jax.nn.dot_product_attention`:
  B batch, T query length, S key/value length, N heads, H head dimension.
Masks are boolean, True where a query may attend to a key, and broadcast to
[B, N, T, S]. They are built by the small functions below and combined with
`combine_masks`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from transformer import dropout as dropout_lib
from transformer import linear, partitioning
from transformer.partitioning import EMBED, HEADS, KV

Array = jax.Array

# ---------------------------------------------------------------------------
# Masks: [B or 1, 1, T, S] booleans, True = may attend.
# ---------------------------------------------------------------------------


def padding_mask(key_tokens: Array, pad_id: int = 0) -> Array:
  """Keys that are padding are hidden from every query.

  Only keys are masked: a padded query still attends somewhere (its output is
  never used), which avoids rows with nothing to attend to.

  Args:
    key_tokens: [B, S] token ids of the keys.
  Returns:
    [B, 1, 1, S] mask.
  """
  return (key_tokens != pad_id)[:, None, None, :]


def causal_mask(length: int) -> Array:
  """Position t attends to positions <= t (decoder self-attention, sec. 3.2.3).

  Returns:
    [1, 1, length, length] lower-triangular mask.
  """
  return jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))[None, None]


def segment_mask(query_segments: Array, key_segments: Array) -> Array:
  """In packed rows, each sentence attends only to itself.

  Args:
    query_segments: [B, T] segment ids (1, 2, ... per sentence, 0 = padding).
    key_segments: [B, S] segment ids.
  Returns:
    [B, 1, T, S] mask, True where query and key lie in the same segment.
  """
  return (query_segments[:, :, None] == key_segments[:, None, :])[:, None]


def combine_masks(*masks: Array | None) -> Array | None:
  """Logical AND of masks with broadcasting; `None`s are ignored."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  combined = masks[0]
  for mask in masks[1:]:
    combined = jnp.logical_and(combined, mask)
  return combined


# ---------------------------------------------------------------------------
# Scaled dot-product attention (paper eq. 1).
# ---------------------------------------------------------------------------


def masked_softmax(logits: Array, mask: Array | None) -> Array:
  """softmax over the last axis of [..., S] scores, masked keys removed."""
  if mask is not None:
    # A large finite value, not -inf: a fully masked row stays finite.
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def attention_weights(query: Array, key: Array, mask: Array | None) -> Array:
  """softmax(Q K^T / sqrt(d_k)) with masked logits removed; float32.

  Args:
    query: [B, T, N, H]; key: [B, S, N, H]; mask: broadcastable to [B, N, T, S].
  Returns:
    [B, N, T, S] attention probabilities.
  """
  scale = query.shape[-1] ** -0.5
  logits = jnp.einsum('btnh,bsnh->bnts', query, key,
                      preferred_element_type=jnp.float32) * scale
  return masked_softmax(logits, mask)


def cudnn_applies(dtype, head_dim: int, *lengths: int) -> bool:
  """Whether cuDNN's fused (flash) attention takes inputs of this kind.

  Its limits, as `jax.nn.dot_product_attention(implementation='cudnn')`
  checks them: an NVIDIA GPU, 16-bit inputs, a head dimension that is a
  multiple of 8 up to 128, and (with a mask, in training) even lengths.
  """
  return (jax.default_backend() == 'gpu'
          and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
          and head_dim % 8 == 0 and head_dim <= 128
          and all(length % 2 == 0 for length in lengths))


def resolve_implementation(implementation: str, dtype, head_dim: int,
                           *lengths: int) -> str:
  """'auto' -> 'cudnn' where `cudnn_applies`, else 'xla'; others unchanged."""
  if implementation != 'auto':
    return implementation
  return 'cudnn' if cudnn_applies(dtype, head_dim, *lengths) else 'xla'


def dot_product_attention(query: Array, key: Array, value: Array,
                          mask: Array | None = None, *,
                          dropout_rate: float = 0.0,
                          dropout_rng: Array | None = None,
                          dropout_impl: str = 'hash',
                          implementation: str = 'auto',
                          is_causal: bool = False,
                          return_weights: bool = False):
  """softmax(Q K^T / sqrt(d_k)) V, paper eq. (1).

  Without attention dropout this calls `jax.nn.dot_product_attention`:
  `implementation` 'cudnn' is cuDNN's fused flash attention (GPU, 16-bit;
  the [B, N, T, S] scores never reach memory), 'xla' the plain products,
  'auto' cuDNN where `cudnn_applies`, else XLA. Dropout on the attention
  probabilities (and returning them, for pictures) needs the weights
  themselves, so those cases compute them explicitly.

  Args:
    query: [B, T, N, H]; key, value: [B, S, N, H].
    mask: boolean, broadcastable to [B, N, T, S]; True = attend.
    dropout_rate: attention dropout; applied only when `dropout_rng` is given.
    dropout_impl: where the dropout mask comes from (`transformer/dropout.py`).
    implementation: 'auto', 'xla' or 'cudnn' (`model.attention_impl`).
    is_causal: `mask` already hides the keys after each query (T == S); the
      fused kernel then skips the blocks above the diagonal.
    return_weights: also return the [B, N, T, S] probabilities.
  Returns:
    [B, T, N, H] outputs (and the weights if asked).
  """
  use_dropout = dropout_rate > 0.0 and dropout_rng is not None
  if not use_dropout and not return_weights:
    if mask is not None:
      mask = jnp.broadcast_to(
          mask, (query.shape[0], mask.shape[1], query.shape[1], key.shape[1]))
    implementation = resolve_implementation(
        implementation, query.dtype, query.shape[-1], query.shape[1],
        key.shape[1])
    return jax.nn.dot_product_attention(query, key, value, mask=mask,
                                        is_causal=(is_causal and
                                                   implementation == 'cudnn'),
                                        implementation=implementation)
  weights = attention_weights(query, key, mask)
  probs = weights
  if use_dropout:
    probs = dropout_lib.dropout(probs, dropout_rate, dropout_rng, dropout_impl)
  out = jnp.einsum('bnts,bsnh->btnh', probs.astype(value.dtype), value)
  return (out, weights) if return_weights else out


def cached_attention(query: Array, key: Array, value: Array,
                     mask: Array | None = None):
  """Eq. (1) against a decoding cache kept head-major; returns (out, weights).

  The cache is [B, N, S, H], the layout the score and value products read,
  so no step transposes it (a [B, S, N, H] cache was transposed in full at
  every step). Queries may come in groups that share one cache row: beam
  search's k hypotheses of a sentence all attend to that sentence's single
  copy of the encoder keys/values, as k query positions.

  Args:
    query: [B * g, T, N, H], rows b * g .. b * g + g - 1 using cache row b.
    key, value: [B, N, S, H].
    mask: broadcastable to [B, 1, g * T, S] (e.g. [B, 1, 1, S] padding).
  Returns:
    ([B * g, T, N, H] outputs, [B * g, N, T, S] float32 probabilities).
  """
  rows, steps, heads, head_dim = query.shape
  batch = key.shape[0]
  group = rows // batch
  q = query.reshape(batch, group * steps, heads, head_dim)
  logits = jnp.einsum('bqnh,bnsh->bnqs', q, key,
                      preferred_element_type=jnp.float32) * head_dim**-0.5
  weights = masked_softmax(logits, mask)  # [B, N, g * T, S]
  out = jnp.einsum('bnqs,bnsh->bqnh', weights.astype(value.dtype), value)
  weights = weights.reshape(batch, heads, group, steps, -1).swapaxes(1, 2)
  return (out.reshape(query.shape),
          weights.reshape(rows, heads, steps, weights.shape[-1]))


# ---------------------------------------------------------------------------
# Multi-head attention module (sec. 3.2.2).
# ---------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
  """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attn(Q W_i^Q, ...).

  The per-head projections W_i^Q, W_i^K, W_i^V are stored together as one
  [d_model, heads, head_dim] kernel each; W^O as [heads, head_dim, d_model].

  With `decode=True` the module keeps a cache in the 'cache' collection,
  head-major ([rows, heads, positions, head_dim], see `cached_attention`).
  The first call allocates it (see `Transformer.init_cache`); after that:
  - self-attention appends this step's key/value at `cache_index` and attends
    over all positions written so far;
  - cross-attention (`cross=True`) reuses the encoder keys/values projected on
    the first call instead of projecting the whole source again every step.
    Its cache has one row per source sentence; the query rows may be a
    multiple of that (beam search's hypotheses), grouped by sentence.
  """
  num_heads: int
  dropout_rate: float = 0.0
  cross: bool = False  # keys/values come from the encoder
  causal: bool = False  # the masks given hide later positions (decoder self)
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.xavier_uniform()
  out_kernel_init: Callable = nn.initializers.xavier_uniform()  # W^O
  dropout_impl: str = 'hash'  # see transformer/dropout.py
  attention_impl: str = 'auto'  # see dot_product_attention

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array | None,
               *, deterministic: bool = True, decode: bool = False,
               cache_length: int | None = None,
               sow_weights: bool = False) -> Array:
    """inputs_q: [B, T, D]; inputs_kv: [B, S, D]; mask: [B|1, 1, T, S].

    cache_length: with decode=True, the self-attention cache's length when
    the call allocates it (default: T).
    Returns [B, T, D].
    """
    d_model = inputs_q.shape[-1]
    if d_model % self.num_heads:
      raise ValueError(f'd_model={d_model} is not divisible by '
                       f'num_heads={self.num_heads}')
    head_dim = d_model // self.num_heads
    # Split by heads over the 'model' axis, the output projection on its
    # input: Megatron-LM's attention (partitioning.py).
    projection = lambda name: nn.DenseGeneral(
        (self.num_heads, head_dim), dtype=self.dtype, name=name,
        kernel_init=partitioning.logical(self.kernel_init, EMBED, HEADS, KV),
        bias_init=partitioning.logical(nn.initializers.zeros_init(), HEADS,
                                       KV),
        dot_general=linear.dot_general)
    query = projection('query')(inputs_q)  # [B, T, N, H]
    if decode:
      out, weights = self._decode(query, inputs_kv, mask, projection,
                                  cache_length)
    else:
      key = projection('key')(inputs_kv)  # [B, S, N, H]
      value = projection('value')(inputs_kv)  # [B, S, N, H]
      dropout_rng = None
      if not deterministic and self.dropout_rate > 0.0:
        dropout_rng = self.make_rng('dropout')
      out = dot_product_attention(query, key, value, mask,
                                  dropout_rate=self.dropout_rate,
                                  dropout_rng=dropout_rng,
                                  dropout_impl=self.dropout_impl,
                                  implementation=self.attention_impl,
                                  is_causal=self.causal,
                                  return_weights=sow_weights)
      if sow_weights:
        out, weights = out
    if sow_weights:
      self.sow('intermediates', 'attention_weights', weights)
    return nn.DenseGeneral(
        d_model, axis=(-2, -1), dtype=self.dtype,
        kernel_init=partitioning.logical(self.out_kernel_init, HEADS, KV,
                                         EMBED),
        bias_init=partitioning.logical(nn.initializers.zeros_init(), EMBED),
        dot_general=linear.dot_general, name='out')(out)

  def _decode(self, query: Array, inputs_kv: Array, mask: Array | None,
              projection: Callable, cache_length: int | None):
    """Attention of one decoding step through the cache: (out, weights)."""
    head_major = lambda x: x.transpose(0, 2, 1, 3)  # [B, L, N, H] -> [B, N, L, H]
    if self.cross:
      key, value = self._encoder_cache(lambda: (
          head_major(projection('key')(inputs_kv)),
          head_major(projection('value')(inputs_kv))))
    else:
      key, value, mask = self._update_cache(
          head_major(projection('key')(inputs_kv)),
          head_major(projection('value')(inputs_kv)), mask, cache_length)
    return cached_attention(query, key, value, mask)

  def _encoder_cache(self, project: Callable[[], tuple[Array, Array]]):
    """Projected encoder keys/values: computed on the allocating call only."""
    if not self.has_variable('cache', 'encoder_key'):
      key, value = project()
      self.variable('cache', 'encoder_key', lambda: key)
      self.variable('cache', 'encoder_value', lambda: value)
      return key, value
    return (self.get_variable('cache', 'encoder_key'),
            self.get_variable('cache', 'encoder_value'))

  def _update_cache(self, key: Array, value: Array, mask: Array | None,
                    cache_length: int | None):
    """Writes this step's key/value [B, N, 1, H] into the cache; returns the
    full cache [B, N, L, H] and the mask of the positions written so far.

    The allocating call makes zero buffers of `cache_length` positions and
    attends over its own keys/values only (its output is not used).
    """
    initialized = self.has_variable('cache', 'cached_key')
    batch, heads, length, head_dim = key.shape
    shape = (batch, heads, cache_length or length, head_dim)
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, shape,
                               key.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros, shape,
                                 value.dtype)
    cache_index = self.variable('cache', 'cache_index',
                                lambda: jnp.array(0, dtype=jnp.int32))
    if not initialized:
      return key, value, mask
    if length != 1:
      raise ValueError(f'cached decoding takes one position per call, got '
                       f'{length}')
    max_length = cached_key.value.shape[2]
    index = cache_index.value
    zero = jnp.array(0, dtype=index.dtype)
    start = (zero, zero, index, zero)
    key = jax.lax.dynamic_update_slice(cached_key.value, key, start)
    value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + 1
    # The new query sees cache positions 0..index: causality in decode mode.
    written = (jnp.arange(max_length) <= index)[None, None, None, :]
    return key, value, combine_masks(mask, written)
