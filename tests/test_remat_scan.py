"""model.remat and model.scan_layers compute what the plain model computes.

Rematerialisation must leave the loss and its gradients as they are. The
scanned stacks, given the unrolled model's parameters stacked on a leading
axis (`stack_layers`), must give the same logits and gradients, the same
cached decoding (one step, beam search, language-model generation) and the
same recorded attention weights. Those comparisons are deterministic:
under scan each layer's dropout key is split off differently, so masks
differ between the forms; dropout under scan is checked on its own. Also
here: the error for a checkpoint of the other layout, and what each remat
mode keeps for the backward pass (JAX's residuals, XLA's memory analysis).
Tiny models; compiled functions are shared between tests (`lru_cache`).
"""

import dataclasses
import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from transformer import checkpoint, losses, memory
from transformer import config as config_lib
from transformer import train as train_lib
from transformer import workdir as workdir_lib
from transformer.config import (PAD_ID, Config, DataConfig, GenerateConfig,
                                ModelConfig, TrainConfig)
from transformer.model import LanguageModel, Transformer
from transformer.tasks import language_model as lm_tasks
from transformer.tasks.language_model import generate
from transformer.tasks import translation
from transformer.tasks.translation import decode

from conftest import TINY_MODEL

TASKS = ('translation', 'language_model')
# float32 with 'highest' matmul precision (conftest): the forms differ only
# by XLA's fusion and summation order.
TOLERANCE = {'rtol': 2e-5, 'atol': 2e-6}
UNROLLED_LAYER = re.compile(r'(encoder|decoder)_(\d+)')


def model_config(task_name: str, **changes) -> ModelConfig:
  """TINY_MODEL (2 + 2 post-LN layers); the language model's: 2 pre-LN
  decoder layers, no encoder."""
  model = TINY_MODEL if task_name == 'translation' else dataclasses.replace(
      TINY_MODEL, num_encoder_layers=0, norm_position='pre')
  return dataclasses.replace(model, **changes)


@functools.lru_cache(maxsize=None)
def task_for(task_name: str, remat: str = 'none', scan: bool = False):
  config = Config(task=task_name,
                  model=model_config(task_name, remat=remat,
                                     scan_layers=scan),
                  train=TrainConfig(label_smoothing=0.1))
  if task_name == 'translation':
    return translation.Translation(config)
  return lm_tasks.LanguageModelTask(config)


@functools.lru_cache(maxsize=None)
def unrolled_params(task_name: str):
  return jax.jit(task_for(task_name).init_params)(jax.random.key(0))


def batch_for(task_name: str) -> dict[str, jax.Array]:
  """3 rows, some padding; translation adds 9 source tokens per row."""
  rng = np.random.default_rng(0)
  vocab = TINY_MODEL.vocab_size
  targets = rng.integers(4, vocab, (3, 10)).astype(np.int32)
  targets[0, 7:] = PAD_ID
  batch = {'targets': targets}
  if task_name == 'translation':
    inputs = rng.integers(4, vocab, (3, 9)).astype(np.int32)
    inputs[1, 6:] = PAD_ID
    batch['inputs'] = inputs
  return {k: jnp.asarray(v) for k, v in batch.items()}


def stack_layers(params):
  """Unrolled parameters (or gradients, caches) in the scanned layout:
  'encoder_0', 'encoder_1', ... become one 'encoder_layers' whose every
  leaf is the layers' leaves stacked on a new leading axis; the rest stays.
  A language model's tree sits under 'decoder'."""
  if set(params) == {'decoder'}:
    return {'decoder': stack_layers(params['decoder'])}
  stacks: dict[str, list[tuple[int, object]]] = {}
  rest = {}
  for name, subtree in params.items():
    match = UNROLLED_LAYER.fullmatch(name)
    if match:
      stacks.setdefault(match[1], []).append((int(match[2]), subtree))
    else:
      rest[name] = subtree
  for kind, layers in stacks.items():
    ordered = [tree for _, tree in sorted(layers, key=lambda x: x[0])]
    rest[f'{kind}_layers'] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                          *ordered)
  return rest


