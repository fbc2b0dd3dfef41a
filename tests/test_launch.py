"""launch.py end to end, in real processes: resume, preemption, damaged
checkpoints, two processes translating, and the errors a user can make.

Also the harness of the other end-to-end files (test_launch_runs.py,
test_launch_classification.py, test_lm_launch.py)."""

import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from scripts import launching
from scripts.launching import finish, start

# tiny, with a step logged and a checkpoint every 10 steps: 6 checkpoints,
# the last 5 kept (train.keep_checkpoints), the oldest of them at step 20.
# 60 steps: the translations of test_two_processes_translate_... are not
# all empty (babble, but some pieces).
STEPS, EVERY = 60, 10
OLDEST_KEPT = STEPS - 4 * EVERY
# Interrupted runs are stopped once this step is logged: two checkpoints
# have been started, so at least one is complete.
INTERRUPT_AFTER = 2 * EVERY + 2
TINY = ['--experiment=tiny', f'--set=train.steps={STEPS}',
        '--set=train.log_every=1', f'--set=train.checkpoint_every={EVERY}',
        '--set=eval.final=false', '--set=eval.every=0']

pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]


# tiny_classify likewise, for the classification task.
CLASSIFY = ['--experiment=tiny_classify', f'--set=train.steps={STEPS}',
            '--set=train.log_every=1', f'--set=train.checkpoint_every={EVERY}',
            '--set=eval.final=false', '--set=model.dropout_rate=0.1']


def launch_args(workdir, *extra, base=TINY):
  return [f'--workdir={workdir}', *base, *extra]


def launch(workdir, *extra, devices=1, base=TINY, cache=True):
  """Starts launch.py on `workdir`, not waiting for it."""
  return start(launch_args(workdir, *extra, base=base), devices, cache)


def run(workdir, *extra, devices=1, check=True, base=TINY):
  return finish(launch(workdir, *extra, devices=devices, base=base), check)


def logged_losses(workdir) -> dict[int, float]:
  """step -> loss; a step logged twice (before and after a resume) keeps the
  later record."""
  losses = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if record['kind'] == 'train':
        losses[record['step']] = record['loss']
  return losses


def final_params(workdir, step):
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  restored = ocp.StandardCheckpointer().restore(path)
  return restored['params']


def interrupt(workdir, sig, after_step: int, base=TINY
              ) -> subprocess.CompletedProcess:
  """Starts a run and sends `sig` once `after_step` has been logged."""
  process = launch(workdir, base=base)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if os.path.exists(metrics) and max(logged_losses(workdir), default=0) >= after_step:
      process.send_signal(sig)
      break
    time.sleep(0.05)
  return finish(process, check=False)


class Reference:
  """An uninterrupted run, going on in the background from its first use:
  the interrupted runs compared with it run meanwhile."""

  def __init__(self, workdir, *extra, base=TINY):
    self._workdir = workdir
    self._process = launch(workdir, *extra, base=base)
    self._out = None

  def workdir(self) -> str:
    """The workdir, once the run has finished; it must have succeeded."""
    if self._out is None:
      self._out = finish(self._process, check=False)
    assert self._out.returncode == 0, (self._out.stdout[-2000:] +
                                       self._out.stderr[-3000:])
    return self._workdir

  def stop(self):
    if self._process.poll() is None:  # a test failed before waiting for it
      self._process.kill()
      self._process.communicate()


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  run_ = Reference(str(tmp_path_factory.mktemp('uninterrupted')))
  yield run_
  run_.stop()


@pytest.fixture(scope='module')
def uninterrupted(reference):
  return reference.workdir()


def assert_same_run(workdir, reference, restarted_from):
  got, want = logged_losses(workdir), logged_losses(reference)
  assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
  for step in range(restarted_from + 1, STEPS + 1):
    assert got[step] == want[step], f'loss differs at step {step}'
  a, b = final_params(workdir, STEPS), final_params(reference, STEPS)
  for x, y in zip(jax_leaves(a), jax_leaves(b)):
    np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.leaves(tree)


