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
from transformer import measure
from transformer import peak as peak_lib
from transformer import train as train_lib
from transformer.config import (Config, ConfigError, DataConfig, ModelConfig,
                                TrainConfig)
from transformer.tasks import labelled
from transformer.tasks.labelled import benchmark as labelled_benchmark
from transformer.tasks.language_model import benchmark as lm_benchmark
from transformer.tasks.translation import benchmark as translation_benchmark

# Big enough that matmuls dominate XLA's count (which also counts softmax,
# LayerNorm, masks, ...), small enough to compile in seconds.
FLOPS_MODEL = ModelConfig(vocab_size=1000, d_model=128, d_ff=512, num_heads=4,
                          num_encoder_layers=2, num_decoder_layers=2,
                          dropout_rate=0.0, max_length=64)
REQUIRED = ('train_mfu', 'train_tokens_per_s', 'compile_s', 'greedy_s',
            'beam4_s')
# Every number a classification or regression report has (benchmark's
# module docstring): each must be finite and positive.
LABELLED_POSITIVE = (
    'num_outputs', 'num_params', 'compile_s', 'first_step_s', 'train_step_s',
    'train_step_min_s', 'train_step_max_s', 'train_step_p25_s',
    'train_step_p75_s', 'train_step_back_to_back_s', 'train_steps_per_s',
    'train_examples_per_s', 'train_tokens_per_s', 'train_examples_per_step',
    'train_tokens_per_step', 'train_flops', 'xla_train_flops',
    'train_flops_per_s', 'matmul_flops_per_s', 'peak_flops_per_s',
    'train_mfu', 'eval_compile_s', 'eval_step_s', 'eval_step_min_s',
    'eval_step_max_s', 'eval_examples_per_s', 'eval_tokens_per_s',
    'eval_mfu', 'peak_memory_bytes', 'benchmark_wall_s')
TRANSLATION_ONLY = ('decode_repeats', 'greedy_s', 'beam4_s',
                    'beam4_over_greedy', 'input_batches_per_s',
                    'input_over_train', 'decode_inputs',
                    'train_source_tokens_per_s',
                    'train_target_tokens_per_step')


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
  flops = peak_lib.xla_flops(forward.lower(params, tokens).compile())
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
  got = translation_benchmark.forward_flops(FLOPS_MODEL, 4, src_len,
                                            tgt_len)
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
  got = translation_benchmark.forward_flops(HAND_MODEL, b, s, t)
  assert_finite(got)
  assert got == hand_forward_flops(HAND_MODEL, b, s, t)


@pytest.mark.parametrize('tied', [True, False])
def test_step_flops_hand_count(tied):
  model = dataclasses.replace(HAND_MODEL, tie_output_embedding=tied)
  config = Config(model=model, data=DataConfig(batch_size=3, max_length=9))
  forward = hand_forward_flops(model, 3, 9, 9)
  train = translation_benchmark.train_flops(config)
  evaluation = translation_benchmark.eval_flops(config)
  assert_finite(train, evaluation)
  assert train == 3 * forward and evaluation == forward


# Classification and regression: the encoder of `EncoderClassifier` (its
# decoder layers are never built: HAND_MODEL's 3 must not count), mean or
# first-token pooling (no matmul), and the head, [B, d_model] @ [d_model, K].


def hand_labelled_forward_flops(model: ModelConfig, b: int, length: int,
                                outputs: int) -> int:
  """One forward pass of b texts of `length` positions, sublayer by
  sublayer, then the head's K outputs per text."""
  encoder_layer = (sum(attention_flops(model, b, length, length).values())
                   + sum(feed_forward_flops(model, b * length).values()))
  head = matmul(b, model.d_model, outputs)  # one pooled vector per text
  return model.num_encoder_layers * encoder_layer + head