def assert_finite(tree):
  for leaf in jax.tree.leaves(tree):
    assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


def assert_trees_close(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOLERANCE)


# The forms are compared as compiled alike; LLVM's optimisations, half of a
# compile on XLA:CPU, change no result that matters here.
FAST_COMPILE = {'xla_backend_optimization_level': 0}


@functools.lru_cache(maxsize=None)
def loss_and_grads(task_name: str, remat: str = 'none', scan: bool = False):
  """Jitted (params, batch, rng or None) -> ((loss sum, logits), gradient
  of the loss sum); dropout iff rng."""
  task = task_for(task_name, remat, scan)

  def loss(params, batch, rng):
    """The tasks' training loss (`loss_sums`'), from logits computed once."""
    logits = task.forward(params, batch, rng=rng)
    weights = (batch['targets'] != PAD_ID).astype(jnp.float32)
    loss_sum, _ = losses.next_token_loss(
        logits, batch['targets'], weights,
        label_smoothing=task.config.train.label_smoothing)
    return loss_sum, logits
  return jax.jit(jax.value_and_grad(loss, has_aux=True),
                 compiler_options=FAST_COMPILE)


def plain(task_name: str):
  """((loss, logits), grads) of the unrolled model without remat or
  dropout."""
  return loss_and_grads(task_name)(unrolled_params(task_name),
                                   batch_for(task_name), None)


def assert_same_results(got, want, *, stacked: bool):
  """((loss, logits), grads) equal; `stacked`: `got` is the scanned form's."""
  (loss, logits), grads = got
  (want_loss, want_logits), want_grads = want
  assert_finite((loss, logits, grads))
  np.testing.assert_allclose(loss, want_loss, **TOLERANCE)
  np.testing.assert_allclose(logits, want_logits, **TOLERANCE)
  assert_trees_close(grads, stack_layers(want_grads) if stacked else
                     want_grads)


# --- model.remat -------------------------------------------------------------


def test_dots_remat_gives_the_same_loss_and_gradients():
  """Translation. The language model's remat checks run scanned
  (`test_scanned_logits_and_gradients_equal_unrolled`, with 'full', and
  `test_dropout_works_under_scan`)."""
  got = loss_and_grads('translation', 'dots')(
      unrolled_params('translation'), batch_for('translation'), None)
  # The same parameter names: a run may switch model.remat on resume.
  assert_same_results(got, plain('translation'), stacked=False)


# --- model.scan_layers: the same model, stacked ------------------------------


@pytest.mark.parametrize('task_name', TASKS)
def test_scanned_init_has_the_stacked_layout(task_name):
  scanned = jax.eval_shape(task_for(task_name, scan=True).init_params,
                           jax.random.key(0))
  stacked = stack_layers(unrolled_params(task_name))
  assert jax.tree.structure(scanned) == jax.tree.structure(stacked)
  for got, want in zip(jax.tree.leaves(scanned), jax.tree.leaves(stacked)):
    assert got.shape == want.shape and got.dtype == want.dtype


@pytest.mark.parametrize('task_name,remat', [('translation', 'none'),
                                             ('language_model', 'none'),
                                             ('language_model', 'full')])
def test_scanned_logits_and_gradients_equal_unrolled(task_name, remat):
  """The language model's 'full' is its remat check: in the scanned form."""
  stacked = stack_layers(unrolled_params(task_name))
  got = loss_and_grads(task_name, remat, True)(stacked, batch_for(task_name),
                                               None)
  assert_same_results(got, plain(task_name), stacked=True)


def cache_shapes(scan: bool):
  """The decoding cache `decode._init_cache` allocates for 2 hypotheses per
  sentence of the translation batch, 16 positions: shapes only (traced)."""
  config = task_for('translation', scan=scan).config.model
  params = unrolled_params('translation')
  params = stack_layers(params) if scan else params
  inputs = batch_for('translation')['inputs']
  self_cache, encoder_cache, _ = jax.eval_shape(
      lambda: decode._init_cache(Transformer(config), params, inputs, 16,  # pylint: disable=protected-access
                                 group=2))
  return traverse_util.unflatten_dict({**self_cache, **encoder_cache})


