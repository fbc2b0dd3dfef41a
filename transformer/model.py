"""The encoder-decoder Transformer of "Attention Is All You Need" in Flax linen.

Read top to bottom: positional encodings, the feed-forward sub-layer, the
residual wrapper, encoder and decoder layers, then `Transformer`, whose
`encode`/`decode` methods are what training and beam search call.

Packed rows: several sentences may share one row. `*_segmentation` ([B, L],
1, 2, ... per sentence, 0 = padding) keeps them from attending to each other,
and `*_positions` ([B, L]) restart at 0 for each sentence. Without them a row
holds one sentence followed by padding (PAD_ID).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from transformer import attention, linear, partitioning
from transformer.dropout import Dropout
from transformer.config import BOS_ID, PAD_ID, ModelConfig
from transformer.partitioning import EMBED, MLP, VOCAB

Array = jax.Array


def sinusoidal_positions(positions: Array, d_model: int) -> Array:
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (sec. 3.5).

  Args:
    positions: [B, L] integer positions.
  Returns:
    [B, L, d_model] float32 encodings, sin and cos interleaved as in the paper.
  """
  i = jnp.arange(d_model // 2, dtype=jnp.float32)
  inv_freq = 1.0 / (10_000.0 ** (2.0 * i / d_model))  # [d_model / 2]
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, L, d/2]
  pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # [B, L, d/2, 2]
  pe = pe.reshape(*positions.shape, -1)
  if d_model % 2:  # odd widths: one more zero channel
    pe = jnp.pad(pe, [(0, 0)] * positions.ndim + [(0, 1)])
  return pe


def shift_right(targets: Array, positions: Array | None = None) -> Array:
  """Decoder inputs: BOS, then the targets delayed by one (teacher forcing).

  In packed rows every sentence starts with BOS where its position is 0.

  Args:
    targets: [B, L] token ids; positions: [B, L] or None.
  Returns:
    [B, L] decoder input ids.
  """
  bos = jnp.full_like(targets[:, :1], BOS_ID)
  shifted = jnp.concatenate([bos, targets[:, :-1]], axis=1)
  if positions is not None:
    shifted = jnp.where(positions == 0, BOS_ID, shifted)
  return shifted


def default_positions(tokens: Array) -> Array:
  """0, 1, 2, ... along each row: [B, L]."""
  return jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)


class Initializers(NamedTuple):
  """The initialisers model.init chooses, and the embedding multiplier."""
  kernel: Callable  # dense and attention projections into a sub-layer
  residual: Callable  # projections back into the residual stream (W2, W^O)
  embedding: Callable
  embedding_scale: float  # token embeddings are multiplied by this


def initializers(config: ModelConfig) -> Initializers:
  """model.init: 'xavier' (Glorot uniform kernels, embeddings N(0, d^-1/2)
  times sqrt(d): inputs and tied logits of unit scale), or 'gpt2' (GPT-2,
  sec. 2.3: N(0, 0.02), residual projections scaled by 1/sqrt(N) for N
  residual layers, here 2 per Transformer layer)."""
  if config.init == 'gpt2':
    layers = 2 * (config.num_encoder_layers + config.num_decoder_layers)
    normal = nn.initializers.normal(stddev=0.02)
    return Initializers(normal, nn.initializers.normal(
        stddev=0.02 / max(layers, 1)**0.5), normal, 1.0)
  xavier = nn.initializers.xavier_uniform()
  return Initializers(xavier, xavier, nn.initializers.normal(
      stddev=config.d_model**-0.5), float(config.d_model)**0.5)


# model.activation: 'gelu' is the tanh approximation (GPT-2), 'gelu_exact'
# the erf form (BERT; Hendrycks & Gimpel 2016).
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu,
               'gelu_exact': functools.partial(nn.gelu, approximate=False)}