def test_labelled_hand_count_by_sublayer():
  b, length, outputs = 2, 5, 3
  d, f, h, d_k = 6, 10, 2, 3  # HAND_MODEL's
  per_layer = (4 * 2 * (b * length) * d * d  # Q, K, V, O projections
               + 2 * b * h * (2 * length * d_k * length)  # scores, values
               + 2 * 2 * (b * length) * d * f)  # FFN W1, W2
  assert hand_labelled_forward_flops(HAND_MODEL, b, length, outputs) == (
      2 * per_layer + 2 * b * d * outputs)


@pytest.mark.parametrize('b,length,outputs', [(2, 5, 3), (3, 9, 1),
                                              (1, 1, 2)])
def test_labelled_forward_flops_hand_count(b, length, outputs):
  got = labelled_benchmark.forward_flops(HAND_MODEL, b, length, outputs)
  assert_finite(got)
  assert got == hand_labelled_forward_flops(HAND_MODEL, b, length, outputs)


@pytest.mark.parametrize('task_name,loss,outputs', [
    ('classification', 'cross_entropy', labelled.BENCHMARK_CLASSES),
    ('classification', 'log_loss', 1),  # two classes, one sigmoid logit
    ('regression', 'mse', 1)])
def test_labelled_step_flops_hand_count(task_name, loss, outputs):
  config = Config(task=task_name, model=HAND_MODEL,
                  data=DataConfig(batch_size=3, max_length=9),
                  train=TrainConfig(loss=loss))
  task = tasks.for_benchmark(config)
  assert task.num_outputs == outputs
  forward = hand_labelled_forward_flops(HAND_MODEL, 3, 9, outputs)
  train = labelled_benchmark.train_flops(task)
  evaluation = labelled_benchmark.eval_flops(task)
  family = task.benchmark()
  assert_finite(train, evaluation, family.train_flops(), family.eval_flops())
  assert train == 3 * forward and evaluation == forward
  assert family.train_flops() == train and family.eval_flops() == evaluation


def xla_train_step_flops(task, batch) -> float:
  """XLA's FLOPs of the task's train step, compiled as the benchmark does
  (`compile_train_step`: forward, backward and the AdamW update)."""
  mesh = train_lib.make_mesh()
  _, _, _, report = benchmark.compile_train_step(
      task, mesh, train_lib.global_batch(batch, mesh))
  return report['xla_train_flops']


# Matmuls dominate XLA's count here too; no dropout (its hash is counted).
LABELLED_FLOPS_MODEL = dataclasses.replace(FLOPS_MODEL, num_decoder_layers=0)


@pytest.mark.parametrize('task_name,loss,length,pooling', [
    ('classification', 'cross_entropy', 32, 'mean'),
    ('regression', 'mse', 48, 'first')])
def test_labelled_train_flops_match_xla_cost_analysis(task_name, loss, length,
                                                      pooling):
  """The analytic count against XLA's of the compiled train step itself
  (`compile_train_step`: forward, backward and the AdamW update)."""
  config = Config(task=task_name,
                  model=dataclasses.replace(LABELLED_FLOPS_MODEL,
                                            pooling=pooling),
                  data=DataConfig(batch_size=4, max_length=length),
                  train=TrainConfig(loss=loss, label_smoothing=0.0))
  task = tasks.for_benchmark(config)
  want = xla_train_step_flops(
      task, labelled_benchmark.random_labelled_batch(
          task, np.random.default_rng(0), 4))
  got = labelled_benchmark.train_flops(task)
  assert_finite(got, want)
  assert got == 3 * hand_labelled_forward_flops(config.model, 4, length,
                                                task.num_outputs)
  # Matmuls only: a little below XLA's count (softmax, LayerNorm, AdamW...).
  assert got == pytest.approx(want, rel=0.10), (got, want, got / want)
  assert got < want


# Language model (`LanguageModel`): the decoder's layers without
# encoder-decoder attention, each masked self-attention over the whole row
# (every one of the L x L query-key pairs, as computed: causal masking hides
# half of them but the matmuls run in full) and the FFN, then the output
# projection (tied: the embedding's transpose) at every position. The
# encoder layers of the config are never built.