def test_scanned_cache_holds_the_layers_stacked():
  """[layers, rows, heads, positions, head_dim]: the layers' caches
  stacked (self-attention: 3 sentences x 2 rows; cross-attention: one row
  per sentence), each layer's cache_index too."""
  want = jax.eval_shape(stack_layers, cache_shapes(False))
  got = cache_shapes(True)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.shape == b.shape and a.dtype == b.dtype
  layers = got['decoder_layers']
  assert layers['self_attention']['cached_key'].shape == (2, 6, 4, 16, 8)
  assert layers['cross_attention']['encoder_key'].shape == (2, 3, 4, 9, 8)
  assert layers['self_attention']['cache_index'].shape == (2,)


@functools.lru_cache(maxsize=None)
def cached_steps(scan: bool):
  """Jitted (params, tokens [B, 2]) -> [B, 2, vocab] logits of two cached
  steps of the language model (`generate`'s helpers), after allocating
  the cache."""
  model = LanguageModel(task_for('language_model', scan=scan).config.model)

  def run(params, tokens):
    cache = generate.init_cache(model, params, tokens.shape[0], 8)
    logits = []
    for t in range(tokens.shape[1]):
      step_logits, cache = generate.cached_step(model, params, cache,
                                                tokens[:, t], jnp.int32(t))
      logits.append(step_logits)
    return jnp.stack(logits, axis=1)
  return jax.jit(run)


def test_scanned_cached_steps_equal_unrolled():
  """The logits of cached decoding steps (tests/test_language_model.py
  checks the unrolled ones against the full forward pass)."""
  params = unrolled_params('language_model')
  tokens = jnp.asarray([[2, 5], [2, 9], [2, 11]], jnp.int32)  # BOS, a token
  want = cached_steps(False)(params, tokens)
  got = cached_steps(True)(stack_layers(params), tokens)
  assert_finite(got)
  np.testing.assert_allclose(got, want, **TOLERANCE)


def test_scanned_beam_search_equals_unrolled():
  """Cached decoding steps over the stacked cache, its rows reordered along
  axis 1 (growing it is `test_stacked_caches_grow_and_reorder_by_layer`'s):
  the same hypotheses and scores."""
  params = unrolled_params('translation')
  inputs = batch_for('translation')['inputs'][:, :6]
  settings = {'beam_size': 3, 'max_extra_length': 10}
  want_seqs, want_scores = decode.beam_search(
      params, task_for('translation').config.model, inputs, **settings)
  seqs, scores = decode.beam_search(
      stack_layers(params), task_for('translation', scan=True).config.model,
      inputs, **settings)
  np.testing.assert_array_equal(seqs, want_seqs)
  finite = np.isfinite(want_scores)
  assert finite[:, 0].all()
  np.testing.assert_array_equal(np.isfinite(scores), finite)
  np.testing.assert_allclose(np.asarray(scores)[finite],
                             np.asarray(want_scores)[finite], **TOLERANCE)


def test_stacked_caches_grow_and_reorder_by_layer(monkeypatch):
  """`_grow_cache` and `_reorder_cache` on [layers, rows, heads, positions,
  head_dim] buffers equal them on each layer's [rows, ...] buffer; the
  reordering on one device and (the batched gather) on several."""
  rng = np.random.default_rng(0)
  layers = [jnp.asarray(rng.normal(size=(6, 2, 4, 3)), jnp.float32)
            for _ in range(2)]
  index = jnp.zeros((2,), jnp.int32)
  grown = decode._grow_cache(  # pylint: disable=protected-access
      {('k',): jnp.stack(layers), ('cache_index',): index}, 4, 7)
  assert grown[('k',)].shape == (2, 6, 2, 7, 3)
  for layer, want in zip(grown[('k',)], layers):
    np.testing.assert_array_equal(
        layer, decode._grow_cache({('k',): want}, 4, 7)[('k',)])  # pylint: disable=protected-access
  np.testing.assert_array_equal(grown[('cache_index',)], index)
  parents = jnp.asarray([[0, 0, 1], [2, 1, 1]], jnp.int32)  # [B=2, k=3]
  needed = parents != jnp.arange(3)
  for devices in (1, 2):
    monkeypatch.setattr(decode.jax, 'device_count', lambda d=devices: d)
    want = [decode._reorder_cache({('k',): x}, parents, needed)[('k',)]  # pylint: disable=protected-access
            for x in layers]
    got = decode._reorder_cache(  # pylint: disable=protected-access
        {('k',): jnp.stack(layers), ('cache_index',): index}, parents, needed)
    np.testing.assert_array_equal(got[('k',)], jnp.stack(want))
    np.testing.assert_array_equal(got[('cache_index',)], index)


