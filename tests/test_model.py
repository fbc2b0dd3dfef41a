"""Model behaviour: causality, padding, packing, cached decoding, sizes."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import config as config_lib
from transformer.config import BOS_ID, PAD_ID, ModelConfig
from transformer.model import Transformer, shift_right, sinusoidal_positions

from conftest import TINY_MODEL

PRE_LN = dataclasses.replace(TINY_MODEL, norm_position='pre')
VARIANTS = {'post-LN': TINY_MODEL, 'pre-LN': PRE_LN}


@functools.lru_cache(maxsize=None)
def params_for(config: ModelConfig):
  tokens = jnp.ones((1, 4), jnp.int32)
  return Transformer(config).init(jax.random.key(0), tokens, tokens)['params']


@functools.partial(jax.jit, static_argnames=('config',))
def forward(config, params, inputs, targets, inputs_positions=None,
            targets_positions=None, inputs_segmentation=None,
            targets_segmentation=None):
  return Transformer(config).apply(
      {'params': params}, inputs, targets, inputs_positions, targets_positions,
      inputs_segmentation, targets_segmentation)


@functools.partial(jax.jit, static_argnames=('config',))
def encode(config, params, inputs, inputs_positions=None,
           inputs_segmentation=None):
  return Transformer(config).apply({'params': params}, inputs,
                                   inputs_positions, inputs_segmentation,
                                   method=Transformer.encode)


def assert_finite(*arrays):
  """assert_array_equal and assert_allclose treat NaN as equal to NaN: a
  model that outputs NaN would pass every comparison of two of its runs."""
  for array in arrays:
    assert np.all(np.isfinite(np.asarray(array, np.float32))), array


def random_tokens(seed, shape, low=4):
  return jnp.asarray(np.random.default_rng(seed).integers(
      low, TINY_MODEL.vocab_size, shape), jnp.int32)


@pytest.mark.parametrize('name', list(VARIANTS))
def test_decoder_is_causal(name):
  config = VARIANTS[name]
  params = params_for(config)
  inputs, targets = random_tokens(0, (2, 6)), random_tokens(1, (2, 8))
  base = forward(config, params, inputs, targets)
  assert_finite(base)
  for t in (0, 3, 6):
    changed = targets.at[:, t:].set(random_tokens(2 + t, (2, 8 - t)))
    logits = forward(config, params, inputs, changed)
    assert_finite(logits)
    # logits[:, s] sees targets[:, :s] only, so positions <= t are unchanged.
    np.testing.assert_array_equal(logits[:, :t + 1], base[:, :t + 1])
    assert not np.allclose(logits[:, t + 1:], base[:, t + 1:])


@pytest.mark.parametrize('name', list(VARIANTS))
def test_padding_does_not_change_real_outputs(name):
  config = VARIANTS[name]
  params = params_for(config)
  inputs, targets = random_tokens(3, (2, 5)), random_tokens(4, (2, 6))
  inputs = inputs.at[1, 3:].set(PAD_ID)  # second source is 3 tokens long
  base_encoded = encode(config, params, inputs)
  base_logits = forward(config, params, inputs, targets)
  assert_finite(base_encoded, base_logits)

  # More padding behind every source.
  longer = jnp.pad(inputs, [(0, 0), (0, 4)], constant_values=PAD_ID)
  longer_encoded = encode(config, params, longer)
  longer_logits = forward(config, params, longer, targets)
  assert_finite(longer_encoded, longer_logits)
  np.testing.assert_allclose(longer_encoded[:, :5], base_encoded, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(longer_logits, base_logits, rtol=1e-5, atol=1e-6)

  # Other token ids at padded positions, marked as padding by segment id 0.
  segments = (inputs != PAD_ID).astype(jnp.int32)
  garbage = jnp.where(segments == 1, inputs, random_tokens(5, inputs.shape))
  target_segments = jnp.ones_like(targets)
  real = np.asarray(segments, bool)
  garbage_encoded = encode(config, params, garbage, None, segments)
  garbage_logits = forward(config, params, garbage, targets, None, None,
                           segments, target_segments)
  assert_finite(garbage_encoded[real], garbage_logits)
  np.testing.assert_allclose(garbage_encoded[real], base_encoded[real],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(garbage_logits, base_logits, rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize('name', list(VARIANTS))
def test_packed_row_equals_sentences_alone(name):
  config = VARIANTS[name]
  params = params_for(config)
  src_a, tgt_a = random_tokens(6, (1, 4)), random_tokens(7, (1, 3))
  src_b, tgt_b = random_tokens(8, (1, 3)), random_tokens(9, (1, 5))
  pad = lambda x, n: jnp.pad(x, [(0, 0), (0, n)], constant_values=PAD_ID)
  row = lambda a, b, extra: pad(jnp.concatenate([a, b], 1), extra)
  inputs, targets = row(src_a, src_b, 2), row(tgt_a, tgt_b, 1)
  segments = lambda la, lb, extra: jnp.array(
      [[1] * la + [2] * lb + [0] * extra])
  positions = lambda la, lb, extra: jnp.array(
      [list(range(la)) + list(range(lb)) + [0] * extra])
  packed = forward(config, params, inputs, targets, positions(4, 3, 2),
                   positions(3, 5, 1), segments(4, 3, 2), segments(3, 5, 1))
  alone_a = forward(config, params, src_a, tgt_a)
  alone_b = forward(config, params, src_b, tgt_b)
  assert_finite(packed[:, :8], alone_a, alone_b)
  np.testing.assert_allclose(packed[:, :3], alone_a, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(packed[:, 3:8], alone_b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('group', [1, 3])
@pytest.mark.parametrize('name', list(VARIANTS))
def test_cached_decoding_equals_full_forward(name, group):
  """group > 1: several decoder rows per sentence (beam search's hypotheses)
  share the sentence's one encoder cache row; each must still equal the
  full forward pass of its sentence."""
  config = VARIANTS[name]
  params = params_for(config)
  model = Transformer(config)
  inputs, targets = random_tokens(10, (2, 5)), random_tokens(11, (2, 7))
  inputs = inputs.at[0, 4:].set(PAD_ID)
  full = jnp.repeat(forward(config, params, inputs, targets), group, axis=0)
  assert_finite(full)

  decoder_inputs = jnp.repeat(shift_right(targets), group, axis=0)
  encoded = encode(config, params, inputs)
  _, variables = model.apply({'params': params}, encoded, inputs,
                              targets.shape[1], group,
                              method=Transformer.init_cache, mutable=['cache'])
  cache = variables['cache']
  self_cache = cache['decoder_0']['self_attention']['cached_key']
  encoder_cache = cache['decoder_0']['cross_attention']['encoder_key']
  heads, head_dim = config.num_heads, config.head_dim
  assert self_cache.shape == (2 * group, heads, targets.shape[1], head_dim)
  assert encoder_cache.shape == (2, heads, inputs.shape[1], head_dim)
  assert not np.any(self_cache), 'allocation must leave the cache empty'

  @jax.jit
  def step(cache, token, position):
    # Zeros for the encoder output: cross-attention must use its cache.
    return model.apply({'params': params, 'cache': cache},
                       jnp.zeros_like(encoded), inputs,
                       token, position, decode=True, mutable=['cache'],
                       method=Transformer.decode)

  for t in range(targets.shape[1]):
    position = jnp.full((2 * group, 1), t, jnp.int32)
    logits, variables = step(cache, decoder_inputs[:, t:t + 1], position)
    cache = variables['cache']
    assert_finite(logits)
    np.testing.assert_allclose(logits[:, 0], full[:, t], rtol=1e-5, atol=1e-5)


def test_dropout_only_when_not_deterministic():
  params = params_for(TINY_MODEL)
  model = Transformer(TINY_MODEL)
  inputs, targets = random_tokens(12, (2, 5)), random_tokens(13, (2, 5))
  run = lambda seed: model.apply({'params': params}, inputs, targets,
                                 deterministic=False,
                                 rngs={'dropout': jax.random.key(seed)})
  eval_logits = forward(TINY_MODEL, params, inputs, targets)
  assert_finite(run(1), run(2), eval_logits)
  np.testing.assert_array_equal(run(1), run(1))
  assert not np.allclose(run(1), run(2))
  assert not np.allclose(run(1), eval_logits)


def test_sinusoidal_positions_follow_the_paper():
  d, positions = 6, np.array([[0, 1, 2, 7]])
  want = np.zeros((1, 4, d))
  for j, pos in enumerate(positions[0]):
    for i in range(d // 2):
      want[0, j, 2 * i] = math.sin(pos / 10000 ** (2 * i / d))
      want[0, j, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d))
  np.testing.assert_allclose(sinusoidal_positions(jnp.asarray(positions), d),
                             want, rtol=1e-5, atol=1e-6)


def test_shift_right_starts_every_segment_with_bos():
  targets = jnp.array([[5, 6, 7, 8, 9, 0]])
  np.testing.assert_array_equal(shift_right(targets),
                                [[BOS_ID, 5, 6, 7, 8, 9]])
  positions = jnp.array([[0, 1, 0, 1, 2, 0]])
  np.testing.assert_array_equal(shift_right(targets, positions),
                                [[BOS_ID, 5, BOS_ID, 7, 8, BOS_ID]])


def count_params(config: ModelConfig) -> int:
  tokens = jax.ShapeDtypeStruct((1, 4), jnp.int32)
  shapes = jax.eval_shape(Transformer(config).init, jax.random.key(0), tokens,
                          tokens)
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes['params']))


def paper_param_count(vocab, d, d_ff, layers):
  """Worked out by hand from the paper's dimensions (sec. 3, 3.4)."""
  attention = 4 * (d * d + d)  # W^Q, W^K, W^V, W^O with biases
  ffn = d * d_ff + d_ff + d_ff * d + d  # eq. (2)
  layer_norm = 2 * d  # gain and bias
  encoder_layer = attention + ffn + 2 * layer_norm
  decoder_layer = 2 * attention + ffn + 3 * layer_norm
  embedding = vocab * d  # shared by source, target and the output projection
  return embedding + layers * (encoder_layer + decoder_layer)


@pytest.mark.parametrize('preset,paper_millions', [('base', 65), ('big', 213)])
def test_parameter_counts_match_the_paper(preset, paper_millions):
  config = dataclasses.replace(config_lib.PRESETS[preset], vocab_size=37_000)
  got = count_params(config)
  assert got == paper_param_count(37_000, config.d_model, config.d_ff, 6)
  assert abs(got / (paper_millions * 1e6) - 1) < 0.05


def test_switches_change_the_parameters_as_expected():
  v, d = TINY_MODEL.vocab_size, TINY_MODEL.d_model
  base = count_params(TINY_MODEL)
  unshared = dataclasses.replace(TINY_MODEL, share_embeddings=False)
  untied = dataclasses.replace(TINY_MODEL, tie_output_embedding=False)
  learned = dataclasses.replace(TINY_MODEL, positions='learned')
  assert count_params(unshared) == base + v * d
  assert count_params(untied) == base + d * v + v
  assert count_params(learned) == base + TINY_MODEL.max_length * d
  assert count_params(PRE_LN) == base + 2 * 2 * d  # final norms


def test_bfloat16_compute_keeps_float32_params_and_close_logits():
  config = dataclasses.replace(TINY_MODEL, dtype='bfloat16')
  params = params_for(config)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype('float32')}
  inputs, targets = random_tokens(14, (2, 5)), random_tokens(15, (2, 5))
  low = forward(config, params, inputs, targets)
  high = forward(TINY_MODEL, params, inputs, targets)
  assert low.dtype == jnp.float32
  assert_finite(low, high)
  np.testing.assert_allclose(low, high, atol=0.1)


def test_bad_config_is_rejected_with_the_field_name():
  with pytest.raises(ValueError, match='model.num_heads'):
    ModelConfig(d_model=30, num_heads=4)
  with pytest.raises(ValueError, match='model.activation'):
    ModelConfig(activation='tanh')