def hand_lm_forward_flops(model: ModelConfig, b: int, length: int,
                          **wrong: float) -> float:
  """One forward pass of b rows of `length` tokens, sublayer by sublayer.

  `wrong` scales a term (e.g. output=0, attention=2), for formulas that the
  XLA check must reject."""
  scale = {'projections': 1.0, 'attention': 1.0, 'ffn': 1.0, 'output': 1.0,
           'encoder_layers': 0.0, **wrong}
  attention = attention_flops(model, b, length, length)
  scores = attention['scores Q K^T'] + attention['weighted values']
  layer = (scale['projections'] * (sum(attention.values()) - scores)
           + scale['attention'] * scores
           + scale['ffn'] * sum(feed_forward_flops(model, b * length).values()))
  layers = model.num_decoder_layers + scale['encoder_layers'] * (
      model.num_encoder_layers)
  return layers * layer + scale['output'] * matmul(b * length, model.d_model,
                                                   model.vocab_size)


@pytest.mark.parametrize('b,length', [(2, 5), (3, 9), (1, 1)])
def test_lm_forward_flops_hand_count(b, length):
  # HAND_MODEL's 2 encoder layers must not count, its 3 decoder layers must.
  got = lm_benchmark.lm_forward_flops(HAND_MODEL, b, length)
  assert_finite(got)
  assert got == hand_lm_forward_flops(HAND_MODEL, b, length)
  d, f, h, d_k, v = 6, 10, 2, 3, 11  # HAND_MODEL's
  per_layer = (4 * 2 * (b * length) * d * d  # Q, K, V, O projections
               + 2 * b * h * (2 * length * d_k * length)  # scores, values
               + 2 * 2 * (b * length) * d * f)  # FFN W1, W2
  assert got == 3 * per_layer + 2 * (b * length) * d * v


@pytest.mark.parametrize('tied', [True, False])
def test_lm_step_flops_hand_count(tied):
  model = dataclasses.replace(HAND_MODEL, tie_output_embedding=tied)
  config = Config(task='language_model', model=model,
                  data=DataConfig(batch_size=3, max_length=9))
  forward = hand_lm_forward_flops(model, 3, 9)
  family = tasks.for_benchmark(config).benchmark()
  assert isinstance(family, lm_benchmark.LanguageModelBenchmark)
  train, evaluation = family.train_flops(), family.eval_flops()
  assert_finite(train, evaluation)
  assert train == 3 * forward == lm_benchmark.lm_train_flops(config)
  assert evaluation == forward == lm_benchmark.lm_eval_flops(config)


def lm_config(model: ModelConfig, batch: int, length: int) -> Config:
  return Config(task='language_model',
                model=dataclasses.replace(model, dropout_rate=0.0),
                data=DataConfig(batch_size=batch, max_length=length),
                train=TrainConfig(label_smoothing=0.0))


def xla_lm_forward_flops(config: Config) -> float:
  """XLA's FLOPs of the compiled forward pass on a random LM batch."""
  task = tasks.for_benchmark(config)
  params = jax.eval_shape(
      lambda: train_lib.init_state(task, jax.random.key(0)).params)
  batch = lm_benchmark.random_lm_batch(config, np.random.default_rng(0),
                                       config.data.batch_size)
  forward = jax.jit(lambda p, b: task.forward(p, b, rng=None))
  flops = peak_lib.xla_flops(forward.lower(params, batch).compile())
  assert flops is not None, 'this backend gives no cost analysis'
  return flops