def resumed_step(stdout: str) -> int:
  line = next(l for l in stdout.splitlines() if 'Resuming' in l)
  return int(line.split('step ')[1].rstrip('.'))


def test_sigkill_then_restart_is_exact(reference, tmp_path):
  workdir = str(tmp_path)
  killed = interrupt(workdir, signal.SIGKILL, after_step=INTERRUPT_AFTER)
  assert killed.returncode == -signal.SIGKILL
  resumed = run(workdir)
  step = resumed_step(resumed.stdout)
  assert EVERY <= step < STEPS and step % EVERY == 0
  assert_same_run(workdir, reference.workdir(), step)


def test_sigterm_saves_then_restart_is_exact(reference, tmp_path):
  workdir = str(tmp_path)
  stopped = interrupt(workdir, signal.SIGTERM, after_step=INTERRUPT_AFTER)
  assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
  assert 'Stopped by SIGTERM' in stopped.stdout
  last = max(logged_losses(workdir))
  resumed = run(workdir)
  assert resumed_step(resumed.stdout) == last  # saved at the stopping step
  assert_same_run(workdir, reference.workdir(), last)


def test_damaged_checkpoint_is_skipped(uninterrupted, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted, workdir)
  # Truncate every data file of the newest checkpoint's state.
  state = os.path.join(workdir, 'checkpoints', str(STEPS), 'state')
  for root, _, files in os.walk(state):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 64 and 'd' in root.split(os.sep)[-1]:
        with open(path, 'r+b') as f:
          f.truncate(16)
  # And leave a half-written save behind, as a kill during a save would.
  os.makedirs(os.path.join(workdir, 'checkpoints',
                           f'{STEPS + EVERY}.orbax-checkpoint-tmp-1'),
              exist_ok=True)
  out = run(workdir, f'--set=train.steps={STEPS + EVERY}')
  assert 'skipping damaged checkpoint' in out.stdout + out.stderr
  assert os.path.isdir(os.path.join(workdir, 'checkpoints',
                                    f'{STEPS}.damaged'))
  assert resumed_step(out.stdout) == STEPS - EVERY


USER_ERRORS = [
    (['--experiment=nope'], 'no such experiment. Available:'),
    (['--set=train.step=5'], 'Did you mean train.steps'),
    (['--set=train.steps=many'], 'expected int'),
    (['--set=model.dtype=fp16'], 'must be one of float32, bfloat16'),
    (['--mode=evaluate'], 'needs a trained workdir'),
    (['--mode=evaluate', '--step=2', '--checkpoint=last'],
     'both choose a checkpoint: give one'),
    (['--checkpoint=last'], '--mode=train takes neither'),
]


def run_cases(cases, workdirs, base):
  """launch.py with each case's args in its workdir, two at a time (they
  end early): tuple(args) -> CompletedProcess."""
  commands = [(launch_args(workdir, *args, base=base), 1)
              for workdir, (args, _) in zip(workdirs, cases)]
  return dict(zip([tuple(args) for args, _ in cases],
                  launching.run_all(commands)))


@pytest.fixture(scope='module')
def user_error_outputs(tmp_path_factory):
  """The commands of the test below, each in a workdir of its own."""
  root = tmp_path_factory.mktemp('user_errors')
  return run_cases(USER_ERRORS, [f'{root}/{i}/w' for i in range(
      len(USER_ERRORS))], base=['--experiment=tiny'])


@pytest.mark.parametrize('args,message', USER_ERRORS)
def test_user_errors_are_one_paragraph_without_traceback(user_error_outputs,
                                                         args, message):
  out = user_error_outputs[tuple(args)]
  assert out.returncode == 2
  assert message in out.stderr
  assert 'Traceback' not in out.stderr + out.stdout


