"""Budgeted runs, the best checkpoint and early stopping, end to end in real
processes (the harness is test_launch.py's)."""

import json
import os
import signal

import numpy as np
import pytest

from transformer import checkpoint
from transformer.best import BestMetric, Progress

from test_launch import (CLASSIFY, final_params, interrupt, jax_leaves,
                         logged_losses, resumed_step, run)

pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]

# tiny_classify with its steps fitted to 30 seconds (the timing itself
# takes a few: blocks of about a second), a linear decay over
# them, a checkpoint every 10 steps (CLASSIFY).
BUDGETED = CLASSIFY + ['--set=train.steps=0', '--set=train.time_limit=0.5',
                       '--set=train.schedule=linear']


def records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_budgeted_run_resumes_exactly_and_equals_its_fixed_steps(tmp_path):
  budgeted = str(tmp_path / 'budgeted')
  killed = interrupt(budgeted, signal.SIGKILL, after_step=22, base=BUDGETED)
  assert killed.returncode == -signal.SIGKILL
  saved = json.load(open(os.path.join(budgeted, 'budget.json')))
  steps = saved['steps']
  assert steps > 30, saved  # enough to resume past the kill
  assert 'per step' in saved['why']
  config = json.load(open(os.path.join(budgeted, 'config.json')))
  assert config['train']['steps'] == steps  # the config shows the number
  # Resumed with a longer safety limit: the saved number, not a new fit.
  out = run(budgeted, '--set=train.time_limit=10', base=BUDGETED)
  assert f'fixed {steps:,} steps' in out.stdout
  assert resumed_step(out.stdout) >= 10
  assert records(budgeted)[-1] == {**records(budgeted)[-1],
                                   'step': steps, 'stop_reason': 'done'}

  fixed = str(tmp_path / 'fixed')
  run(fixed, f'--set=train.steps={steps}', '--set=train.schedule=linear',
      base=CLASSIFY)
  got, want = logged_losses(budgeted), logged_losses(fixed)
  assert sorted(got) == sorted(want) == list(range(1, steps + 1))
  assert all(np.isfinite(v) for v in got.values())
  assert got == want
  for a, b in zip(jax_leaves(final_params(budgeted, steps)),
                  jax_leaves(final_params(fixed, steps))):
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)


EARLY = CLASSIFY + ['--set=train.steps=400', '--set=eval.every=10',
                    '--set=eval.best_metric=loss', '--set=eval.patience=2',
                    '--set=train.keep_checkpoints=1']


def test_best_checkpoint_kept_and_early_stop(tmp_path):
  workdir = str(tmp_path)
  out = run(workdir, base=EARLY)
  log = records(workdir)
  evals = {r['step']: r['loss'] for r in log if r['kind'] == 'eval'}
  # The decisions, replayed on the logged evaluations.
  progress, stop_step = Progress(BestMetric('loss', False, 'valid')), None
  for step, loss in sorted(evals.items()):
    progress.update(step, loss)
    if progress.evals_since_best >= 2:
      stop_step = step
      break
  best_step = min(evals, key=lambda s: (evals[s], s))
  assert stop_step is not None and stop_step < 400, evals
  assert max(evals) == stop_step
  assert log[-1]['stop_reason'] == 'early_stop' and log[-1]['step'] == stop_step
  assert 'Early stop: 2 evaluations without a better valid loss' in out.stdout
  # Rotation keeps one checkpoint (the last); the best is kept beside it.
  kept = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
  assert kept.steps() == sorted({best_step, stop_step})
  kept.close()
  assert checkpoint.choose_step(workdir)[0] == best_step
  # Running the command again trains no further.
  again = run(workdir, base=EARLY)
  assert 'Early stop' in again.stdout
  log = records(workdir)
  assert log[-1]['stop_reason'] == 'early_stop' and log[-1]['step'] == stop_step
  assert max(r['step'] for r in log if r['kind'] == 'train') == stop_step
