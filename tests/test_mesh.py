"""Tensor parallelism on a 2-D data x model mesh (train.model_parallel).

One subprocess with 8 simulated CPU devices runs every mesh case
(tests/scripts/mesh_steps.py); the tests below read its JSON.
"""

import dataclasses

import jax
import numpy as np
import pytest

from scripts import launching
from transformer import train as train_lib
from transformer.config import Config, ConfigError, ModelConfig, TrainConfig

MESHES = ('data8', 'data4_model2', 'data2_model4')


@pytest.fixture(scope='module')
def result():
  # The nine train-step compiles dominate the run.
  result = launching.run_script('mesh_steps.py', devices=8)
  print('mesh_steps.py seconds:', result['seconds'], 'CPU seconds:',
        result['cpu_seconds'])
  return result


def assert_learns_finitely(result, key):
  assert result['finite'][key], key
  losses = result['losses'][key]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], key


@pytest.mark.parametrize('task', ['translation', 'lm'])
def test_every_mesh_gives_the_losses_of_one_device(result, task):
  """20 steps on each mesh against one device, rtol 1e-5.

  A mesh sums in another order, so the losses may differ by float32
  rounding. With Adam's eps at 1e-6 (mesh_steps.py says why) they stay
  there: 8e-7 apart at most over 40 steps, for every mesh and for the one
  device fed its batches' rows in 6 other orders, both tasks (with eps 1e-9
  the language model's drifted to 1.1e-5 by step 17). A gradient that
  misses one of the 8 shards moves the losses 1e-4 apart at step 2 and 1e-3
  after; a shard read twice, 1e-3 to 1e-2 from step 0."""
  assert_learns_finitely(result, f'{task}_one')
  names = MESHES + (('data4_model2_fsdp',) if task == 'translation' else ())
  for name in names:
    assert result['finite'][f'{task}_{name}'], name
    np.testing.assert_allclose(result['losses'][f'{task}_{name}'],
                               result['losses'][f'{task}_one'], rtol=1e-5,
                               err_msg=name)


def test_parameters_are_split_as_the_rules_say(result):
  specs = result['specs']
  # One 'data' axis without FSDP: every parameter on every device.
  assert all(set(s) == {None} for s in specs['data8'].values()), specs
  # Megatron-LM: Q/K/V by heads, the attention output and wo on their
  # input, wi on its output, the embedding by vocabulary rows.
  for name, model in (('data4_model2', 'model'), ('data2_model4', 'model')):
    tp = specs[name]
    assert tp['query'] == [None, model, None]
    assert tp['query_bias'] == [model, None]
    assert tp['query_adam_mu'] == tp['query']  # optimizer state alike
    assert tp['out'] == [model, None, None]
    assert tp['wi'] == [None, model]
    assert tp['wo'] == [model, None]
    assert tp['embedding'] == [model, None]
    assert tp['norm_scale'] == [None]
  # FSDP adds 'data' on the embed dimension of arrays of >= 2**14 elements.
  fsdp = specs['data4_model2_fsdp']
  assert fsdp['wi'] == ['data', 'model'] and fsdp['wo'] == ['model', 'data']
  assert fsdp['embedding'] == ['model', 'data']
  assert fsdp['query'] == [None, 'model', None]  # 4,096 elements: no FSDP
  assert fsdp['norm_scale'] == [None]


def test_a_checkpoint_restores_on_another_mesh_and_continues(result):
  uninterrupted = result['losses']['translation_data4_model2'][10:]
  assert result['finite']['resumed_data8']
  np.testing.assert_allclose(result['resumed']['data8'], uninterrupted,
                             rtol=1e-5)
  # Restored as the new mesh places arrays: replicated on one data axis.
  restored = result['specs']['restored_data8']
  assert all(set(s) == {None} for s in restored.values()), restored


def test_decoding_on_a_2d_mesh_gives_the_tokens_of_one_device(result):
  for kind in ('beam_search', 'generate'):
    tokens = result[kind]
    assert tokens['data4_model2'] == tokens['one'], kind
    assert len(tokens['one']) == 8
    assert len({t for row in tokens['one'] for t in row}) > 2, kind  # real output


CONFIG = Config(model=ModelConfig(num_heads=8, d_ff=2048),
                train=TrainConfig(model_parallel=3))


def test_a_model_parallel_that_does_not_divide_is_explained():
  with pytest.raises(ConfigError) as error:
    train_lib.check_model_parallel(CONFIG, 8)
  message = str(error.value)
  assert '\n' not in message  # one paragraph
  assert message.startswith('train.model_parallel=3 does not fit')
  for part in ('8 device(s)', 'model.num_heads=8', 'model.d_ff=2048',
               'here 1 or 2 or 4 or 8', '--set=train.model_parallel=N'):
    assert part in message, part
  # Heads alone: 16 devices would take 16, 8 heads do not.
  wide = dataclasses.replace(CONFIG, train=TrainConfig(model_parallel=16))
  with pytest.raises(ConfigError, match=r'model.num_heads=8 does not split'):
    train_lib.check_model_parallel(wide, 16)
  train_lib.check_model_parallel(
      dataclasses.replace(CONFIG, train=TrainConfig(model_parallel=4)), 8)


def test_make_mesh_checks_the_devices_it_has():
  config = dataclasses.replace(CONFIG, train=TrainConfig(model_parallel=2))
  with pytest.raises(ConfigError, match='1 device'):
    train_lib.make_mesh(jax.devices()[:1], config)
  mesh = train_lib.make_mesh(jax.devices()[:1], Config())
  assert mesh.axis_names == ('data',)  # model_parallel=1: today's mesh
