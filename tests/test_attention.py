"""Attention against a naive NumPy softmax(QK^T / sqrt(d)) V, under each mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import attention
from transformer import dropout

B, T, S, N, H = 2, 5, 7, 3, 4


def naive_attention(q, k, v, mask):
  """Loops over batch and heads; mask [B|1, 1|N, T, S] of booleans or None."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  out = np.zeros(q.shape)
  if mask is not None:
    mask = np.broadcast_to(np.asarray(mask), (q.shape[0], q.shape[2],
                                              q.shape[1], k.shape[1]))
  for b in range(q.shape[0]):
    for n in range(q.shape[2]):
      logits = q[b, :, n] @ k[b, :, n].T / np.sqrt(q.shape[-1])  # [T, S]
      if mask is not None:
        logits = np.where(mask[b, n], logits, -np.inf)
      weights = np.exp(logits - logits.max(-1, keepdims=True))
      weights /= weights.sum(-1, keepdims=True)
      out[b, :, n] = weights @ v[b, :, n]
  return out


def assert_finite(*arrays):
  """assert_allclose treats NaN as equal to NaN: check both sides first."""
  for array in arrays:
    assert np.all(np.isfinite(np.asarray(array, np.float64))), array


def random_qkv(seed, t=T, s=S):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(B, t, N, H)).astype(np.float32),
          rng.normal(size=(B, s, N, H)).astype(np.float32),
          rng.normal(size=(B, s, N, H)).astype(np.float32))


