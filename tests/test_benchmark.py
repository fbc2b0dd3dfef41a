"""The benchmark: analytic FLOPs against XLA's count, and a smoke run."""

import dataclasses
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def xla_forward_flops(model: ModelConfig, batch: int, src_len: int,
                      tgt_len: int) -> float:
  """XLA's FLOPs of the compiled teacher-forced forward pass, no dropout."""
  config = Config(model=model)
  params = jax.eval_shape(
      lambda: train_lib.init_state(config, jax.random.key(0)).params)
  rng = np.random.default_rng(0)
  tokens = {'inputs': rng.integers(4, model.vocab_size, (batch, src_len)),
            'targets': rng.integers(4, model.vocab_size, (batch, tgt_len))}
  tokens = {k: jnp.asarray(v, jnp.int32) for k, v in tokens.items()}
  forward = jax.jit(lambda p, b: train_lib.forward(p, b, config, rng=None))
  flops = benchmark.xla_flops(forward.lower(params, tokens).compile())
  assert flops is not None, 'this backend gives no cost analysis'
  return flops


@pytest.mark.parametrize('src_len,tgt_len', [(32, 32), (48, 24)])
def test_forward_flops_match_xla_cost_analysis(src_len, tgt_len):
  want = xla_forward_flops(FLOPS_MODEL, 4, src_len, tgt_len)
  got = benchmark.forward_flops(FLOPS_MODEL, 4, src_len, tgt_len)
  # The formula counts matmuls only, so it is a little below XLA's count.
  assert got == pytest.approx(want, rel=0.10), (got, want, got / want)


def test_forward_flops_hand_count():
  model = ModelConfig(vocab_size=10, d_model=2, d_ff=3, num_heads=1,
                      num_encoder_layers=1, num_decoder_layers=1)
  b, s, t, d, f, v = 1, 5, 7, 2, 3, 10
  encoder = 8 * b * s * d * d + 4 * b * s * s * d + 4 * b * s * d * f
  decoder = (8 * b * t * d * d + 4 * b * t * t * d + 4 * b * t * d * d
             + 4 * b * s * d * d + 4 * b * t * s * d + 4 * b * t * d * f)
  assert benchmark.forward_flops(model, b, s, t) == (
      encoder + decoder + 2 * b * t * d * v)
  config = Config(model=model, data=DataConfig(batch_size=3, max_length=5))
  assert benchmark.train_flops(config) == 3 * benchmark.forward_flops(
      model, 3, 5, 5)


def test_published_peaks():
  peak, source = benchmark.published_peak('NVIDIA H100 80GB HBM3', 'bfloat16')
  assert peak == 989.4e12 and 'H100 SXM' in source
  assert benchmark.published_peak('NVIDIA H100 PCIe', 'bfloat16')[0] == 756e12
  assert benchmark.published_peak('NVIDIA H200', 'bfloat16')[0] == 989.4e12
  assert benchmark.published_peak('NVIDIA A100-SXM4-80GB', 'bfloat16')[0] == (
      312e12)
  assert benchmark.published_peak('TPU v5 lite', 'float32')[0] == 197e12
  assert benchmark.published_peak('TPU v5', 'bfloat16')[0] == 459e12
  assert benchmark.published_peak('TPU v6 lite', 'bfloat16')[0] == 918e12
  assert benchmark.published_peak('TPU v4', 'bfloat16')[0] == 275e12
  peak, note = benchmark.published_peak('Some Future Chip', 'bfloat16')
  assert peak is None and 'MFU not computed' in note


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
    assert written[key] is not None and written[key] > 0, key
  assert written['jax_version'] == jax.__version__
  assert written['device_kind'] and written['peak_source']
  assert written['peak_memory_bytes'] > 0
  return written


@pytest.mark.slow
def test_run_on_tiny(tmp_path):
  config = importlib.import_module('experiments.tiny').get_config()
  result = benchmark.run(config, str(tmp_path), repeats=2, decode_repeats=1,
                         input_batches=5, verbose=False)
  written = _check_result(result, tmp_path)
  assert written['data'].startswith('real')  # the toy task is always there
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
  params = train_lib.init_state(config, jax.random.key(1)).params
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