def test_incompatible_workdir_is_refused(uninterrupted, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted, workdir)
  before = open(os.path.join(workdir, 'config.json')).read()
  out = run(workdir, '--set=model.d_model=32', check=False)
  assert out.returncode == 2
  assert 'model.d_model: saved 64, requested 32' in out.stderr
  assert 'Traceback' not in out.stderr
  assert open(os.path.join(workdir, 'config.json')).read() == before


# Add to losses_of_one_and_two_processes's `common`. The two processes sum
# over devices in another order than the one (Gloo's collectives), so the
# losses may differ by float32 rounding: measured 1.3e-7 at most over 30
# steps, hence rtol 1e-5 in the tests. That holds only with Adam's eps well
# above the rounding noise of gradients that are 0 in exact arithmetic (the
# attention key bias, ~1e-9): with the default 1e-9 Adam turns that noise
# into full-size updates of random sign, and translation's losses drifted
# 1.3e-5 apart by step 30. A process that reads another's shard changes its
# batch: losses 1e-3 to 1e-2 apart (tests/test_train.py).
ADAM_EPS = '--set=train.adam_eps=1e-6'


def losses_of_one_and_two_processes(tmp_path, common
                                    ) -> tuple[dict, dict]:
  """Trains `common` in 1 process x 8 devices and in 2 processes x 4 devices
  (JAX's distributed runtime, CPU collectives), all three processes at once:
  (losses of the one, losses of the two)."""
  single = str(tmp_path / 'single')
  multi = str(tmp_path / 'multi')
  import portpicker  # pylint: disable=g-import-not-at-top
  port = portpicker.pick_unused_port()
  processes = [start([f'--workdir={single}', *common], devices=8)] + [
      start([f'--workdir={multi}', *common,
             f'--coordinator_address=localhost:{port}', '--num_processes=2',
             f'--process_id={i}'], devices=4, cache=False)
      for i in range(2)]
  for process in processes:
    finish(process)
  return logged_losses(single), logged_losses(multi)


def test_two_processes_translate_like_one_and_only_process_0_prints(
    uninterrupted, tmp_path):
  """stdout carries translations only, once: not one copy per process, and
  not the lines the CPU collectives (Gloo) print when they connect."""
  sentences = tmp_path / 'sentences.es'
  sentences.write_text('En el principio creó Dios los cielos y la tierra.\n'
                       'Y dijo Dios: Sea la luz; y fue la luz.\n'
                       'Jesús lloró.\n', encoding='utf-8')
  translate = ['--mode=translate', f'--input={sentences}']
  import portpicker  # pylint: disable=g-import-not-at-top
  port = portpicker.pick_unused_port()
  # The single process and the two at once: they only read the workdir.
  single = launch(uninterrupted, *translate, devices=8)
  processes = [start([*launch_args(uninterrupted, *translate),
                      f'--coordinator_address=localhost:{port}',
                      '--num_processes=2', f'--process_id={i}'],
                     devices=4, cache=False)
               for i in range(2)]
  single = finish(single)
  outputs = [finish(process) for process in processes]
  want = single.stdout.splitlines()
  assert len(want) == 3 and any(want), single.stdout
  assert outputs[0].stdout.splitlines() == want
  assert outputs[1].stdout == ''


def checkpoint_names(workdir) -> list[str]:
  return sorted(os.listdir(os.path.join(workdir, 'checkpoints')))


def last_record(workdir) -> dict:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return json.loads(f.readlines()[-1])


def test_finished_run_records_why_it_stopped(uninterrupted):
  assert last_record(uninterrupted) == {
      'step': STEPS, 'kind': 'stop', 'stop_reason': 'done',
      'wall_s': last_record(uninterrupted)['wall_s']}


