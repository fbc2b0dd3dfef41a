"""A workdir knows its run: the modes after training take its config.json,
change only what AFTER_TRAINING lists, and refuse another experiment; the
experiment that trained it is recorded with the config.

In-process and without training: a workdir with a config.json and a
tokenizer file is a trained run as far as the settings go.
"""

import os
import re

import pytest

import launch
from transformer import config as config_lib
from transformer import workdir as workdir_lib
from transformer.workdir import RunError


def trained_workdir(path, experiment: str | None = 'tiny', *overrides) -> str:
  """`path` as a run of `experiment` with `overrides` leaves it."""
  workdir = str(path)
  config = launch.load_config(experiment or 'tiny', list(overrides))
  workdir_lib.check_config(config, workdir, experiment=experiment)
  with open(os.path.join(workdir, 'tokenizer.model'), 'wb') as f:
    f.write(b'a trained tokenizer')
  return workdir


def test_every_after_training_key_exists():
  keys = config_lib.field_paths(config_lib.Config())
  for key in workdir_lib.AFTER_TRAINING:
    assert any(k == key or (key.endswith('.') and k.startswith(key))
               for k in keys), key
  assert workdir_lib.after_training('eval.beam_size')
  assert workdir_lib.after_training('model.dtype')
  assert not workdir_lib.after_training('model.d_model')
  assert not workdir_lib.after_training('evaluation')  # a prefix, not a key


def test_the_runs_settings_are_used_without_repeating_them(tmp_path):
  workdir = trained_workdir(tmp_path, 'tiny', 'model.d_ff=96',
                            'eval.beam_size=2')
  with open(os.path.join(workdir, 'experiment.txt')) as f:
    assert f.read() == 'tiny\n'
  settings = workdir_lib.run_settings(workdir, [], mode='evaluate')
  assert settings.config == launch.load_config(
      'tiny', ['model.d_ff=96', 'eval.beam_size=2'])
  assert settings.experiment == 'tiny'
  assert settings.note == (f"Using the run's settings from {workdir}/"
                           'config.json (experiment tiny).')
  # Repeating the training command's values changes nothing.
  again = workdir_lib.run_settings(
      workdir, ['model.d_ff=96', 'train.steps=600'], mode='evaluate',
      experiment='tiny')
  assert again == settings


def test_settings_of_decoding_and_computation_may_change(tmp_path):
  workdir = trained_workdir(tmp_path, 'tiny', 'model.d_ff=96')
  settings = workdir_lib.run_settings(
      workdir, ['eval.beam_size=8', 'generate.temperature=0',
                'data.text_dir=/elsewhere', 'model.dtype=bfloat16'],
      mode='predict')
  assert settings.config.eval.beam_size == 8
  assert settings.config.generate.temperature == 0.0
  assert settings.config.data.text_dir == '/elsewhere'
  assert settings.config.model.dtype == 'bfloat16'
  assert settings.config.model.d_ff == 96  # the run's
  assert settings.note.endswith(
      '(experiment tiny; --set data.text_dir=/elsewhere eval.beam_size=8 '
      'generate.temperature=0.0 model.dtype=bfloat16).')
  # The check of a reader's config (launch.check_trained) agrees.
  workdir_lib.check_config(settings.config, workdir, save=False)


def test_what_training_fixed_is_refused(tmp_path):
  workdir = trained_workdir(tmp_path, 'tiny')
  with pytest.raises(RunError) as error:
    workdir_lib.run_settings(workdir, ['model.d_model=32', 'eval.beam_size=8'],
                             mode='evaluate')
  message = str(error.value)
  assert message.startswith(
      f'--set=model.d_model=32: the run in {workdir} was trained with '
      'model.d_model=64, and training fixed it: --mode=evaluate takes every '
      "setting from the run's config.json")
  assert 'eval.*, generate.*, data.eval_batch_size' in message
  assert ('python launch.py --experiment=tiny --workdir=NEW_WORKDIR '
          '--set=model.d_model=32') in message
  assert '\n' not in message
  # Changeable on resume is not the same: dropout shaped what was learnt.
  with pytest.raises(RunError, match=re.escape(
      'trained with model.dropout_rate=0.1, seed=0, and training fixed '
      'them')):
    workdir_lib.run_settings(workdir, ['seed=1', 'model.dropout_rate=0.0'],
                             mode='predict')


