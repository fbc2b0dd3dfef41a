"""Checkpointer: what counts as damage, as a mismatch, as an I/O error.

The end-to-end cases (real processes, real Orbax files) are in
test_launch.py; these pin down the decisions themselves.
"""

import builtins
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import checkpoint, config as config_lib, train
from transformer.config import Config, TrainConfig


def small_state(d_ff=8):
  return {'params': {'wi': jnp.ones((4, d_ff)), 'b': jnp.zeros((d_ff,))},
          'step': jnp.zeros((), jnp.int32)}


@pytest.fixture
def saved(tmp_path):
  """A checkpoint of `small_state()` at step 3."""
  checkpointer = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  state = train.TrainState(step=jnp.zeros((), jnp.int32),
                           params=small_state()['params'], opt_state={})
  checkpointer.save(state, None, step=3)
  checkpointer.wait()
  return checkpointer, state


def abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_restore_round_trip(saved):
  checkpointer, state = saved
  restored, step = checkpointer.restore(abstract(state))
  assert step == 3
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, want)


def test_other_shape_is_a_mismatch_not_damage(saved):
  checkpointer, _ = saved
  other = train.TrainState(step=jnp.zeros((), jnp.int32),
                           params=small_state(d_ff=6)['params'], opt_state={})
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"'params.b' is saved as float32\[8\] but the "
                           r'config builds float32\[6\]'):
    checkpointer.restore(abstract(other))
  assert checkpointer.steps() == [3] and not checkpointer.damaged()


def test_tree_difference_names_missing_and_extra_arrays():
  saved = small_state()
  wanted = {'params': {'wi': saved['params']['wi'],
                       'wo': saved['params']['wi']}, 'step': saved['step']}
  text = checkpoint.tree_difference(saved, abstract(wanted))
  assert "the first 'params.b'" in text and "the first 'params.wo'" in text
  assert checkpoint.tree_difference(saved, abstract(saved)) == ''


def test_unreadable_file_is_an_io_error_and_nothing_is_renamed(saved,
                                                               monkeypatch):
  checkpointer, state = saved
  real_open = builtins.open

  def refusing_open(file, *args, **kwargs):
    if str(file).endswith('_METADATA'):
      raise PermissionError(13, 'Permission denied', str(file))
    return real_open(file, *args, **kwargs)
  monkeypatch.setattr(builtins, 'open', refusing_open)
  with pytest.raises(checkpoint.CheckpointError,
                     match='Permission denied.*nothing was renamed'):
    checkpointer.restore(abstract(state))
  monkeypatch.undo()
  assert checkpointer.steps() == [3] and not checkpointer.damaged()


def test_non_finite_parameters_are_damage(tmp_path):
  checkpointer = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  good = train.TrainState(step=jnp.zeros((), jnp.int32),
                          params=small_state()['params'], opt_state={})
  bad = good.replace(params={'wi': jnp.full((4, 8), jnp.nan),
                             'b': jnp.zeros((8,))})
  checkpointer.save(good, None, step=1)
  checkpointer.save(bad, None, step=2)
  checkpointer.wait()
  _, step = checkpointer.restore(abstract(good))
  assert step == 1
  assert checkpointer.damaged() == ['2.damaged']
  assert os.path.isdir(os.path.join(tmp_path, '2.damaged'))


def test_damaged_step_asked_for_is_reported_not_renamed(tmp_path):
  checkpointer = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  state = train.TrainState(step=jnp.zeros((), jnp.int32),
                           params={'wi': jnp.full((2,), jnp.inf)}, opt_state={})
  checkpointer.save(state, None, step=5)
  checkpointer.wait()
  with pytest.raises(checkpoint.CheckpointError, match='is damaged'):
    checkpointer.restore(abstract(state), step=5)
  assert checkpointer.steps() == [5] and not checkpointer.damaged()


def test_optimizer_state_structure_ignores_clipping_and_decay():
  """So that a run resumes with clipping or weight decay switched on."""
  params = small_state()['params']
  structures = set()
  for clip, decay in [(0.0, 0.0), (1.0, 0.0), (0.0, 0.1), (0.5, 0.01)]:
    config = Config(train=TrainConfig(grad_clip_norm=clip, weight_decay=decay))
    structures.add(jax.tree.structure(train.make_optimizer(config).init(params)))
  assert len(structures) == 1


def test_changeable_on_resume_lists_only_what_keeps_the_state_meaning():
  keys = config_lib.changeable_on_resume(Config())
  assert {'train.steps', 'train.grad_clip_norm', 'train.learning_rate',
          'train.time_limit', 'eval.beam_size', 'model.attention_impl',
          'model.dropout_rate', 'model.dtype',
          'data.tokenizer_sentences'} <= keys
  for fixed in ('seed', 'model.d_model', 'model.vocab_size',
                'model.activation', 'data.tokenizer', 'data.source',
                'data.batch_size', 'data.max_length'):
    assert fixed in config_lib.field_paths(Config()) and fixed not in keys


def test_averaging_more_checkpoints_than_kept_is_refused():
  with pytest.raises(config_lib.ConfigError, match='keep_checkpoints'):
    config_lib.override(Config(), 'eval.average_checkpoints=6')
  config = config_lib.override(
      dataclasses.replace(Config(), train=TrainConfig(keep_checkpoints=20)),
      'eval.average_checkpoints=20')
  assert config.eval.average_checkpoints == 20


def test_every_experiment_loads():
  """wmt_big once asked to average 20 checkpoints while keeping 5."""
  import importlib  # pylint: disable=g-import-not-at-top
  import pkgutil  # pylint: disable=g-import-not-at-top
  import experiments  # pylint: disable=g-import-not-at-top
  for module in pkgutil.iter_modules(experiments.__path__):
    config = importlib.import_module(f'experiments.{module.name}').get_config()
    assert config.eval.average_checkpoints <= config.train.keep_checkpoints
