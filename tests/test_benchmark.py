"""The benchmark: analytic FLOPs against XLA's count, and a smoke run."""

import dataclasses
import importlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import tasks
from transformer import benchmark
from transformer import train as train_lib
from transformer.config import Config, DataConfig, ModelConfig

# Big enough that matmuls dominate XLA's count (which also counts softmax,
# LayerNorm, masks, ...), small enough to compile in seconds.
FLOPS_MODEL = ModelConfig(vocab_size=1000, d_model=128, d_ff=512, num_heads=4,
                          num_encoder_layers=2, num_decoder_layers=2,
                          dropout_rate=0.0, max_length=64)
REQUIRED = ('train_mfu', 'train_tokens_per_s', 'compile_s', 'greedy_s',
            'beam4_s')


def assert_finite(*values):
  for value in values:
    assert value is not None and math.isfinite(value), values


def xla_forward_flops(model: ModelConfig, batch: int, src_len: int,
                      tgt_len: int) -> float:
  """XLA's FLOPs of the compiled teacher-forced forward pass, no dropout."""
  config = Config(model=model)
  params = jax.eval_shape(
      lambda: train_lib.init_state(tasks.for_config(config),
                                   jax.random.key(0)).params)
  rng = np.random.default_rng(0)
  tokens = {'inputs': rng.integers(4, model.vocab_size, (batch, src_len)),
            'targets': rng.integers(4, model.vocab_size, (batch, tgt_len))}
  tokens = {k: jnp.asarray(v, jnp.int32) for k, v in tokens.items()}
  forward = jax.jit(lambda p, b: tasks.for_config(config).forward(
      p, b, rng=None))
  flops = benchmark.xla_flops(forward.lower(params, tokens).compile())
  assert flops is not None, 'this backend gives no cost analysis'
  return flops


# The hand count. What the library counts (benchmark's module docstring):
# matrix multiplications only, each [m, k] @ [k, n] as 2 * m * k * n FLOPs;
# embedding lookups, softmax, LayerNorm, biases, masks and the loss are left
# out. Attention is counted as computed: every one of the L_q x L_kv pairs
# (masked and causal ones included), head by head. A train step is 3 forward
# passes (the backward pass computes the gradient of both inputs of every
# matmul: 2 matmuls of the forward's size), on data.batch_size rows of
# data.max_length source and target positions; an eval step is 1.
# Written from the paper's dimensions (d_model, d_ff, h heads of
# d_k = d_v = d_model / h, vocabulary), not from the library's formula.


def matmul(m: int, k: int, n: int) -> int:
  """FLOPs of [m, k] @ [k, n]: m * n dot products of length k, 2 each."""
  return 2 * m * k * n


def attention_flops(model: ModelConfig, batch: int, q_len: int,
                    kv_len: int) -> dict[str, int]:
  """Multi-head attention of q_len queries over kv_len keys (sec. 3.2.2)."""
  d, h = model.d_model, model.num_heads
  d_k = d_v = d // h
  return {
      'query projection': matmul(batch * q_len, d, h * d_k),
      'key projection': matmul(batch * kv_len, d, h * d_k),
      'value projection': matmul(batch * kv_len, d, h * d_v),
      'scores Q K^T': batch * h * matmul(q_len, d_k, kv_len),
      'weighted values': batch * h * matmul(q_len, kv_len, d_v),
      'output projection': matmul(batch * q_len, h * d_v, d),
  }


def feed_forward_flops(model: ModelConfig, rows: int) -> dict[str, int]:
  """FFN(x) = max(0, x W1 + b1) W2 + b2 on `rows` positions (eq. 2)."""
  return {'W1': matmul(rows, model.d_model, model.d_ff),
          'W2': matmul(rows, model.d_ff, model.d_model)}


def hand_forward_flops(model: ModelConfig, b: int, s: int, t: int) -> int:
  """One teacher-forced forward pass of b sentences, s source and t target
  positions, summed sublayer by sublayer."""
  encoder_layer = (sum(attention_flops(model, b, s, s).values())
                   + sum(feed_forward_flops(model, b * s).values()))
  decoder_layer = (
      sum(attention_flops(model, b, t, t).values())  # masked self-attention
      # encoder-decoder attention: target queries, source keys and values
      + sum(attention_flops(model, b, t, s).values())
      + sum(feed_forward_flops(model, b * t).values()))
  pre_softmax = matmul(b * t, model.d_model, model.vocab_size)
  return (model.num_encoder_layers * encoder_layer
          + model.num_decoder_layers * decoder_layer + pre_softmax)