class FeedForward(nn.Module):
  """FFN(x) = max(0, x W1 + b1) W2 + b2, eq. (2); GELU as an option."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool) -> Array:
    """x: [B, L, d_model] -> [B, L, d_model]."""
    c = self.config
    activation = ACTIVATIONS[c.activation]
    init = initializers(c)
    # wi is split on its output (mlp) and wo on its input over the 'model'
    # axis: Megatron-LM's MLP (partitioning.py).
    dense = lambda features, name, kernel_init, axes: nn.Dense(
        features, dtype=c.dtype, name=name, dot_general=linear.dot_general,
        kernel_init=partitioning.logical(kernel_init, *axes),
        bias_init=partitioning.logical(nn.initializers.zeros_init(),
                                       axes[-1]))
    h = activation(dense(c.d_ff, 'wi', init.kernel, (EMBED, MLP))(x))  # [B, L, d_ff]
    return dense(x.shape[-1], 'wo', init.residual, (MLP, EMBED))(h)


def layer_norm(config: ModelConfig, name: str) -> nn.LayerNorm:
  """LayerNorm over d_model, its scale and bias named 'embed'."""
  return nn.LayerNorm(
      epsilon=config.layer_norm_epsilon, dtype=config.dtype, name=name,
      scale_init=partitioning.logical(nn.initializers.ones_init(), EMBED),
      bias_init=partitioning.logical(nn.initializers.zeros_init(), EMBED))


def residual(config: ModelConfig, x: Array, sublayer: Callable[[Array], Array],
             *, deterministic: bool, name: str,
             dropout_impl: str = 'hash') -> Array:
  """A sub-layer with dropout, residual connection and LayerNorm (sec. 3.1, 5.4).

  post-LN (the paper): LayerNorm(x + Dropout(Sublayer(x))).
  pre-LN:              x + Dropout(Sublayer(LayerNorm(x))).
  Must be called from inside a compact method: it creates the LayerNorm there.
  dropout_impl: where dropout's masks come from (`transformer/dropout.py`).
  """
  norm = layer_norm(config, f'{name}_norm')
  dropout = Dropout(config.dropout_rate, dropout_impl)
  if config.norm_position == 'pre':
    return x + dropout(sublayer(norm(x)), deterministic=deterministic)
  return norm(x + dropout(sublayer(x), deterministic=deterministic))


def attention_sublayer(config: ModelConfig, dropout_impl: str, name: str, *,
                       cross: bool = False, causal: bool = False
                       ) -> attention.MultiHeadAttention:
  """The multi-head attention of a layer, configured from the model config."""
  init = initializers(config)
  return attention.MultiHeadAttention(
      config.num_heads, config.attention_dropout_rate, cross=cross,
      causal=causal, dtype=config.dtype, kernel_init=init.kernel,
      out_kernel_init=init.residual, dropout_impl=dropout_impl,
      attention_impl=config.attention_impl, name=name)


class EncoderLayer(nn.Module):
  """Self-attention, then feed-forward, each wrapped by `residual`."""
  config: ModelConfig
  sow_weights: bool = False
  dropout_impl: str = 'hash'

  @nn.compact
  def __call__(self, x: Array, mask: Array | None,
               deterministic: bool) -> Array:
    """x: [B, S, d_model]; mask: [B|1, 1, S, S] -> [B, S, d_model].

    Every argument may be positional: nn.remat and nn.scan pass them so
    (`ENCODER_STATIC_ARGNUMS`).
    """
    c = self.config
    self_attention = attention_sublayer(c, self.dropout_impl, 'self_attention')
    sublayer = functools.partial(residual, c, deterministic=deterministic,
                                 dropout_impl=self.dropout_impl)
    x = sublayer(x, lambda h: self_attention(
        h, h, mask, deterministic=deterministic, sow_weights=self.sow_weights),
                 name='self_attention')
    ffn = FeedForward(c, name='ffn')
    return sublayer(x, lambda h: ffn(h, deterministic=deterministic),
                    name='ffn')


class DecoderLayer(nn.Module):
  """Masked self-attention, encoder-decoder attention, feed-forward (sec. 3.1).

  Without an encoder (`encoded` None: a decoder-only language model, GPT's
  layer) the encoder-decoder attention sub-layer is left out.
  """
  config: ModelConfig
  sow_weights: bool = False
  dropout_impl: str = 'hash'

  @nn.compact
  def __call__(self, y: Array, encoded: Array | None,
               self_mask: Array | None, cross_mask: Array | None,
               deterministic: bool, decode: bool = False,
               cache_length: int | None = None) -> Array:
    """y: [B, T, d_model]; encoded: [B, S, d_model] or None -> [B, T, d_model].

    Every argument may be positional: nn.remat and nn.scan pass them so
    (`DECODER_STATIC_ARGNUMS`).
    """
    c = self.config
    self_attention = attention_sublayer(c, self.dropout_impl, 'self_attention',
                                        causal=True)
    sublayer = functools.partial(residual, c, deterministic=deterministic,
                                 dropout_impl=self.dropout_impl)
    y = sublayer(y, lambda h: self_attention(
        h, h, self_mask, deterministic=deterministic, decode=decode,
        cache_length=cache_length, sow_weights=self.sow_weights),
                 name='self_attention')
    if encoded is not None:
      cross_attention = attention_sublayer(c, self.dropout_impl,
                                           'cross_attention', cross=True)
      y = sublayer(y, lambda h: cross_attention(
          h, encoded, cross_mask, deterministic=deterministic, decode=decode,
          sow_weights=self.sow_weights), name='cross_attention')
    ffn = FeedForward(c, name='ffn')
    return sublayer(y, lambda h: ffn(h, deterministic=deterministic),
                    name='ffn')


# ---------------------------------------------------------------------------
# Memory and compile time of deep models: rematerialisation and scanned layers.
# ---------------------------------------------------------------------------

# What `model.remat` keeps of a layer's forward pass for its backward pass
# (`jax.checkpoint` policies; rematerialisation as in Chen et al. 2016,
# "Training Deep Nets with Sublinear Memory Cost": store a few activations,
# recompute the others when the gradient needs them).
#   'full': None, jax.checkpoint's default: nothing but the layer's inputs;
#     the backward pass re-runs the whole layer (a train step does about 4
#     forward passes of work instead of 3).
#   'dots': `dots_with_no_batch_dims_saveable`: the outputs of matmuls
#     without batch dimensions, i.e. of every dense layer (Q, K, V, O, the
#     FFN's two; `linear.dot_general` makes each a 2-D [M, K] x [K, N]
#     product). Those are nearly all the FLOPs (8d^2 + 4df per token against
#     4Ld for attention's scores and values) and take [B, L, d] or
#     [B, L, d_ff] each. The attention products have batch dimensions
#     (batch, heads), so they are recomputed: their [B, heads, L, L] scores
#     and probabilities are the largest activations at long L and the
#     cheapest to redo. `checkpoint_dots` would keep those as well, for
#     much more memory at long rows (`memory.py` counts each policy's
#     residuals; the README, "GPUs, TPUs and many hosts", has wmt_big's).
# XLA:CPU drops the optimization barriers that keep the recomputation apart
# and merges it back into the forward pass: there remat saves memory only
# with model.scan_layers, whose loop keeps it apart
# (`memory.measure_remat_memory` shows both).
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    'full': None,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
# The Python (static) arguments of the layers' __call__, by position with
# self as 0 (nn.remat's convention): `deterministic`, `decode` and
# `cache_length` choose code paths, so jax.checkpoint must not trace them.
ENCODER_STATIC_ARGNUMS = (3,)  # (self, x, mask, deterministic)
# (self, y, encoded, self_mask, cross_mask, deterministic, decode,
#  cache_length)
DECODER_STATIC_ARGNUMS = (5, 6, 7)

# `model.scan_layers`: nn.scan stacks every variable of a layer -- its
# parameters, its decoding cache, its recorded attention weights -- on a
# leading axis of the stack's length, and gives every layer its own
# initialisation and dropout keys. LAYERS_AXIS names that axis for flax's
# logical partitioning (`nn.with_logical_partitioning`): the sharding rules
# map it to no mesh axis, so every device holds all layers.
SCAN_VARIABLE_AXES = {'params': 0, 'cache': 0, 'intermediates': 0}
SCAN_SPLIT_RNGS = {'params': True, 'dropout': True}
LAYERS_AXIS = 'layers'


def layer_class(layer: type[nn.Module], config: ModelConfig,
                static_argnums: tuple[int, ...]) -> type[nn.Module]:
  """`layer`, or with model.remat its rematerialised form (`nn.remat`).

  The form keeps the parameters' names, so a run may switch model.remat on
  resume.
  """
  if config.remat == 'none':
    return layer
  # Inside a scan XLA cannot fold the recomputation back into the forward
  # pass, so the barriers that prevent it (prevent_cse) are not needed
  # there (flax's nn.remat documentation).
  return nn.remat(layer, static_argnums=static_argnums,
                  policy=REMAT_POLICIES[config.remat],
                  prevent_cse=not config.scan_layers)


def _layer_step(layer: nn.Module, carry: Array, *args) -> tuple[Array, None]:
  """One layer as nn.scan's body: (carry, args) -> (new carry, no output)."""
  return layer(carry, *args), None