def test_bad_values_are_config_errors(tmp_path):
  workdir = trained_workdir(tmp_path, 'tiny')
  with pytest.raises(config_lib.ConfigError, match='top_p=0'):
    workdir_lib.run_settings(workdir, ['generate.top_p=0'], mode='generate')
  with pytest.raises(config_lib.ConfigError, match='Did you mean'):
    workdir_lib.run_settings(workdir, ['eval.beam=2'], mode='evaluate')


def test_another_experiment_is_refused_by_name(tmp_path):
  workdir = trained_workdir(tmp_path, 'tiny')
  with pytest.raises(RunError, match=re.escape(
      f'--experiment=tiny_lm: the run in {workdir} was trained by '
      'experiment tiny')):
    workdir_lib.run_settings(workdir, [], mode='evaluate',
                             experiment='tiny_lm')
  assert workdir_lib.run_settings(workdir, [], mode='evaluate',
                                  experiment='tiny').experiment == 'tiny'


def test_a_run_without_its_experiment_recorded(tmp_path):
  workdir = trained_workdir(tmp_path, None, 'model.d_ff=96')
  assert not os.path.exists(os.path.join(workdir, 'experiment.txt'))
  settings = workdir_lib.run_settings(workdir, [], mode='evaluate',
                                      experiment='tiny_lm')
  assert settings.config.model.d_ff == 96 and settings.experiment is None
  assert '(experiment not recorded).' in settings.note


def test_a_workdir_without_a_run_has_no_settings(tmp_path):
  assert workdir_lib.run_settings(str(tmp_path), [], mode='evaluate') is None
  # A config.json without anything trained (a run stopped on a setting).
  workdir_lib.check_config(launch.load_config('tiny', []), str(tmp_path))
  assert workdir_lib.run_settings(str(tmp_path), [], mode='evaluate') is None


def test_launch_takes_the_runs_config_in_every_mode_but_train(tmp_path,
                                                              capsys):
  workdir = trained_workdir(tmp_path, 'tiny', 'model.d_ff=96')
  for mode in ('evaluate', 'predict', 'generate', 'visualize', 'benchmark'):
    config, name = launch.run_config(
        workdir, ['eval.beam_size=3'], mode=mode,
        experiment_name='bible_es_en', experiment_given=False)
    assert (config.model.d_ff, config.eval.beam_size, name) == (96, 3, 'tiny')
  assert capsys.readouterr().err.count("Using the run's settings") == 5
  config, name = launch.run_config(workdir, ['train.steps=7'], mode='train',
                                   experiment_name='tiny',
                                   experiment_given=True)
  assert config == launch.load_config('tiny', ['train.steps=7'])
  # No run: the experiment's config, as before.
  config, name = launch.run_config(str(tmp_path / 'new'), [], mode='evaluate',
                                   experiment_name='tiny_lm',
                                   experiment_given=False)
  assert (config, name) == (launch.load_config('tiny_lm', []), 'tiny_lm')


def test_only_saving_records_the_experiment_and_restart_moves_it(tmp_path):
  workdir = str(tmp_path)
  config = launch.load_config('tiny', [])
  workdir_lib.check_config(config, workdir)  # no experiment given
  assert workdir_lib.recorded_experiment(workdir) is None
  workdir_lib.check_config(config, workdir, save=False, experiment='tiny')
  assert workdir_lib.recorded_experiment(workdir) is None
  workdir_lib.check_config(config, workdir, experiment='tiny')
  assert workdir_lib.recorded_experiment(workdir) == 'tiny'
  previous = workdir_lib.set_aside_run(workdir)
  assert workdir_lib.recorded_experiment(workdir) is None
  assert workdir_lib.recorded_experiment(previous) == 'tiny'


def test_a_reader_may_change_where_the_data_lies_a_resumed_run_may_not(
    tmp_path):
  workdir = trained_workdir(tmp_path, 'tiny')
  moved = launch.load_config('tiny', ['data.text_dir=/elsewhere'])
  workdir_lib.check_config(moved, workdir, save=False)
  with pytest.raises(RunError, match='data.text_dir'):
    workdir_lib.check_config(moved, workdir)