def test_masks_match_hand_written_values():
  tokens = jnp.array([[5, 6, 0], [7, 0, 0]])
  np.testing.assert_array_equal(
      attention.padding_mask(tokens)[:, 0, 0],
      [[True, True, False], [True, False, False]])
  np.testing.assert_array_equal(
      attention.causal_mask(3)[0, 0],
      [[True, False, False], [True, True, False], [True, True, True]])
  segments = jnp.array([[1, 1, 2, 0]])
  np.testing.assert_array_equal(
      attention.segment_mask(segments, segments)[0, 0],
      [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
  combined = attention.combine_masks(attention.causal_mask(4), None,
                                     attention.segment_mask(segments, segments))
  np.testing.assert_array_equal(
      combined[0, 0],
      [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
  assert attention.combine_masks(None, None) is None


def masks_by_kind():
  rng = np.random.default_rng(0)
  key_tokens = np.array([[4, 5, 6, 7, 8, 0, 0], [3, 9, 0, 0, 0, 0, 0]])
  q_segments = np.array([[1, 1, 2, 2, 0], [1, 2, 2, 3, 3]])
  k_segments = np.array([[1, 1, 1, 2, 2, 0, 0], [1, 2, 3, 3, 3, 0, 0]])
  causal = np.tril(np.ones((T, S), bool), k=S - T)[None, None]
  return {
      'none': None,
      'padding': attention.padding_mask(jnp.asarray(key_tokens)),
      'causal': jnp.asarray(causal),
      'segment': attention.segment_mask(jnp.asarray(q_segments),
                                        jnp.asarray(k_segments)),
      'padding+causal': attention.combine_masks(
          attention.padding_mask(jnp.asarray(key_tokens)), jnp.asarray(causal)),
      'random per head': jnp.asarray(rng.random((B, N, T, S)) < 0.7).at[
          ..., 0].set(True),
  }


@pytest.mark.parametrize('kind', list(masks_by_kind()))
@pytest.mark.parametrize('explicit', [False, True],
                         ids=['jax.nn', 'explicit weights'])
def test_attention_matches_naive_numpy(kind, explicit):
  mask = masks_by_kind()[kind]
  q, k, v = random_qkv(1)
  got = attention.dot_product_attention(q, k, v, mask,
                                        return_weights=explicit)
  if explicit:
    got, weights = got
    assert_finite(weights)
    np.testing.assert_allclose(np.sum(weights, -1), 1.0, rtol=1e-6)
  want = naive_attention(q, k, v, mask)
  assert_finite(got, want)  # every mask leaves each query a key
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('impl', ['hash', 'threefry'])
def test_attention_dropout_drops_and_rescales_probabilities(impl):
  q, k, v = random_qkv(2)
  rate, rng = 0.25, jax.random.key(3)
  got = attention.dot_product_attention(q, k, v, None, dropout_rate=rate,
                                        dropout_rng=rng, dropout_impl=impl)
  # Reference: the same keep pattern applied to naive weights.
  if impl == 'threefry':
    keep = np.asarray(jax.random.bernoulli(rng, 1 - rate, (B, N, T, S)))
  else:
    keep = np.asarray(dropout.keep_mask(rng, (B, N, T, S), rate, 'hash'))
  assert 0 < keep.mean() < 1
  logits = np.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(H)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  want = np.einsum('bnts,bsnh->btnh', w * keep / (1 - rate), v)
  no_dropout = attention.dot_product_attention(q, k, v, None)
  assert_finite(got, want, no_dropout)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert not np.allclose(got, no_dropout)


def test_fully_masked_row_stays_finite():
  q, k, v = random_qkv(4)
  mask = jnp.zeros((B, 1, T, S), bool)
  for explicit in (False, True):
    out = attention.dot_product_attention(q, k, v, mask,
                                          return_weights=explicit)
    out = out[0] if explicit else out
    assert np.all(np.isfinite(out))


def test_auto_implementation_is_xla_off_gpu_and_config_guards_cudnn():
  from transformer.config import ModelConfig  # pylint: disable=g-import-not-at-top
  on_gpu = jax.default_backend() == 'gpu'
  assert attention.cudnn_applies(jnp.bfloat16, 64, 256, 256) == on_gpu
  assert not attention.cudnn_applies(jnp.float32, 64, 256)
  assert not attention.cudnn_applies(jnp.bfloat16, 160, 256)  # head_dim > 128
  assert not attention.cudnn_applies(jnp.bfloat16, 64, 255)  # odd length
  with pytest.raises(ValueError, match="attention_impl='cudnn' needs"):
    ModelConfig(attention_impl='cudnn')  # float32
  with pytest.raises(ValueError, match='attention_dropout_rate'):
    ModelConfig(attention_impl='cudnn', dtype='bfloat16',
                attention_dropout_rate=0.1)


@pytest.mark.skipif(jax.default_backend() != 'gpu',
                    reason="cuDNN's fused attention needs an NVIDIA GPU")
@pytest.mark.parametrize('kind', ['none', 'padding', 'segment+causal'])
def test_cudnn_attention_matches_naive_and_xla_gradients(kind):
  """The fused kernel: outputs against float64 NumPy, gradients against XLA."""
  b, t, n, h = 2, 64, 4, 64
  rng = np.random.default_rng(5)
  q, k, v = (rng.normal(size=(b, t, n, h)).astype(np.float32)
             for _ in range(3))
  q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in (q, k, v))
  segments = jnp.asarray(np.repeat([[1, 2, 3, 0]], b, 0).repeat(t // 4, 1))
  mask = {'none': None,
          'padding': attention.padding_mask(segments),
          'segment+causal': attention.combine_masks(
              attention.causal_mask(t),
              attention.segment_mask(segments, segments))}[kind]
  causal = kind == 'segment+causal'
  fused = attention.dot_product_attention(q, k, v, mask, is_causal=causal,
                                          implementation='cudnn')
  want = naive_attention(*(np.asarray(x, np.float32) for x in (q, k, v)), mask)
  assert_finite(np.asarray(fused, np.float32), want)
  np.testing.assert_allclose(np.asarray(fused, np.float32), want, atol=2e-2)

  def loss(impl, q, k, v):
    out = attention.dot_product_attention(q, k, v, mask, is_causal=causal,
                                          implementation=impl)
    return jnp.sum(out.astype(jnp.float32) * jnp.cos(jnp.arange(h)))

  grads = {impl: jax.grad(lambda *a: loss(impl, *a), argnums=(0, 1, 2))(
      q, k, v) for impl in ('cudnn', 'xla')}
  for fused_grad, xla_grad in zip(grads['cudnn'], grads['xla']):
    fused_grad, xla_grad = (np.asarray(x, np.float32)
                            for x in (fused_grad, xla_grad))
    assert_finite(fused_grad, xla_grad)
    scale = np.abs(xla_grad).max()
    np.testing.assert_allclose(fused_grad, xla_grad, atol=3e-2 * scale)