def scan_stack(layer: nn.Module, carry: Array, *args, length: int) -> Array:
  """`length` layers in turn on `carry`: one nn.scan over `layer`, whose
  variables hold all layers stacked (SCAN_VARIABLE_AXES). `args` go to
  every layer unchanged (nn.broadcast): masks, the encoder's output and the
  Python flags. nn.scan takes no keyword arguments, hence positional ones.
  """
  scanned = nn.scan(_layer_step, variable_axes=SCAN_VARIABLE_AXES,
                    split_rngs=SCAN_SPLIT_RNGS,
                    in_axes=(nn.broadcast,) * len(args), length=length,
                    metadata_params={nn.PARTITION_NAME: LAYERS_AXIS})
  carry, _ = scanned(layer, carry, *args)
  return carry


class Transformer(nn.Module):
  """Encoder-decoder Transformer. `__call__` is the training forward pass.

  Attributes:
    config: the model's shape and switches.
    sow_weights: record every layer's attention probabilities in the
      'intermediates' collection (for pictures; slower).
    dropout_impl: where dropout's random masks come from: 'hash', 'rbg' or
      'threefry' (`train.dropout_rng`; see `transformer/dropout.py`).

  Layers: 'encoder_0', 'encoder_1', ... and 'decoder_0', ... each with its
  own parameters; with model.scan_layers one 'encoder_layers' and one
  'decoder_layers' instead, whose parameters (and cache) have a leading axis
  of num_*_layers (`scan_stack`). model.remat rematerialises each layer in
  either form (`layer_class`).
  """
  config: ModelConfig
  sow_weights: bool = False
  dropout_impl: str = 'hash'

  def setup(self):
    c = self.config
    # dtype: bfloat16 runs the tied output projection (the largest matmul)
    # in bfloat16 too; the loss reads the logits in float32.
    embed = lambda name: nn.Embed(
        c.vocab_size, c.d_model, name=name, dtype=c.dtype,
        # model.init (`initializers`). Split by vocabulary rows over
        # 'model' (partitioning.py).
        embedding_init=partitioning.logical(initializers(c).embedding,
                                            VOCAB, EMBED))
    self.source_embedding = embed('embedding' if c.share_embeddings else
                                  'source_embedding')
    self.target_embedding = (self.source_embedding if c.share_embeddings else
                             embed('target_embedding'))
    if c.positions == 'learned':
      self.position_embedding = nn.Embed(
          c.max_length, c.d_model, name='position_embedding',
          embedding_init=partitioning.logical(
              nn.initializers.normal(stddev=0.02), None, EMBED))
    if c.token_types:
      self.token_type_embedding = nn.Embed(
          c.token_types, c.d_model, name='token_type_embedding',
          embedding_init=partitioning.logical(
              nn.initializers.normal(stddev=0.02), None, EMBED))
    if c.embedding_norm:
      self.embedding_norm = layer_norm(c, 'embedding_norm')
    self.encoder_layers = self._layers(
        layer_class(EncoderLayer, c, ENCODER_STATIC_ARGNUMS), 'encoder',
        c.num_encoder_layers)
    self.decoder_layers = self._layers(
        layer_class(DecoderLayer, c, DECODER_STATIC_ARGNUMS), 'decoder',
        c.num_decoder_layers)
    if c.norm_position == 'pre':
      norm = lambda name: layer_norm(c, name)
      self.encoder_norm, self.decoder_norm = norm('encoder_norm'), norm(
          'decoder_norm')
    if not c.tie_output_embedding:
      self.output_projection = nn.Dense(
          c.vocab_size, dtype=c.dtype, dot_general=linear.dot_general,
          kernel_init=partitioning.logical(nn.initializers.lecun_normal(),
                                           EMBED, VOCAB),
          bias_init=partitioning.logical(nn.initializers.zeros_init(), VOCAB),
          name='output_projection')
    self.embedding_dropout = Dropout(c.dropout_rate, self.dropout_impl)

  def _layers(self, layer: type[nn.Module], kind: str, count: int
              ) -> list[nn.Module]:
    """The stack's modules: one per layer ('encoder_0', ...), or with
    model.scan_layers a single one ('encoder_layers') that `scan_stack` runs
    `count` times; none when count is 0."""
    make = lambda name: layer(self.config, self.sow_weights,
                              self.dropout_impl, name=name)
    if self.config.scan_layers:
      return [make(f'{kind}_layers')] if count else []
    return [make(f'{kind}_{i}') for i in range(count)]

  def _run_layers(self, layers: list[nn.Module], kind: str, x: Array,
                  *args) -> Array:
    """x through the stack, each layer given `args` (positionally)."""
    if not self.config.scan_layers:
      for layer in layers:
        x = layer(x, *args)
      return x
    if not layers:
      return x
    count = getattr(self.config, f'num_{kind}_layers')
    x = scan_stack(layers[0], x, *args, length=count)
    self._unstack_intermediates(layers[0], kind, count)
    return x

  def _unstack_intermediates(self, stack: nn.Module, kind: str,
                             count: int) -> None:
    """With sow_weights, the attention weights a scanned stack recorded
    ([layers, ...] each) are recorded again one layer at a time, under the
    unrolled form's names ('encoder_0', ...): readers of 'intermediates'
    (`transformer/visualize.py`) see one layout whatever model.scan_layers.
    """
    if not (self.sow_weights and self.is_mutable_collection('intermediates')):
      return
    stacked = stack.variables.get('intermediates', {})
    for i in range(count):
      self.put_variable('intermediates', f'{kind}_{i}',
                        jax.tree.map(lambda x, i=i: x[i], stacked))

  def _embed(self, embedding: nn.Embed, tokens: Array, positions: Array, *,
             deterministic: bool) -> Array:
    """Token embedding * sqrt(d_model) + positional encoding, then dropout
    (model.init='gpt2': not multiplied). BERT's switches: + the segment
    embedding of type 0 (model.token_types), then LayerNorm
    (model.embedding_norm)."""
    c = self.config
    scale = initializers(c).embedding_scale
    x = embedding(tokens)  # [B, L, d_model]
    if scale != 1.0:
      x = x * jnp.sqrt(float(c.d_model))
    if c.positions == 'learned':
      x = x + self.position_embedding(positions)
    else:
      x = x + sinusoidal_positions(positions, c.d_model)
    if c.token_types:  # one segment per text: type 0 everywhere
      x = x + self.token_type_embedding(jnp.zeros_like(tokens))
    if c.embedding_norm:
      x = self.embedding_norm(x)
    x = self.embedding_dropout(x, deterministic=deterministic)
    return x.astype(c.dtype)

  def encode(self, inputs: Array, inputs_positions: Array | None = None,
             inputs_segmentation: Array | None = None, *,
             deterministic: bool = True) -> Array:
    """inputs: [B, S] source ids -> [B, S, d_model] encoder outputs."""
    if inputs_positions is None:
      inputs_positions = default_positions(inputs)
    if inputs_segmentation is not None:
      mask = attention.segment_mask(inputs_segmentation, inputs_segmentation)
    else:
      mask = attention.padding_mask(inputs, PAD_ID)
    x = self._embed(self.source_embedding, inputs, inputs_positions,
                    deterministic=deterministic)
    x = self._run_layers(self.encoder_layers, 'encoder', x, mask,
                         deterministic)
    if self.config.norm_position == 'pre':
      x = self.encoder_norm(x)
    return x

  def decode(self, encoded: Array, inputs: Array, decoder_inputs: Array,
             targets_positions: Array | None = None,
             inputs_segmentation: Array | None = None,
             targets_segmentation: Array | None = None, *,
             deterministic: bool = True, decode: bool = False,
             cache_length: int | None = None) -> Array:
    """Logits of the next token at every decoder position.

    Args:
      encoded: [B, S, d_model] from `encode`; None for a decoder-only model
        (no encoder-decoder attention; `inputs` and `inputs_segmentation`
        unused).
      inputs: [B, S] source ids (for the cross-attention padding mask).
      decoder_inputs: [B, T] ids fed to the decoder (`shift_right(targets)`);
        with decode=True, T = 1: the previous token of each sequence, and
        there may be B * group rows, group per sentence (`init_cache`).
      targets_positions: [B, T]; required with decode=True, where it is the
        index of the step being decoded.
      decode: use and update the key/value cache (see MultiHeadAttention
        and `init_cache`).
      cache_length: with decode=True, on the call that allocates the cache:
        the most positions it will hold.
    Returns:
      [B, T, vocab_size] float32 logits.
    """
    c = self.config
    cross_mask = None
    if decode:
      if targets_positions is None:
        raise ValueError('decode=True needs targets_positions: [B, 1] filled '
                         'with the index of the step being decoded')
      self_mask = None  # causality comes from the cache
      if encoded is not None:
        cross_mask = attention.padding_mask(inputs, PAD_ID)
    else:
      if targets_positions is None:
        targets_positions = default_positions(decoder_inputs)
      self_mask = attention.causal_mask(decoder_inputs.shape[1])
      if targets_segmentation is not None:
        self_mask = attention.combine_masks(
            self_mask,
            attention.segment_mask(targets_segmentation, targets_segmentation))
      if encoded is None:
        pass  # decoder only: no encoder-decoder attention
      elif targets_segmentation is not None:
        cross_mask = attention.segment_mask(targets_segmentation,
                                            inputs_segmentation)
      else:
        cross_mask = attention.padding_mask(inputs, PAD_ID)

    y = self._embed(self.target_embedding, decoder_inputs, targets_positions,
                    deterministic=deterministic)
    y = self._run_layers(self.decoder_layers, 'decoder', y, encoded,
                         self_mask, cross_mask, deterministic, decode,
                         cache_length)
    if c.norm_position == 'pre':
      y = self.decoder_norm(y)
    if c.tie_output_embedding:
      logits = self.target_embedding.attend(y)  # [B, T, vocab]
    else:
      logits = self.output_projection(y)
    return logits.astype(jnp.float32)

  def init_cache(self, encoded: Array, inputs: Array, max_length: int,
                 group: int = 1) -> None:
    """Allocates the decoding cache; apply it with mutable=['cache'].

    Self-attention gets zero buffers of `max_length` positions for each of
    the B * group decoder rows; cross-attention stores the encoder keys/values
    projected once, one row per source sentence (see
    `attention.cached_attention`). One decoder position is run to do so, its
    output thrown away:

      _, variables = model.apply({'params': params}, encoded, inputs, 64,
                                 method=Transformer.init_cache,
                                 mutable=['cache'])
      cache = variables['cache']

    Args:
      encoded: [B, S, d_model] from `encode`; inputs: [B, S] source ids.
      group: decoder rows per sentence (beam search: the beam size); rows
        b * group .. b * group + group - 1 translate sentence b.
    """
    rows = inputs.shape[0] * group
    bos = jnp.full((rows, 1), BOS_ID, jnp.int32)
    self.decode(encoded, inputs, bos, jnp.zeros_like(bos), decode=True,
                cache_length=max_length)

  def __call__(self, inputs: Array, targets: Array,
               inputs_positions: Array | None = None,
               targets_positions: Array | None = None,
               inputs_segmentation: Array | None = None,
               targets_segmentation: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """Teacher-forced forward pass.

    Args:
      inputs: [B, S] source ids; targets: [B, T] target ids (ending in EOS).
    Returns:
      [B, T, vocab_size] float32 logits; logits[:, t] predicts targets[:, t].
    """
    if (inputs_segmentation is None) != (targets_segmentation is None):
      raise ValueError('give segmentation for both inputs and targets, or '
                       'for neither')
    encoded = self.encode(inputs, inputs_positions, inputs_segmentation,
                          deterministic=deterministic)
    decoder_inputs = shift_right(targets, targets_positions)
    return self.decode(encoded, inputs, decoder_inputs, targets_positions,
                       inputs_segmentation, targets_segmentation,
                       deterministic=deterministic)


def pool(encoded: Array, mask: Array, how: str) -> Array:
  """One vector per text from the encoder's outputs.

  Args:
    encoded: [B, L, d_model]; mask: [B, L], 1 on real tokens, 0 on padding.
    how: 'mean' over the real tokens (padding contributes nothing), or
      'first': the output at position 0 (a [CLS]-style BOS, BERT sec. 3).
  Returns:
    [B, d_model] float32.
  """
  x = encoded.astype(jnp.float32)
  if how == 'first':
    return x[:, 0]
  mask = mask.astype(jnp.float32)[..., None]  # [B, L, 1]
  return jnp.sum(x * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


class EncoderClassifier(nn.Module):
  """The Transformer's encoder, pooling and a linear head (classification
  and regression): [B, L] token ids -> [B, num_outputs] float32 scores.
  With model.pooler, BERT's pooler (dense d -> d, tanh) between pooling
  and the head's dropout.

  The encoder is `Transformer.encode` itself (no decoder layers), so its
  parameters sit under 'encoder' exactly as in the translation model.
  """
  config: ModelConfig
  num_outputs: int
  sow_weights: bool = False
  dropout_impl: str = 'hash'

  def setup(self):
    c = self.config
    encoder_only = dataclasses.replace(c, num_decoder_layers=0)
    self.encoder = Transformer(encoder_only, self.sow_weights,
                               self.dropout_impl, name='encoder')
    if c.pooler:  # BERT's pooler (Devlin et al. 2019, sec. 3; BertPooler)
      self.pooler = nn.Dense(
          c.d_model, dtype=c.dtype, dot_general=linear.dot_general,
          kernel_init=partitioning.logical(initializers(c).kernel, EMBED,
                                           None),
          bias_init=partitioning.logical(nn.initializers.zeros_init(), None),
          name='pooler')
    self.dropout = Dropout(c.dropout_rate, self.dropout_impl)
    # Zero-initialised: every class starts equally likely, every regression
    # output at the (standardised) mean.
    # Never split over 'model': a few outputs per text.
    self.head = nn.Dense(
        self.num_outputs,
        kernel_init=partitioning.logical(nn.initializers.zeros, EMBED, None),
        bias_init=partitioning.logical(nn.initializers.zeros_init(), None),
        name='head')

  def __call__(self, inputs: Array, *, deterministic: bool = True) -> Array:
    """inputs: [B, L] ids (PAD_ID after the text) -> [B, num_outputs]."""
    encoded = self.encoder.encode(inputs, deterministic=deterministic)
    pooled = pool(encoded, inputs != PAD_ID, self.config.pooling)  # [B, d]
    if self.config.pooler:  # tanh(W p + b), then dropout, as
      # BertForSequenceClassification does
      pooled = jnp.tanh(self.pooler(pooled)).astype(jnp.float32)
    pooled = self.dropout(pooled, deterministic=deterministic)
    return self.head(pooled)


class LanguageModel(nn.Module):
  """A decoder-only Transformer (GPT; Radford et al. 2018): the decoder
  layers of `Transformer` without encoder-decoder attention, predicting each
  next token. [B, L] token ids -> [B, L, vocab_size] float32 logits.

  The decoder is `Transformer.decode` itself (no encoder layers), so its
  parameters sit under 'decoder' with the translation model's names, and
  the options (pre-/post-LN, sinusoidal or learned positions, tied output
  embedding, attention_impl) are the same switches.
  """
  config: ModelConfig
  sow_weights: bool = False
  dropout_impl: str = 'hash'

  def setup(self):
    decoder_only = dataclasses.replace(self.config, num_encoder_layers=0)
    self.decoder = Transformer(decoder_only, self.sow_weights,
                               self.dropout_impl, name='decoder')

  def __call__(self, targets: Array, targets_positions: Array | None = None,
               targets_segmentation: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """Teacher-forced logits; logits[:, t] predicts targets[:, t].

    Args:
      targets: [B, L] ids (each document ends in EOS; PAD_ID after the
        last); the model reads BOS, then the targets delayed by one,
        restarting with BOS where a packed document starts (position 0).
      targets_positions, targets_segmentation: [B, L] for packed rows.
    """
    decoder_inputs = shift_right(targets, targets_positions)
    return self.decoder.decode(None, None, decoder_inputs, targets_positions,
                               None, targets_segmentation,
                               deterministic=deterministic)

  def step(self, tokens: Array, positions: Array, *,
           cache_length: int | None = None) -> Array:
    """One cached decoding step: [B, 1] previous tokens at [B, 1] positions
    -> [B, 1, vocab] logits of the next ones. Apply with mutable=['cache'];
    the first call (with cache_length) allocates the cache and its output is
    thrown away (see `Transformer.init_cache`)."""
    return self.decoder.decode(None, None, tokens, positions, decode=True,
                               cache_length=cache_length)


class MaskedLanguageModel(nn.Module):
  """BERT's masked-LM (Devlin et al. 2019, sec. 3.1, appendix A.1): the
  Transformer's encoder, then at every position a transform (dense, the
  model's activation, LayerNorm) and the output projection tied to the
  token embedding plus a bias per token. [B, L] ids -> [B, L, vocab_size]
  float32 logits of the original token at each position.

  Parameters: 'encoder' (`Transformer.encode`'s, as in `EncoderClassifier`,
  so a classifier warm-starts from them), 'transform', 'transform_norm',
  'output_bias' (BertForMaskedLM's `cls.predictions`).
  """
  config: ModelConfig
  sow_weights: bool = False
  dropout_impl: str = 'hash'

  def setup(self):
    c = self.config
    encoder_only = dataclasses.replace(c, num_decoder_layers=0)
    self.encoder = Transformer(encoder_only, self.sow_weights,
                               self.dropout_impl, name='encoder')
    init = initializers(c)
    self.transform = nn.Dense(
        c.d_model, dtype=c.dtype, dot_general=linear.dot_general,
        kernel_init=partitioning.logical(init.kernel, EMBED, None),
        bias_init=partitioning.logical(nn.initializers.zeros_init(), None),
        name='transform')
    self.transform_norm = layer_norm(c, 'transform_norm')
    self.output_bias = self.param(
        'output_bias',
        partitioning.logical(nn.initializers.zeros_init(), VOCAB),
        (c.vocab_size,))

  def __call__(self, inputs: Array, inputs_positions: Array | None = None,
               inputs_segmentation: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """inputs: [B, L] ids, some replaced by MASK_ID -> [B, L, vocab]."""
    return self.predict(self.encode(inputs, inputs_positions,
                                    inputs_segmentation,
                                    deterministic=deterministic))

  def encode(self, inputs: Array, inputs_positions: Array | None = None,
             inputs_segmentation: Array | None = None, *,
             deterministic: bool = True) -> Array:
    """inputs: [B, L] ids -> [B, L, d_model] encoder outputs."""
    return self.encoder.encode(inputs, inputs_positions, inputs_segmentation,
                               deterministic=deterministic)

  def predict(self, encoded: Array) -> Array:
    """[..., d_model] encoder outputs -> [..., vocab] float32 logits. Any
    leading shape: training predicts only the chosen positions, gathered
    (tasks/masked_lm/gather.py), as BERT's own code does."""
    c = self.config
    h = self.transform_norm(ACTIVATIONS[c.activation](self.transform(encoded)))
    embedding = self.encoder.source_embedding
    logits = embedding.attend(h.astype(c.dtype))  # [..., vocab]
    return logits.astype(jnp.float32) + self.output_bias