def test_scanned_language_model_generates_what_the_unrolled_one_does():
  params = unrolled_params('language_model')
  prompts = np.asarray([[5, 6, 7, 0], [8, 9, 0, 0]], np.int32)
  lengths = np.asarray([3, 2], np.int32)
  keys = jax.random.split(jax.random.key(0), 2)
  settings = GenerateConfig(temperature=0.0, max_new_tokens=8)
  want = generate.generate(params, task_for('language_model').config.model,
                           prompts, lengths, keys, settings)
  got = generate.generate(stack_layers(params),
                          task_for('language_model', scan=True).config.model,
                          prompts, lengths, keys, settings)
  np.testing.assert_array_equal(got, want)


def test_scanned_model_records_attention_as_the_unrolled_one_does():
  """sow_weights under scan: the pictures read the same per-layer names."""
  params = unrolled_params('translation')
  source, target = [5, 6, 7, 8, 3], [9, 10, 11, 3]
  want = translation.pictures.capture_attention(
      params, task_for('translation').config.model, source, target)
  got = translation.pictures.capture_attention(
      stack_layers(params), task_for('translation', scan=True).config.model,
      source, target)
  assert got.keys() == want.keys()
  for kind in want:
    assert len(got[kind]) == len(want[kind]) == 2
    for a, b in zip(got[kind], want[kind]):
      assert_finite(a)
      np.testing.assert_allclose(a, b, **TOLERANCE)


def test_dropout_works_under_scan():
  """The language model with dropout, scanned: each key draws its own masks
  (the loss differs from the deterministic one and between keys, not
  between calls with one key), the loss and gradients are finite, and
  remat recomputes each layer with the forward pass's keys: the same
  loss and gradients."""
  stacked = stack_layers(unrolled_params('language_model'))
  batch = batch_for('language_model')
  run = loss_and_grads('language_model', scan=True)
  (deterministic, _), _ = run(stacked, batch, None)
  first = run(stacked, batch, jax.random.key(1))
  (again, _), _ = run(stacked, batch, jax.random.key(1))
  (other, _), _ = run(stacked, batch, jax.random.key(2))
  (loss, logits), grads = first
  assert_finite((loss, logits, grads))
  assert float(loss) == float(again) != float(other)
  assert float(loss) != pytest.approx(float(deterministic))
  rematted = loss_and_grads('language_model', 'full', True)(
      stacked, batch, jax.random.key(1))
  assert_same_results(rematted, first, stacked=False)


# --- Checkpoints of the other layout -----------------------------------------


def test_checkpoint_of_the_other_layout_names_the_setting(tmp_path):
  scanned_task = task_for('language_model', scan=True)
  shapes = jax.eval_shape(functools.partial(train_lib.init_state,
                                            scanned_task), jax.random.key(0))
  state = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
  checkpointer = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  checkpointer.save(state, None, step=1)
  checkpointer.wait()
  unrolled = jax.eval_shape(
      lambda: train_lib.init_state(task_for('language_model'),
                                   jax.random.key(0)))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'written with model.scan_layers=true .*set '
                     r'--set=model.scan_layers=true'):
    checkpointer.restore(unrolled)
  checkpointer.close()


