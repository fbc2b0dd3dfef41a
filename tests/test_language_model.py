"""The decoder-only language model and cached generation.

References: the full teacher-forced forward pass (for the cache), a naive
greedy loop that re-runs the whole prefix at every step, each packed
document run alone, and a NumPy cross-entropy.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer.config import (BOS_ID, EOS_ID, PAD_ID, Config,
                                GenerateConfig, ModelConfig, TrainConfig)
from transformer.model import LanguageModel, shift_right
from transformer.tasks import language_model
from transformer.tasks.language_model import generate

MODEL = ModelConfig(vocab_size=37, d_model=32, d_ff=64, num_heads=4,
                    num_encoder_layers=0, num_decoder_layers=2,
                    dropout_rate=0.0, max_length=64, norm_position='pre')


@jax.jit
def forward(params, targets, positions=None, segments=None):
  return LanguageModel(MODEL).apply({'params': params}, targets, positions,
                                    segments)


def assert_finite(*arrays):
  for a in arrays:
    assert np.all(np.isfinite(np.asarray(a, np.float64)))


@pytest.fixture(scope='module')
def params():
  return jax.jit(LanguageModel(MODEL).init)(
      jax.random.key(0), jnp.ones((1, 8), jnp.int32))['params']


def random_prompts(lengths, width, seed=1):
  rng = np.random.default_rng(seed)
  rows = np.full((len(lengths), width), PAD_ID, np.int32)
  for b, n in enumerate(lengths):
    rows[b, :n] = rng.integers(4, MODEL.vocab_size, n)
  return rows, np.asarray(lengths, np.int32)


def test_no_encoder_decoder_attention(params):
  layer = params['decoder']['decoder_0']
  assert 'cross_attention' not in layer and 'self_attention' in layer
  assert set(params) == {'decoder'}


def test_cached_steps_equal_the_full_forward_pass(params):
  model = LanguageModel(MODEL)
  targets, _ = random_prompts([10, 10, 10], 10)
  full = forward(params, jnp.asarray(targets))
  inputs = shift_right(jnp.asarray(targets))
  cache = generate.init_cache(model, params, 3, 10)
  step = jax.jit(functools.partial(generate.cached_step, model))
  steps = []
  for t in range(10):
    logits, cache = step(params, cache, inputs[:, t], jnp.int32(t))
    steps.append(logits)
  steps = np.stack(steps, axis=1)
  assert_finite(full, steps)
  np.testing.assert_allclose(steps, full, rtol=1e-4, atol=1e-5)


def test_packed_documents_do_not_see_each_other(params):
  a, b = [5, 9, 11, EOS_ID], [7, 7, 20, 30, 8, EOS_ID]
  row = np.array([a + b + [PAD_ID] * 2], np.int32)
  positions = np.array([list(range(4)) + list(range(6)) + [0, 0]], np.int32)
  segments = np.array([[1] * 4 + [2] * 6 + [0, 0]], np.int32)
  packed = forward(params, row, positions, segments)
  # Alone, each padded to the row's width (causal: padding after changes
  # nothing before it).
  alone_a = forward(params, np.array([a + [PAD_ID] * 8], np.int32))[:, :4]
  alone_b = forward(params, np.array([b + [PAD_ID] * 6], np.int32))[:, :6]
  assert_finite(packed, alone_a, alone_b)
  np.testing.assert_allclose(packed[0, :4], alone_a[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(packed[0, 4:10], alone_b[0], rtol=1e-4,
                             atol=1e-5)


def naive_greedy(params, prompt, new):
  """Re-runs the whole prefix for every new token (no cache), in rows of
  one fixed width (one compilation; causal, so the padding after the prefix
  changes nothing)."""
  sequence = list(prompt)
  for _ in range(new):
    row = sequence + [PAD_ID] * (WIDTH - len(sequence))
    logits = np.array(forward(params, np.array([row], np.int32)))
    logits[0, len(sequence), [PAD_ID, BOS_ID]] = -np.inf
    token = int(np.argmax(logits[0, len(sequence)]))
    sequence.append(token)
    if token == EOS_ID:
      break
  return sequence[len(prompt):]


WIDTH = 24


def test_greedy_generation_equals_rerunning_the_prefix(params):
  rows, lengths = random_prompts([7, 3, 0, 5], 8)
  settings = GenerateConfig(temperature=0.0, max_new_tokens=9)
  keys = jax.random.split(jax.random.key(0), 4)
  out = np.asarray(generate.generate(params, MODEL, rows, lengths, keys,
                                     settings))
  for b, n in enumerate(lengths):
    want = naive_greedy(params, list(rows[b, :n]), 9)
    got = [int(t) for t in out[b, :len(want)]]
    assert got == want
    assert all(t == PAD_ID for t in out[b, len(want):])


def test_top_k_1_is_greedy_and_rows_do_not_depend_on_the_batch(params):
  rows, lengths = random_prompts([4, 6, 2], 8, seed=3)
  keys = jax.random.split(jax.random.key(5), 3)
  greedy = generate.generate(params, MODEL, rows, lengths, keys,
                             GenerateConfig(temperature=0.0,
                                            max_new_tokens=6))
  top1 = generate.generate(params, MODEL, rows, lengths, keys,
                           GenerateConfig(temperature=1.0, top_k=1,
                                          max_new_tokens=6))
  np.testing.assert_array_equal(greedy, top1)
  sampled = generate.generate(params, MODEL, rows, lengths, keys,
                              GenerateConfig(temperature=1.5,
                                             max_new_tokens=6))
  alone = generate.generate(params, MODEL, rows[1:2], lengths[1:2], keys[1:2],
                            GenerateConfig(temperature=1.5, max_new_tokens=6))
  np.testing.assert_array_equal(sampled[1:2], alone)
  assert not np.array_equal(sampled, greedy)  # temperature 1.5 samples


def test_sampled_rows_end_at_eos_then_pad(params):
  rows, lengths = random_prompts([3] * 32, 4, seed=7)
  keys = jax.random.split(jax.random.key(1), 32)
  out = np.asarray(generate.generate(
      params, MODEL, rows, lengths, keys,
      GenerateConfig(temperature=3.0, max_new_tokens=60)))
  ended = 0
  for row in out:
    assert BOS_ID not in row
    if EOS_ID in row:
      ended += 1
      first = list(row).index(EOS_ID)
      assert PAD_ID not in row[:first] and np.all(row[first + 1:] == PAD_ID)
    else:
      assert PAD_ID not in row  # ran to max_new_tokens
  assert ended >= 10  # 1 in ~35 tokens is EOS at this temperature
  assert generate.continuation_ids([5, 6, EOS_ID, 0, 0]) == [5, 6]


def test_loss_sums_are_next_token_cross_entropy(params):
  config = Config(task='language_model', model=MODEL,
                  train=TrainConfig(label_smoothing=0.0))
  task = language_model.LanguageModelTask(config)
  targets = np.array([[5, 9, 11, EOS_ID, PAD_ID, PAD_ID],
                      [7, 8, 20, 30, 8, EOS_ID]], np.int32)
  loss, (weight, metrics) = jax.jit(task.loss_sums)(
      params, {'targets': targets}, None)
  logits = np.asarray(forward(params, targets), np.float64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  real = targets != PAD_ID
  want = -sum(log_p[b, t, targets[b, t]] for b, t in zip(*np.nonzero(real)))
  assert_finite(loss, weight)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert weight == real.sum() and metrics['nll'][1] == real.sum()


def test_prepare_needs_decoder_layers():
  config = Config(task='language_model', model=dataclasses.replace(
      MODEL, num_decoder_layers=0))
  with pytest.raises(ValueError, match='num_decoder_layers'):
    language_model.prepare(config, '', create=False)


def test_gpt2_small_preset_has_gpt2_small_parameter_count():
  """124,439,808 parameters with GPT-2's vocabulary of 50,257 (the count of
  the released checkpoint: tied embedding, 1024 learned positions, 12
  pre-LN layers, a final LayerNorm)."""
  from transformer.config import PRESETS  # pylint: disable=import-outside-toplevel
  config = dataclasses.replace(PRESETS['gpt2_small'], vocab_size=50_257)
  shapes = jax.eval_shape(LanguageModel(config).init, jax.random.key(0),
                          jnp.ones((1, 8), jnp.int32))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert count == 124_439_808


def lm_step(config: Config):
  """(task, jitted generic train step) for a language-model config."""
  from transformer import train as train_lib  # pylint: disable=import-outside-toplevel
  task = language_model.LanguageModelTask(config)
  return task, jax.jit(functools.partial(train_lib.train_step, task=task))


def one_step(config: Config, batch):
  from transformer import train as train_lib  # pylint: disable=import-outside-toplevel
  task, step = lm_step(config)
  return step(train_lib.init_state(task, jax.random.key(0)), batch,
              jax.random.key(1))


def test_gradient_accumulation_equals_one_big_batch():
  """4 micro-batches of packed rows give the update of the whole batch:
  loss sums accumulate and are divided once by all real tokens."""
  from scripts.sharded_steps import synthetic_lm_batch  # pylint: disable=import-outside-toplevel
  batch = jax.tree.map(jnp.asarray, synthetic_lm_batch(3, batch=8,
                                                       vocab=MODEL.vocab_size))
  # adam_eps=1e-6: the key bias's gradient is 0 in exact arithmetic (softmax
  # ignores a constant added to a query's logits), ~1e-9 of rounding noise
  # in float32; with eps 1e-9 Adam turns that noise into an update of about
  # the learning rate (7e-7 here), of either sign in either run: up to
  # 8.6e-7 apart, against atol 1e-6. With 1e-6: 1.5e-8 apart, all leaves.
  plain = Config(task='language_model', model=MODEL,
                 train=TrainConfig(label_smoothing=0.0, adam_eps=1e-6))
  four = dataclasses.replace(plain, train=dataclasses.replace(
      plain.train, grad_accum_steps=4))
  (one, m_one), (acc, m_acc) = one_step(plain, batch), one_step(four, batch)
  assert_finite(m_one['loss'], m_acc['loss'], m_acc['grad_norm'],
                *jax.tree.leaves(acc.params))
  np.testing.assert_allclose(m_acc['loss'], m_one['loss'], rtol=1e-5)
  # The accumulated gradient: measured 1.2e-7 apart; leaving out one
  # micro-batch's tokens moves its norm by 19%.
  np.testing.assert_allclose(m_acc['grad_norm'], m_one['grad_norm'],
                             rtol=1e-5)
  assert m_acc['tokens'] == m_one['tokens'] == np.sum(batch['targets'] != 0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               acc.params, one.params)


def test_bfloat16_language_model_keeps_float32_params_and_close_loss(params):
  from scripts.sharded_steps import synthetic_lm_batch  # pylint: disable=import-outside-toplevel
  batch = synthetic_lm_batch(5, batch=4, vocab=MODEL.vocab_size)
  low = dataclasses.replace(MODEL, dtype='bfloat16')
  logits = jax.jit(lambda p, t: LanguageModel(low).apply({'params': p}, t))(
      params, batch['targets'])
  assert logits.dtype == jnp.float32
  reference = forward(params, batch['targets'])
  assert_finite(logits, reference)
  np.testing.assert_allclose(logits, reference, atol=0.1)
  config = Config(task='language_model', model=low,
                  train=TrainConfig(label_smoothing=0.0))
  state, metrics = one_step(config, jax.tree.map(jnp.asarray, batch))
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {
      jnp.dtype('float32')}
  _, want = one_step(dataclasses.replace(config, model=MODEL),
                     jax.tree.map(jnp.asarray, batch))
  assert_finite(metrics['loss'], want['loss'])
  np.testing.assert_allclose(metrics['loss'], want['loss'], rtol=0.02)