@pytest.mark.parametrize('src_len,tgt_len', [(32, 32), (48, 24)])
def test_forward_flops_match_xla_cost_analysis(src_len, tgt_len):
  want = xla_forward_flops(FLOPS_MODEL, 4, src_len, tgt_len)
  got = benchmark.forward_flops(FLOPS_MODEL, 4, src_len, tgt_len)
  assert_finite(got, want)
  assert got == hand_forward_flops(FLOPS_MODEL, 4, src_len, tgt_len)
  # The formula counts matmuls only, so it is a little below XLA's count.
  assert got == pytest.approx(want, rel=0.10), (got, want, got / want)


# Every dimension different (and layer counts too), so that a count that
# mixes up S and T, d_model and d_ff, or encoder and decoder layers differs.
HAND_MODEL = ModelConfig(vocab_size=11, d_model=6, d_ff=10, num_heads=2,
                         num_encoder_layers=2, num_decoder_layers=3)


def test_hand_count_by_sublayer():
  # One sublayer written out, so that the helpers above are checked too.
  b, s, t = 2, 5, 7
  d, f, h, d_k = 6, 10, 2, 3  # HAND_MODEL's
  cross = attention_flops(HAND_MODEL, b, t, s)
  assert cross == {
      'query projection': 2 * (b * t) * d * d,
      'key projection': 2 * (b * s) * d * d,
      'value projection': 2 * (b * s) * d * d,
      'scores Q K^T': b * h * (2 * t * d_k * s),
      'weighted values': b * h * (2 * t * s * d_k),
      'output projection': 2 * (b * t) * d * d,
  }
  assert feed_forward_flops(HAND_MODEL, b * s) == {
      'W1': 2 * (b * s) * d * f, 'W2': 2 * (b * s) * f * d}


@pytest.mark.parametrize('b,s,t', [(2, 5, 7), (3, 9, 4), (1, 1, 1)])
def test_forward_flops_hand_count(b, s, t):
  got = benchmark.forward_flops(HAND_MODEL, b, s, t)
  assert_finite(got)
  assert got == hand_forward_flops(HAND_MODEL, b, s, t)


@pytest.mark.parametrize('tied', [True, False])
def test_step_flops_hand_count(tied):
  model = dataclasses.replace(HAND_MODEL, tie_output_embedding=tied)
  config = Config(model=model, data=DataConfig(batch_size=3, max_length=9))
  forward = hand_forward_flops(model, 3, 9, 9)
  train, evaluation = benchmark.train_flops(config), benchmark.eval_flops(
      config)
  assert_finite(train, evaluation)
  assert train == 3 * forward and evaluation == forward


@pytest.mark.parametrize('device_kind,dtype,want', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989.4e12),
    ('NVIDIA H100 PCIe', 'bfloat16', 756e12),
    ('NVIDIA H200', 'bfloat16', 989.4e12),
    ('NVIDIA A100-SXM4-80GB', 'bfloat16', 312e12),
    ('TPU v5 lite', 'float32', 197e12),
    ('TPU v5', 'bfloat16', 459e12),
    ('TPU v6 lite', 'bfloat16', 918e12),
    ('TPU v4', 'bfloat16', 275e12),
])
def test_published_peaks(device_kind, dtype, want):
  peak, source = benchmark.published_peak(device_kind, dtype)
  assert_finite(peak)
  assert peak == want, source


def test_published_peak_sources():
  assert 'H100 SXM' in benchmark.published_peak('NVIDIA H100 80GB HBM3',
                                                'bfloat16')[1]
  peak, note = benchmark.published_peak('Some Future Chip', 'bfloat16')
  assert peak is None and 'MFU not computed' in note


def test_peak_and_mfu():
  gpus = benchmark.accelerator_peak('NVIDIA H100 80GB HBM3', 'bfloat16', 8,
                                    5e14)
  assert_finite(gpus['peak_flops_per_s'], gpus['matmul_flops_per_s'])
  assert gpus['peak_flops_per_s'] == 8 * 989.4e12
  assert gpus['peak_source'].endswith(' x 8 devices')
  unknown = benchmark.accelerator_peak('Some Future Chip', 'bfloat16', 1, 1e12)
  assert unknown['peak_flops_per_s'] is None
  assert benchmark.mfu(1e12, 2.0, unknown['peak_flops_per_s']) is None
  # On CPU the slower of the two matmul measurements is not the peak.
  cpu = benchmark.cpu_peak('float32', 1e11, 3e11, processes=2)
  assert_finite(cpu['peak_flops_per_s'])
  assert cpu['peak_flops_per_s'] == 6e11
  assert cpu['matmul_flops_per_s_before_after'] == [1e11, 3e11]
  mfu = benchmark.mfu(1.2e11, 0.5, cpu['peak_flops_per_s'])
  assert_finite(mfu)
  assert mfu == pytest.approx(0.4)