def test_resume_with_clipping_continues_from_the_checkpoint(uninterrupted,
                                                            tmp_path):
  """What the NaN message advises: the optimizer state does not depend on
  clipping, so the run resumes (no checkpoint is set aside)."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted, workdir)
  before = checkpoint_names(workdir)
  end = STEPS + EVERY
  out = run(workdir, f'--set=train.steps={end}',
            '--set=train.grad_clip_norm=1.0', '--set=train.learning_rate=1e-3')
  assert resumed_step(out.stdout) == STEPS
  assert 'damaged' not in out.stdout + out.stderr
  assert not any('damaged' in n for n in checkpoint_names(workdir))
  assert str(end) in checkpoint_names(workdir) and set(before) - {
      str(OLDEST_KEPT)} <= set(checkpoint_names(workdir))
  losses = logged_losses(workdir)
  assert sorted(losses)[-EVERY:] == list(range(STEPS + 1, end + 1))
  assert all(np.isfinite(losses[s]) for s in range(STEPS + 1, end + 1))
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['train']['grad_clip_norm'] == 1.0


def test_changed_model_is_refused_and_nothing_is_touched(uninterrupted,
                                                         tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted, workdir)
  before = checkpoint_names(workdir), open(
      os.path.join(workdir, 'config.json')).read()
  out = run(workdir, '--set=model.activation=gelu', '--set=seed=3',
            check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  assert "model.activation: saved 'relu', requested 'gelu'" in out.stderr
  assert 'seed: saved 0, requested 3' in out.stderr
  assert '--restart' in out.stderr and 'Traceback' not in out.stderr
  assert (checkpoint_names(workdir), open(
      os.path.join(workdir, 'config.json')).read()) == before


def test_saved_arrays_unlike_the_config_are_a_user_error(uninterrupted,
                                                         tmp_path):
  """Without config.json to compare with, the checkpoint's own metadata tells
  the mismatch from damage: the first differing array is named, nothing is
  renamed."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted, workdir)
  os.remove(os.path.join(workdir, 'config.json'))
  before = checkpoint_names(workdir)
  out = run(workdir, '--set=model.d_ff=96', check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'holds other arrays than this config builds' in out.stderr
  assert ("'params.decoder_0.ffn.wi.bias' is saved as float32[128] but the "
          'config builds float32[96]') in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr
  assert checkpoint_names(workdir) == before


def test_all_checkpoints_damaged_stops_until_restart(uninterrupted, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(uninterrupted, workdir)
  for name in checkpoint_names(workdir):
    os.remove(os.path.join(workdir, 'checkpoints', name, 'state', '_METADATA'))
  out = run(workdir, check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'Every checkpoint in' in out.stderr and 'is damaged' in out.stderr
  assert 'Starting a new run' not in out.stdout
  assert all(n.endswith('.damaged') for n in checkpoint_names(workdir))
  again = run(workdir, check=False)  # nothing listed now: still refused
  assert again.returncode == 2 and 'only damaged checkpoints' in again.stderr
  restarted = run(workdir, '--restart', '--set=train.steps=4')
  assert 'Starting a new run' in restarted.stdout
  previous = os.listdir(os.path.join(workdir, 'previous'))
  assert len(previous) == 1
  kept = os.listdir(os.path.join(workdir, 'previous', previous[0],
                                 'checkpoints'))
  assert len(kept) == 5 and all(n.endswith('.damaged') for n in kept)
  assert checkpoint_names(workdir) == ['4']
  assert sorted(logged_losses(workdir)) == [1, 2, 3, 4]


# A tiny run trained with settings of its own: one of what it learnt
# (model.d_ff; the experiment's config cannot read its checkpoints) and of
# how it decodes (greedy, shorter outputs). Checkpoints at steps 2 and 4.
OWN = ['--experiment=tiny', '--set=model.d_ff=96', '--set=train.steps=4',
       '--set=train.checkpoint_every=2', '--set=train.log_every=2',
       '--set=eval.beam_size=1', '--set=eval.max_extra_length=5',
       '--set=eval.final=false', '--set=eval.every=0']


@pytest.fixture(scope='module')
def own_settings(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('own_settings'))
  run(workdir, base=OWN)
  return workdir


def evaluation(workdir, name) -> dict:
  """An evaluation's numbers, without its duration."""
  with open(os.path.join(workdir, 'eval', name + '.json')) as f:
    metrics = json.load(f)
  del metrics['seconds']
  return metrics


def test_evaluate_takes_the_runs_settings_without_repeating_them(
    own_settings):
  """No --experiment (the default is another experiment) and no --set: the
  run's config.json; the same numbers as with the training command's
  flags repeated."""
  with open(os.path.join(own_settings, 'experiment.txt')) as f:
    assert f.read() == 'tiny\n'
  bare = run(own_settings, '--mode=evaluate', '--split=valid', base=[])
  assert (f"Using the run's settings from {own_settings}/config.json "
          '(experiment tiny).') in bare.stderr, bare.stderr[-2000:]
  assert 'Using the last checkpoint (step 4).' in bare.stderr
  got = evaluation(own_settings, 'valid_step4_beam1')  # beam 1, as trained
  repeated = run(own_settings, '--mode=evaluate', '--split=valid', base=OWN)
  assert repeated.stdout == bare.stdout
  assert evaluation(own_settings, 'valid_step4_beam1') == got
  assert got['examples'] == 500 and got['checkpoint_steps'] == [4]


def test_translate_takes_the_runs_settings_without_repeating_them(
    own_settings, tmp_path):
  sentences = tmp_path / 'sentences.txt'
  sentences.write_text('a b c d\n\ne f g\n', encoding='utf-8')
  translate = ['--mode=translate', f'--input={sentences}']
  bare, repeated = launching.run_all([
      (launch_args(own_settings, *translate, base=[]), 1),
      (launch_args(own_settings, *translate, base=OWN), 1)])
  assert bare.returncode == repeated.returncode == 0, bare.stderr[-2000:]
  assert len(bare.stdout.split('\n')) == 4 and bare.stdout.split('\n')[1] == ''
  assert bare.stdout == repeated.stdout


def test_after_training_set_and_checkpoint_apply(own_settings):
  out = run(own_settings, '--mode=evaluate', '--split=valid',
            '--set=eval.beam_size=2', '--checkpoint=2', base=[])
  assert (f"Using the run's settings from {own_settings}/config.json "
          '(experiment tiny; --set eval.beam_size=2).') in out.stderr
  assert 'Using the checkpoint at step 2.' in out.stderr
  metrics = evaluation(own_settings, 'valid_step2_beam2')
  assert metrics['checkpoint_steps'] == [2]
  assert 'valid split, checkpoint 2, beam 2' in out.stdout


OWN_ERRORS = [
    (['--mode=evaluate', '--set=model.d_model=32'],
     '--set=model.d_model=32: the run in {workdir} was trained with '
     'model.d_model=64, and training fixed it'),
    (['--mode=translate', '--set=seed=3', '--set=model.dropout_rate=0.2'],
     'was trained with model.dropout_rate=0.1, seed=0, and training fixed '
     'them'),
    (['--mode=evaluate', '--experiment=tiny_lm'],
     '--experiment=tiny_lm: the run in {workdir} was trained by experiment '
     'tiny'),
    (['--mode=evaluate', '--checkpoint=7'],
     '--checkpoint=7: {workdir} has checkpoints at steps [2, 4]'),
    (['--mode=evaluate', '--checkpoint=best'], 'keeps no best checkpoint'),
]


@pytest.fixture(scope='module')
def own_error_outputs(own_settings):
  return run_cases(OWN_ERRORS, [own_settings] * len(OWN_ERRORS), base=[])


@pytest.mark.parametrize('args,message', OWN_ERRORS)
def test_after_training_errors_are_one_paragraph(own_settings,
                                                 own_error_outputs, args,
                                                 message):
  out = own_error_outputs[tuple(args)]
  assert out.returncode == 2, out.stderr[-2000:]
  assert message.format(workdir=own_settings) in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr + out.stdout