# FLOPS_MODEL's widths as a language model (its encoder layers are never
# built), and one where every term of the count weighs at least 1/6 (per
# token: projections 8d^2 = 32k, attention 4Ld = 64k at L = 256, FFN 4df =
# 64k, output 2dV = 64k), so that a count dropping or doubling any of them,
# or halving attention for causality, falls outside the tolerance.
LM_FLOPS_MODEL = FLOPS_MODEL
BALANCED_LM_MODEL = ModelConfig(vocab_size=512, d_model=64, d_ff=256,
                                num_heads=4, num_encoder_layers=2,
                                num_decoder_layers=2, max_length=256)


@pytest.mark.parametrize('model,batch,length', [
    (LM_FLOPS_MODEL, 4, 32), (LM_FLOPS_MODEL, 4, 64),
    (BALANCED_LM_MODEL, 2, 256)])
def test_lm_forward_flops_match_xla_cost_analysis(model, batch, length):
  config = lm_config(model, batch, length)
  want = xla_lm_forward_flops(config)
  got = lm_benchmark.lm_forward_flops(config.model, batch, length)
  assert_finite(got, want)
  assert got == hand_lm_forward_flops(config.model, batch, length)
  # Matmuls only: a little below XLA's count (softmax, masks, LayerNorm).
  assert got == pytest.approx(want, rel=0.10), (got, want, got / want)
  assert got < want


@pytest.mark.parametrize('wrong', [
    {'output': 0.0},  # forgets the output projection
    {'attention': 2.0},  # scores and values counted twice
    {'attention': 0.5},  # only the causal half of the L x L pairs
    {'attention': 0.0},  # no scores and values
    {'projections': 0.0},  # no Q, K, V, O
    {'ffn': 0.0},  # no feed-forward
    {'encoder_layers': 1.0},  # counts layers the model never builds
])
def test_wrong_lm_formulas_fail_the_xla_check(wrong):
  config = lm_config(BALANCED_LM_MODEL, 2, 256)
  want = xla_lm_forward_flops(config)
  assert hand_lm_forward_flops(config.model, 2, 256) == pytest.approx(
      want, rel=0.10)
  bad = hand_lm_forward_flops(config.model, 2, 256, **wrong)
  assert bad != pytest.approx(want, rel=0.10), (wrong, bad / want)


def test_lm_train_flops_match_xla_cost_analysis():
  """The analytic count against XLA's of the compiled train step itself
  (`compile_train_step`: forward, backward and the AdamW update)."""
  config = lm_config(LM_FLOPS_MODEL, 4, 64)
  want = xla_train_step_flops(
      tasks.for_benchmark(config),
      lm_benchmark.random_lm_batch(config, np.random.default_rng(0), 4))
  got = lm_benchmark.lm_train_flops(config)
  assert_finite(got, want)
  assert got == 3 * hand_lm_forward_flops(config.model, 4, 64)
  assert got == pytest.approx(want, rel=0.10), (got, want, got / want)
  assert got < want


def test_random_lm_batch_has_full_rows():
  config = Config(task='language_model', model=ModelConfig(vocab_size=50),
                  data=DataConfig(max_length=16))
  batch = lm_benchmark.random_lm_batch(config, np.random.default_rng(0), 3)
  assert set(batch) == {'targets', 'targets_positions',
                        'targets_segmentation'}
  for value in batch.values():
    assert value.shape == (3, 16) and value.dtype == np.int32
  assert (batch['targets'][:, :-1] > 3).all()
  assert (batch['targets'][:, -1] == 3).all()
  assert (batch['targets_segmentation'] == 1).all()
  np.testing.assert_array_equal(batch['targets_positions'][1], np.arange(16))


def test_benchmark_task_needs_no_workdir():
  config = importlib.import_module('experiments.tiny_classify').get_config()
  task = tasks.for_benchmark(config)
  assert isinstance(task, labelled.Classification)
  assert len(task.labels) == labelled.BENCHMARK_CLASSES
  assert task.class_weights is None
  assert isinstance(task.benchmark(), labelled_benchmark.LabelledHooks)
  regression = tasks.for_benchmark(dataclasses.replace(
      config, task='regression', train=TrainConfig(loss='huber')))
  assert isinstance(regression, labelled.Regression)
  translation = tasks.for_benchmark(Config())
  assert isinstance(translation.benchmark(),
                    translation_benchmark.TranslationHooks)
  with pytest.raises(ConfigError, match='does not fit'):
    tasks.for_benchmark(dataclasses.replace(
        config, train=TrainConfig(loss='mse')))