def test_random_batch_has_the_pipeline_shape_and_no_padding():
  config = Config(model=ModelConfig(vocab_size=50),
                  data=DataConfig(max_length=16))
  batch = benchmark.random_batch(config, np.random.default_rng(0), 3)
  assert set(batch) == {'inputs', 'targets', 'inputs_segmentation',
                        'targets_segmentation', 'inputs_positions',
                        'targets_positions'}
  for key, value in batch.items():
    assert value.shape == (3, 16) and value.dtype == np.int32, key
  for key in ('inputs', 'targets'):
    assert (batch[key][:, :-1] > 3).all() and (batch[key][:, -1] == 3).all()


def _check_result(result, workdir):
  with open(workdir / benchmark.RESULT_FILENAME, encoding='utf-8') as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(result))
  for key in REQUIRED:
    assert_finite(written[key])
    assert written[key] > 0, key
  assert written['jax_version'] == jax.__version__
  assert written['device_kind'] and written['peak_source']
  assert_finite(written['peak_memory_bytes'])
  assert written['peak_memory_bytes'] > 0
  return written


@pytest.mark.slow
def test_run_on_tiny(tmp_path):
  config = importlib.import_module('experiments.tiny').get_config()
  result = benchmark.run(config, str(tmp_path), repeats=2, decode_repeats=1,
                         input_batches=5, verbose=False)
  written = _check_result(result, tmp_path)
  assert written['data'].startswith('real')  # the toy task is always there
  assert_finite(written['input_batches_per_s'], written['train_flops'])
  assert written['input_batches_per_s'] > 0
  assert written['train_flops'] == benchmark.train_flops(config)


def test_random_batches_when_the_data_is_missing(tmp_path):
  config = importlib.import_module('experiments.tiny').get_config()
  # 'text' without text_dir: a DataError, so random batches of the shape.
  config = dataclasses.replace(
      config, data=dataclasses.replace(config.data, source='text'))
  rng = np.random.default_rng(0)
  tokenizer, batches, data, note = benchmark.train_batches(
      config, str(tmp_path), 3, rng)
  assert tokenizer is None and data == 'random' and 'text_dir' in note
  assert len(batches) == 3
  assert batches[0]['targets'].shape == (config.data.batch_size,
                                         config.data.max_length)
  sources, sentences, what = benchmark.decode_inputs(config, None, rng)
  assert sources.shape == (config.data.eval_batch_size,
                           config.data.max_length)
  assert sentences == config.data.eval_batch_size and 'random' in what


@pytest.mark.parametrize('tied', [True, False])
def test_untrained_decoding_runs_every_sentence_to_its_limit(tied):
  from transformer import decode as decode_lib  # pylint: disable=g-import-not-at-top
  from transformer.config import EOS_ID, PAD_ID  # pylint: disable=g-import-not-at-top
  model = dataclasses.replace(FLOPS_MODEL, vocab_size=50, d_model=32,
                              d_ff=64, num_encoder_layers=1,
                              num_decoder_layers=1, tie_output_embedding=tied)
  config = Config(model=model)
  params = train_lib.init_state(tasks.for_config(config),
                                jax.random.key(1)).params
  if not tied:  # a model that would say EOS at once
    layer = params['output_projection']
    params = {**params, 'output_projection': {
        **layer, 'bias': layer['bias'].at[EOS_ID].set(10.0)}}
  params = benchmark.never_eos(params, model)
  rng = np.random.default_rng(2)
  inputs = rng.integers(4, model.vocab_size, (3, 6)).astype(np.int32)
  inputs[0, 4:] = PAD_ID
  inputs[np.arange(3), [3, 5, 5]] = EOS_ID
  limits = np.asarray(decode_lib.length_limits(jnp.asarray(inputs), 4))
  greedy = np.asarray(decode_lib.greedy_decode(params, model, inputs,
                                               max_extra_length=4))
  beams, _ = decode_lib.beam_search(params, model, inputs, beam_size=2,
                                    max_extra_length=4)
  for tokens in (greedy, np.asarray(beams)[:, 0]):
    lengths = np.sum(tokens != PAD_ID, axis=1)
    np.testing.assert_array_equal(lengths, limits)
    assert np.all(tokens[np.arange(3), limits - 1] == EOS_ID)
    assert np.sum(tokens == EOS_ID) == 3  # none before the limit