def test_scan_layers_hint_reads_the_layout_from_array_names():
  unrolled = ['params.decoder.decoder_0.ffn.wi.kernel', 'step']
  scanned = ['params.encoder_layers.ffn.wi.kernel', 'params.embedding']
  assert checkpoint.scan_layers_of(unrolled) is False
  assert checkpoint.scan_layers_of(scanned) is True
  assert checkpoint.scan_layers_of(['params.embedding']) is None
  assert 'model.scan_layers=false' in checkpoint.scan_layers_hint(unrolled,
                                                                  scanned)
  assert checkpoint.scan_layers_hint(scanned, scanned) == ''


def test_resuming_with_the_other_scan_layers_is_refused_in_one_paragraph(
    tmp_path):
  workdir = str(tmp_path)
  saved = task_for('translation', scan=True).config
  workdir_lib.check_config(saved, workdir)  # a run's config.json
  os.makedirs(os.path.join(workdir, 'checkpoints', '100'))  # and its state
  # model.remat may change on resume; model.scan_layers may not.
  workdir_lib.check_config(task_for('translation', 'full', True).config,
                           workdir, save=False)
  with pytest.raises(workdir_lib.RunError) as error:
    workdir_lib.check_config(task_for('translation').config, workdir)
  message = str(error.value)
  assert 'written with model.scan_layers=true; set --set=model.scan_layers=' \
         'true' in message
  assert '\n' not in message
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['scan_layers'] is True  # unchanged


def test_config_fields():
  assert ModelConfig().remat == 'none' and ModelConfig().scan_layers is False
  with pytest.raises(ValueError, match='model.remat'):
    ModelConfig(remat='some')
  config = config_lib.override(Config(), 'model.scan_layers=true')
  config = config_lib.override(config, 'model.remat=dots')
  assert config.model.scan_layers is True and config.model.remat == 'dots'
  free = config_lib.changeable_on_resume(Config())
  assert 'model.remat' in free and 'model.scan_layers' not in free


# --- What remat keeps: JAX's residuals, XLA's memory analysis ---------------

# Activations outweigh the parameters: 4 layers of d_model 64 on 8 rows of
# 128 tokens (the attention probabilities alone are 2 MB a layer).
MEMORY_CONFIG = Config(
    task='language_model',
    model=ModelConfig(vocab_size=256, d_model=64, d_ff=256, num_heads=4,
                      num_encoder_layers=0, num_decoder_layers=4,
                      norm_position='pre', dropout_rate=0.0, max_length=128),
    data=DataConfig(batch_size=8, max_length=128))


def test_remat_keeps_less_for_the_backward_pass():
  """Scanned layers. JAX's residuals, traced (measured: none 43.1 MB, dots
  11.8 MB, full 3.4 MB); and XLA's temporary memory of the compiled step,
  the benchmark's step_temp_bytes (none 47.6 MB, full 14.8 MB). Unrolled,
  XLA:CPU shows no saving (49.94 MB both): it drops remat's optimization
  barriers and merges the recomputation back into the forward pass, which
  a loop's body keeps apart from the backward loop's."""
  scanned = dataclasses.replace(
      MEMORY_CONFIG, model=dataclasses.replace(MEMORY_CONFIG.model,
                                               scan_layers=True))
  result = memory.measure_remat_memory(scanned, modes=('dots',),
                                       compile_steps=False)
  result.update(memory.measure_remat_memory(scanned, modes=('none',
                                                            'full')))
  none, full, dots = (result[f'step_residual_bytes_remat_{mode}']
                      for mode in ('none', 'full', 'dots'))
  assert 0 < full < dots < none
  assert full < 0.15 * none and dots < 0.45 * none, result
  temp_none, temp_full = (result[f'step_temp_bytes_remat_{mode}']
                          for mode in ('none', 'full'))
  assert 0 < temp_full < 0.6 * temp_none, result
  assert result['step_temp_remat_full_over_none'] == pytest.approx(
      temp_full / temp_none)
  assert result['compile_s_remat_full'] > 0