@pytest.mark.parametrize('task_name,pooling', [('classification', 'mean'),
                                               ('regression', 'first')])
def test_random_labelled_batch_has_full_rows(task_name, pooling):
  config = Config(task=task_name,
                  model=ModelConfig(vocab_size=50, pooling=pooling),
                  data=DataConfig(max_length=16),
                  train=TrainConfig(loss='cross_entropy' if task_name ==
                                    'classification' else 'mse'))
  task = tasks.for_benchmark(config)
  batch = labelled_benchmark.random_labelled_batch(task,
                                                   np.random.default_rng(0), 5)
  assert set(batch) == {'inputs', 'labels'}
  inputs = batch['inputs']
  assert inputs.shape == (5, 16) and inputs.dtype == np.int32
  assert (inputs[:, -1] == 3).all() and (inputs[:, 1:-1] > 3).all()
  assert (inputs[:, 0] == 2).all() if pooling == 'first' else (
      inputs[:, 0] > 3).all()
  if task_name == 'classification':
    labels = batch['labels']
    assert labels.shape == (5,) and labels.dtype == np.int32
    assert ((labels >= 0) & (labels < len(task.labels))).all()
  else:
    assert batch['labels'].shape == (5, 1)
    assert batch['labels'].dtype == np.float32
    assert np.isfinite(batch['labels']).all()


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
  peak, source = peak_lib.published_peak(device_kind, dtype)
  assert_finite(peak)
  assert peak == want, source


def test_published_peak_sources():
  assert 'H100 SXM' in peak_lib.published_peak('NVIDIA H100 80GB HBM3',
                                                'bfloat16')[1]
  peak, note = peak_lib.published_peak('Some Future Chip', 'bfloat16')
  assert peak is None and 'MFU not computed' in note


def test_peak_and_mfu():
  gpus = peak_lib.accelerator_peak('NVIDIA H100 80GB HBM3', 'bfloat16', 8,
                                    5e14)
  assert_finite(gpus['peak_flops_per_s'], gpus['matmul_flops_per_s'])
  assert gpus['peak_flops_per_s'] == 8 * 989.4e12
  assert gpus['peak_source'].endswith(' x 8 devices')
  unknown = peak_lib.accelerator_peak('Some Future Chip', 'bfloat16', 1, 1e12)
  assert unknown['peak_flops_per_s'] is None
  assert peak_lib.mfu(1e12, 2.0, unknown['peak_flops_per_s']) is None
  # On CPU the slower of the two matmul measurements is not the peak.
  cpu = peak_lib.cpu_peak('float32', 1e11, 3e11, processes=2)
  assert_finite(cpu['peak_flops_per_s'])
  assert cpu['peak_flops_per_s'] == 6e11
  assert cpu['matmul_flops_per_s_before_after'] == [1e11, 3e11]
  mfu = peak_lib.mfu(1.2e11, 0.5, cpu['peak_flops_per_s'])
  assert_finite(mfu)
  assert mfu == pytest.approx(0.4)


def test_random_batch_has_the_pipeline_shape_and_no_padding():
  config = Config(model=ModelConfig(vocab_size=50),
                  data=DataConfig(max_length=16))
  batch = translation_benchmark.random_batch(config, np.random.default_rng(0),
                                            3)
  assert set(batch) == {'inputs', 'targets', 'inputs_segmentation',
                        'targets_segmentation', 'inputs_positions',
                        'targets_positions'}
  for key, value in batch.items():
    assert value.shape == (3, 16) and value.dtype == np.int32, key
  for key in ('inputs', 'targets'):
    assert (batch[key][:, :-1] > 3).all() and (batch[key][:, -1] == 3).all()


