"""launch.py end to end, in real processes: what a run does around its
steps. Two processes train like one; a NaN stops the run before any bad
checkpoint; one training run per workdir; batches that do not split are
explained before compiling; the time limit saves and ends like a finished
run; the modes after training use the best checkpoint by default.

The harness is test_launch.py's.
"""

import json
import os
import signal
import time

import numpy as np
import pytest

from scripts import launching
from scripts.launching import finish
from test_launch import (ADAM_EPS, STEPS, checkpoint_names, final_params,
                         jax_leaves, last_record, launch, launch_args,
                         losses_of_one_and_two_processes, run)

pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]


def test_two_processes_match_one_process_with_all_devices(tmp_path):
  """2 processes x 4 devices train like 1 process x 8 devices, each process
  reading only its shards."""
  want, got = losses_of_one_and_two_processes(tmp_path, [
      '--experiment=tiny', '--set=train.steps=6', '--set=train.log_every=1',
      '--set=train.checkpoint_every=6', '--set=eval.final=false',
      '--set=eval.every=0', '--set=data.shards=8', ADAM_EPS])
  assert sorted(got) == sorted(want) == list(range(1, 7))
  assert all(np.isfinite(got[s]) for s in got)
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [want[s] for s in sorted(want)], rtol=1e-5)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  # Warm-up makes the first update 0, so step 1 is good; then lr ~1e27.
  workdir = str(tmp_path)
  out = run(workdir, '--set=train.schedule=constant',
            '--set=train.learning_rate=1e30', '--set=train.warmup_steps=1000',
            '--set=train.checkpoint_every=1', '--set=train.steps=10',
            check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'became NaN or Inf at step' in out.stderr
  assert 'Traceback' not in out.stderr
  bad_step = int(out.stderr.split('NaN or Inf at step ')[1].split(';')[0])
  steps = sorted(int(d) for d in os.listdir(os.path.join(workdir,
                                                         'checkpoints'))
                 if d.isdigit())
  assert steps and max(steps) < bad_step
  for leaf in jax_leaves(final_params(workdir, max(steps))):
    assert np.all(np.isfinite(leaf))


def saved_steps(workdir) -> list[int]:
  """The steps of the complete checkpoints (Orbax renames a checkpoint's
  temporary directory to its step when the save is done)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_one_training_run_per_workdir(tmp_path):
  workdir = str(tmp_path)
  first = launch(workdir, '--set=train.steps=100000')
  try:
    deadline = time.time() + 300
    while time.time() < deadline and not saved_steps(workdir):
      assert first.poll() is None, first.communicate()[1][-2000:]
      time.sleep(0.1)
    # Paused with its lock held (the kernel keeps a stopped process's
    # locks), it leaves the CPU to the runs below; it has a checkpoint for
    # the evaluation to read.
    first.send_signal(signal.SIGSTOP)
    # A second training run and an evaluation (readers need no lock), at
    # once. The evaluation takes the run's settings (train.steps=100000).
    second = launch(workdir)
    evaluated = launch(workdir, '--mode=evaluate', '--set=eval.num_examples=8',
                       base=['--experiment=tiny'])
    second, evaluated = finish(second, False), finish(evaluated, False)
    assert second.returncode == 2, second.stderr[-2000:]
    assert 'is in use by another training run' in second.stderr
    assert f'pid {first.pid}' in second.stderr
    assert 'Traceback' not in second.stderr
    assert 'in use' not in evaluated.stderr
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  finally:
    first.kill()  # SIGKILL, stopped or not: the kernel releases the lock
    first.communicate()
  resumed = run(workdir, '--set=train.steps=4', check=False)
  assert 'in use' not in resumed.stderr, resumed.stderr[-2000:]


def test_indivisible_batch_is_explained_before_compiling(tmp_path):
  out = run(str(tmp_path), '--set=data.batch_size=6', devices=4, check=False)
  assert out.returncode == 2
  assert ('data.batch_size=6 must be a multiple of 4 (4 device(s) x '
          'train.grad_accum_steps=1), e.g. 4 or 8') in out.stderr
  assert 'Traceback' not in out.stderr + out.stdout
  out = run(str(tmp_path), '--set=data.batch_size=8',
            '--set=train.grad_accum_steps=4', devices=4, check=False)
  assert out.returncode == 2 and 'multiple of 16' in out.stderr


def test_time_limit_saves_and_ends_like_a_finished_run(tmp_path):
  workdir = str(tmp_path)
  out = run(workdir, '--set=train.time_limit=0.0001',
            '--set=train.checkpoint_every=1000', '--set=eval.final=true',
            '--set=eval.num_examples=8')
  record = last_record(workdir)
  assert record['kind'] == 'stop' and record['stop_reason'] == 'time_limit'
  assert 1 <= record['step'] < STEPS
  assert checkpoint_names(workdir) == [str(record['step'])]
  assert 'train.time_limit=0.0001 minutes reached' in out.stdout
  assert any(n.startswith('test_step') and n.endswith('.json')
             for n in os.listdir(os.path.join(workdir, 'eval')))


def test_modes_after_training_use_the_best_checkpoint(tmp_path):
  """With eval.best_metric, the final evaluation and the modes after
  training use the checkpoint of the best evaluation, kept beside the
  rotation (one checkpoint here); --checkpoint=last the newest."""
  workdir = str(tmp_path)
  out = run(workdir, '--set=train.steps=6', '--set=train.checkpoint_every=6',
            '--set=train.keep_checkpoints=1', '--set=eval.every=2',
            '--set=eval.num_examples=8', '--set=eval.best_metric=loss',
            '--set=eval.beam_size=1', '--set=eval.final=true')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    losses = {r['step']: r['loss'] for r in map(json.loads, f)
              if r['kind'] == 'eval'}
  assert sorted(losses) == [2, 4, 6]
  best = min(losses, key=lambda s: (losses[s], s))  # a tie keeps the earlier
  note = f'Using the best checkpoint (step {best}, valid loss '
  assert note in out.stderr, out.stderr[-2000:]
  assert os.path.exists(os.path.join(workdir, 'eval',
                                     f'test_step{best}_beam1.json'))
  assert checkpoint_names(workdir) == sorted({str(best), '6'})
  sentence = tmp_path / 'sentence.txt'
  sentence.write_text('a b c\n', encoding='utf-8')
  default, last = launching.run_all([
      (launch_args(workdir, '--mode=translate', f'--input={sentence}',
                   base=[]), 1),
      (launch_args(workdir, '--mode=translate', f'--input={sentence}',
                   '--checkpoint=last', base=[]), 1)])
  assert default.returncode == last.returncode == 0, default.stderr[-2000:]
  assert note in default.stderr
  assert 'Using the last checkpoint (step 6).' in last.stderr
