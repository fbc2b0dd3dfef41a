"""Keeping the best checkpoint and early stopping (transformer/best.py and
the Checkpointer's preservation): decisions checked on hand-made metrics,
against a scan written out here."""

import math

import jax.numpy as jnp
import pytest

from transformer import checkpoint, tasks, train
from transformer import config as config_lib
from transformer.best import BestMetric, Progress, best_of
from transformer.config import Config, ConfigError

ACCURACY = BestMetric('accuracy', higher_is_better=True, split='valid')
LOSS = BestMetric('loss', higher_is_better=False, split='valid')


def naive_best(values: dict[int, float], higher: bool) -> int:
  """The earliest step holding the best value."""
  target = max(values.values()) if higher else min(values.values())
  return min(step for step, value in values.items() if value == target)


def test_progress_counts_evaluations_since_the_best():
  progress = Progress(LOSS)
  history = [(10, 2.0), (20, 1.5), (30, 1.5), (40, None), (50, 1.7),
             (60, 1.2), (70, 1.3)]
  new_bests, since = [], []
  for step, value in history:
    new_bests.append(progress.update(step, value))
    since.append(progress.evals_since_best)
  # A tie (step 30) and an undefined value (step 40) are no improvement.
  assert new_bests == [True, True, False, False, False, True, False]
  assert since == [0, 0, 1, 2, 3, 0, 1]
  assert (progress.best_value, progress.best_step) == (1.2, 60)


def test_progress_survives_a_checkpoint_round_trip():
  progress = Progress(ACCURACY)
  for step, value in [(10, 0.5), (20, 0.7), (30, 0.6)]:
    progress.update(step, value)
  saved = progress.checkpoint_metrics(evaluated=0.6)
  again = Progress.restore(ACCURACY, saved)
  assert (again.best_value, again.best_step, again.evals_since_best) == (
      0.7, 20, 1)
  # Another eval.best_metric on resume starts afresh.
  assert Progress.restore(LOSS, saved).best_value is None
  assert Progress.restore(ACCURACY, None).evals_since_best == 0


@pytest.mark.parametrize('metric', [ACCURACY, LOSS])
def test_best_of_matches_a_naive_scan(metric):
  values = {10: 0.3, 20: 0.9, 30: 0.1, 40: 0.9, 50: 0.5}
  progress = Progress(metric)
  saved = {}
  for step, value in values.items():
    progress.update(step, value)
    saved[step] = progress.checkpoint_metrics(evaluated=value)
  saved[55] = progress.checkpoint_metrics(evaluated=None)  # rotation only
  step, found, value = best_of(saved)
  assert step == naive_best(values, metric.higher_is_better)
  assert found == metric and value == values[step]
  assert best_of({5: None, 6: None}) is None
  assert metric.rank(saved[55]) == -math.inf


def state_of(value: float) -> train.TrainState:
  return train.TrainState(step=jnp.zeros((), jnp.int32),
                          params={'w': jnp.full((3,), value)}, opt_state={})


def test_best_checkpoint_outlives_the_rotation(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  values = {10: 0.80, 20: 0.95, 30: 0.90, 40: 0.93, 50: 0.94, 60: 0.91}
  checkpointer = checkpoint.Checkpointer(directory, keep=2, async_save=False,
                                         best=ACCURACY)
  progress = Progress(ACCURACY)
  for step, value in values.items():
    progress.update(step, value)
    checkpointer.save(state_of(value), None, step=step,
                      metrics=progress.checkpoint_metrics(evaluated=value))
    checkpointer.save(state_of(value), None, step=step + 5,  # rotation only
                      metrics=progress.checkpoint_metrics(evaluated=None))
  best = naive_best(values, higher=True)
  assert checkpointer.steps() == sorted([best, 60, 65])
  assert checkpointer.metrics(65)['best_step'] == best
  checkpointer.close()
  step, note = checkpoint.choose_step(str(tmp_path), '')
  assert step == best and note == (
      f'the best checkpoint (step {best}, valid accuracy 0.95)')
  assert checkpoint.choose_step(str(tmp_path), 'best')[0] == best
  assert checkpoint.choose_step(str(tmp_path), 'last')[0] == 65
  assert checkpoint.choose_step(str(tmp_path), '60')[0] == 60
  with pytest.raises(checkpoint.NoCheckpointError, match=r'\[20, 60, 65\]'):
    checkpoint.choose_step(str(tmp_path), '30')
  with pytest.raises(checkpoint.NoCheckpointError, match='best, last'):
    checkpoint.choose_step(str(tmp_path), 'newest')


def test_without_a_best_metric_the_last_is_chosen_and_best_is_refused(
    tmp_path):
  checkpointer = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                                         keep=2, async_save=False)
  for step in (1, 2, 3):
    checkpointer.save(state_of(step), None, step=step)
  checkpointer.close()
  assert checkpoint.choose_step(str(tmp_path), '') == (
      3, 'the last checkpoint (step 3)')
  with pytest.raises(checkpoint.NoCheckpointError, match='keeps no best'):
    checkpoint.choose_step(str(tmp_path), 'best')


def test_best_metric_must_be_one_the_task_reports():
  config = config_lib.override_all(
      Config(), ['task=classification', 'eval.best_metric=bleu'])
  with pytest.raises(ConfigError) as error:
    tasks.best_metric(config)
  named = str(error.value).split('choose one of ')[1].split(', ')
  assert named == sorted(tasks.FAMILIES['classification'].task_class
                         .BEST_METRICS)
  assert {'accuracy', 'macro_f1', 'loss'} <= set(named)
  config = config_lib.override_all(Config(), ['eval.best_metric=bleu'])
  assert tasks.best_metric(config) == BestMetric('bleu', True, 'valid')
  lm = config_lib.override_all(Config(), [
      'task=language_model', 'eval.best_metric=bits_per_character'])
  assert not tasks.best_metric(lm).higher_is_better


def test_patience_and_best_metric_checks():
  with pytest.raises(ConfigError, match='eval.best_metric'):
    config_lib.override_all(Config(), ['eval.patience=3'])
  with pytest.raises(ConfigError, match='eval.every'):
    config_lib.override_all(Config(), ['eval.best_metric=loss',
                                       'eval.every=0'])