def _check_result(result, workdir, required=REQUIRED):
  """The written benchmark.json, checked: `run`'s result, `required` keys
  finite and positive."""
  with open(workdir / benchmark.RESULT_FILENAME, encoding='utf-8') as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(result))
  for key in required:
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
  assert written['train_flops'] == translation_benchmark.train_flops(config)


@pytest.mark.slow
@pytest.mark.parametrize('task_name,loss', [('classification',
                                             'cross_entropy'),
                                            ('regression', 'mse')])
def test_run_on_tiny_labelled(tmp_path, task_name, loss):
  config = importlib.import_module('experiments.tiny_classify').get_config()
  config = dataclasses.replace(config, task=task_name,
                               train=dataclasses.replace(config.train,
                                                         loss=loss))
  result = benchmark.run(config, str(tmp_path), repeats=2, verbose=False)
  written = _check_result(result, tmp_path, LABELLED_POSITIVE)
  assert_finite(written['final_loss'])
  for key in TRANSLATION_ONLY:
    assert key not in written, key
  task = tasks.for_benchmark(config)
  assert written['task'] == task_name
  assert written['num_outputs'] == task.num_outputs
  assert written['data'] == 'random' and 'full rows' in written['data_note']
  assert written['train_flops'] == labelled_benchmark.train_flops(task)
  assert written['train_flops'] == pytest.approx(written['xla_train_flops'],
                                                 rel=0.25)
  rows, length = config.data.batch_size, config.data.max_length
  assert written['train_examples_per_step'] == rows
  assert written['train_tokens_per_step'] == rows * length  # no padding
  assert written['train_examples_per_s'] == pytest.approx(
      rows / written['train_step_back_to_back_s'])
  table = benchmark.format_table(written, task.benchmark())
  assert 'train examples/s' in table and 'greedy' not in table
  # A task passed in is measured as given.
  passed = labelled.Classification(config, labels=('a', 'b'))
  if task_name == 'classification':
    again = benchmark.run(config, str(tmp_path), task=passed, repeats=1,
                          verbose=False)
    assert again['num_outputs'] == 2
    assert_finite(again['train_examples_per_s'])
    assert again['train_examples_per_s'] > 0


# Every number a language-model report has: each finite and positive.
LM_POSITIVE = (
    'decode_repeats', 'num_params', 'compile_s', 'first_step_s',
    'train_step_s', 'train_step_back_to_back_s', 'train_steps_per_s',
    'train_tokens_per_s', 'train_tokens_per_step', 'train_flops',
    'xla_train_flops', 'train_flops_per_s', 'peak_flops_per_s', 'train_mfu',
    'eval_compile_s', 'eval_step_s', 'eval_tokens_per_s', 'eval_mfu',
    'generate_rows', 'generate_context', 'generate_prompt_length',
    'generate_max_new_tokens', 'generate_greedy_first_call_s',
    'generate_greedy_s', 'generate_greedy_tokens_per_s',
    'generate_greedy_step_s', 'generate_greedy_mean_output_length',
    'generate_sample_first_call_s', 'generate_sample_s',
    'generate_sample_tokens_per_s', 'generate_sample_step_s',
    'generate_uncached_first_call_s', 'generate_uncached_token_s',
    'generate_uncached_tokens_per_s', 'generate_cached_speedup',
    'peak_memory_bytes', 'benchmark_wall_s')


@pytest.mark.slow
def test_run_on_tiny_lm(tmp_path):
  config = importlib.import_module('experiments.tiny_lm').get_config()
  result = benchmark.run(config, str(tmp_path), repeats=2, decode_repeats=1,
                         verbose=False)
  written = _check_result(result, tmp_path, LM_POSITIVE)
  assert_finite(written['final_loss'])
  for key in TRANSLATION_ONLY:
    if key != 'decode_repeats':
      assert key not in written, key
  assert written['task'] == 'language_model'
  assert written['data'].startswith('real')  # the toy corpus is always there
  assert written['train_flops'] == lm_benchmark.lm_train_flops(config)
  assert written['train_flops'] == pytest.approx(written['xla_train_flops'],
                                                 rel=0.25)
  assert written['train_tokens_per_step'] <= (config.data.batch_size
                                              * config.data.max_length)
  context = config.data.max_length
  assert written['generate_context'] == context
  assert written['generate_rows'] == config.data.eval_batch_size
  new = written['generate_max_new_tokens']
  assert written['generate_prompt_length'] + new == context
  assert 'test document' in written['generate_prompts']
  # Fresh weights with EOS suppressed: greedy runs every row to the limit.
  assert written['generate_greedy_mean_output_length'] == new
  assert written['generate_greedy_step_s'] == pytest.approx(
      written['generate_greedy_s'] / context)
  assert written['generate_sample_settings'] == {'temperature': 1.0,
                                                 'top_p': 0.9}
  assert written['generate_cached_speedup'] == pytest.approx(
      written['generate_uncached_token_s']
      / written['generate_greedy_step_s'])
  table = benchmark.format_table(
      written, tasks.for_benchmark(config).benchmark())
  assert 'cache speedup' in table and 'beam 4' not in table


def test_random_lm_batches_when_the_data_is_missing(tmp_path):
  config = importlib.import_module('experiments.tiny_lm').get_config()
  config = dataclasses.replace(
      config, data=dataclasses.replace(config.data, source='text'))
  task = tasks.for_benchmark(config)
  tokenizer, batches, data, note = measure.train_batches(
      task, str(tmp_path), 2, np.random.default_rng(0),
      lm_benchmark.random_lm_batch)
  assert tokenizer is None and data == 'random' and 'text_dir' in note
  assert set(batches[0]) == {'targets', 'targets_positions',
                             'targets_segmentation'}
  assert batches[0]['targets'].shape == (config.data.batch_size,
                                         config.data.max_length)


def test_random_batches_when_the_data_is_missing(tmp_path):
  config = importlib.import_module('experiments.tiny').get_config()
  # 'text' without text_dir: a DataError, so random batches of the shape.
  config = dataclasses.replace(
      config, data=dataclasses.replace(config.data, source='text'))
  rng = np.random.default_rng(0)
  tokenizer, batches, data, note = measure.train_batches(
      tasks.for_config(config), str(tmp_path), 3, rng,
      translation_benchmark.random_batch)
  assert tokenizer is None and data == 'random' and 'text_dir' in note
  assert len(batches) == 3
  assert batches[0]['targets'].shape == (config.data.batch_size,
                                         config.data.max_length)
  sources, sentences, what = translation_benchmark.decode_inputs(config,
                                                                  None, rng)
  assert sources.shape == (config.data.eval_batch_size,
                           config.data.max_length)
  assert sentences == config.data.eval_batch_size and 'random' in what


@pytest.mark.parametrize('tied', [True, False])
def test_untrained_decoding_runs_every_sentence_to_its_limit(tied):
  from transformer.tasks.translation import decode as decode_lib  # pylint: disable=g-import-not-at-top
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
  params = measure.never_eos(params, model)
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


def test_step_time_quartiles_are_numpy_percentiles_within_the_range():
  # A slow outlier among few steps once gave a negative first quartile
  # (statistics' default 'exclusive' method extrapolates).
  for times in ([0.001, 0.5], [0.2, 0.21, 0.19, 3.0], [0.3]):
    got = measure.summary(times)
    assert got['p25'] == pytest.approx(np.percentile(times, 25))
    assert got['p75'] == pytest.approx(np.percentile(times, 75))
    assert got['median'] == pytest.approx(np.median(times))
    assert min(times) <= got['p25'] <= got['p75'] <= max(times)
