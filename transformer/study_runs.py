"""The runs of a study as processes: where each run stands (from its
workdir's metrics.jsonl and test evaluations) and running their steps P at
a time, each process pinned to its own cores, passing SIGINT/SIGTERM on.

`transformer/study.py` defines the grid and calls `execute` with the runs
(anything with `.workdir` and `.describe()`) and the launch.py arguments of
each step.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import glob
import json
import os
import shlex
import signal
import subprocess
import time
from typing import Any, Callable, Sequence

LOG_FILE = 'log.txt'  # each run's stdout and stderr, in its workdir
# The stop reasons (metrics.jsonl) of a run that trained as far as it will.
FINISHED = ('done', 'early_stop', 'time_limit')
POLL_S = 0.2  # how often the running processes are looked at


# ---------------------------------------------------------------------------
# Where a run stands.
# ---------------------------------------------------------------------------


def stop_records(workdir: str) -> list[dict[str, Any]]:
  """The {"kind": "stop", ...} records of WORKDIR/metrics.jsonl, in order
  (one per training session); lines that are not JSON are passed over."""
  return [r for r in _records(workdir) if r.get('kind') == 'stop']


def _records(workdir: str) -> list[dict[str, Any]]:
  records = []
  try:
    with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:  # cut off by a kill
          continue
        if isinstance(record, dict):
          records.append(record)
  except FileNotFoundError:
    pass
  return records


def trained(workdir: str) -> bool:
  """Whether metrics.jsonl ends with a stop record of a finished run."""
  records = _records(workdir)
  return bool(records) and records[-1].get('kind') == 'stop' and (
      records[-1].get('stop_reason') in FINISHED)


def test_evaluation(workdir: str) -> str | None:
  """The newest WORKDIR/eval/test_step*.json (what the evaluators write:
  test_stepN[_avgK][_beamB].json), by modification time then name."""
  paths = glob.glob(os.path.join(glob.escape(workdir), 'eval',
                                 'test_step*.json'))
  if not paths:
    return None
  return max(paths, key=lambda p: (os.path.getmtime(p), p))


def next_step(workdir: str) -> str | None:
  """What the run needs: 'train' (start, or resume from its checkpoint),
  'evaluate' (trained, no test evaluation yet) or None (finished)."""
  if not trained(workdir):
    return 'train'
  return None if test_evaluation(workdir) else 'evaluate'


# ---------------------------------------------------------------------------
# Running: P processes at a time, each on its own cores.
# ---------------------------------------------------------------------------


def cpu_slots(parallel: int, cpus: Sequence[int]) -> list[tuple[int, ...]]:
  """`parallel` disjoint sets of `cpus`, as even as can be; with more runs
  than cores, one core each, shared round-robin."""
  cpus = sorted(cpus)
  if parallel >= len(cpus):
    return [(cpus[i % len(cpus)],) for i in range(parallel)]
  size, extra = divmod(len(cpus), parallel)
  slots, start = [], 0
  for i in range(parallel):
    end = start + size + (1 if i < extra else 0)
    slots.append(tuple(cpus[start:end]))
    start = end
  return slots


def slot_environment(environ: dict[str, str], cores: int,
                     parallel: int) -> dict[str, str]:
  """The environment of a run that shares the machine with parallel - 1
  others and has `cores` cores (pinned by `_pin`).

  XLA:CPU sizes its thread pools from the cores the process may run on
  (its affinity mask), so the pinning is what limits it; with one core,
  --xla_cpu_multi_thread_eigen=false also keeps Eigen's matmuls on one
  thread. (intra_op_parallelism_threads is an option of XLA's client API,
  not a flag XLA_FLAGS parses, so it is not set.) BLAS and OpenMP in
  NumPy/scikit-learn get the same count, and on an accelerator each
  process preallocates its share of the device memory.
  """
  env = dict(environ, PYTHONUNBUFFERED='1')
  if parallel == 1:
    return env  # the whole machine, as a run of its own
  for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    env.setdefault(name, str(cores))
  xla_flags = env.get('XLA_FLAGS', '')
  if cores == 1 and 'xla_cpu_multi_thread_eigen' not in xla_flags:
    env['XLA_FLAGS'] = (
        xla_flags + ' --xla_cpu_multi_thread_eigen=false').strip()
  env.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', f'{0.75 / parallel:.3f}')
  return env


def _pin(pid: int, cpus: tuple[int, ...]) -> None:
  """Restricts the new process to `cpus`, before it starts any thread
  (Python takes far longer to import JAX than this call); its threads and
  processes inherit the mask. Where the platform cannot, nothing."""
  if hasattr(os, 'sched_setaffinity'):
    try:
      os.sched_setaffinity(pid, cpus)
    except (OSError, ValueError):  # already gone, or a CPU not allowed
      pass


def available_cpus() -> list[int]:
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


@dataclasses.dataclass
class _Active:
  """A running step of a run."""
  run: Any  # study.Run
  step: str
  slot: tuple[int, ...]
  process: subprocess.Popen
  log: Any
  started: float


class _Signals:
  """While open: SIGINT and SIGTERM end the study after its running steps
  and are passed on to them (each saves a checkpoint and exits, as on its
  own; a second signal ends them at once). The steps run in their own
  sessions, so a Ctrl-C at the terminal reaches them only through here,
  once."""

  def __init__(self, active: list[_Active], say: Callable[[str], None]):
    self.received: int | None = None
    self._active, self._say = active, say
    self._previous = {s: signal.signal(s, self._handle)
                      for s in (signal.SIGINT, signal.SIGTERM)}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.received is None:
      self._say(f'Received {signal.Signals(signum).name}: passing it on to '
                'the running steps (each saves a checkpoint) and starting '
                'no more.')
    self.received = signum
    for active in self._active:
      if active.process.poll() is None:
        active.process.send_signal(signum)

  def close(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def execute(all_runs: Sequence[Any], args: Callable[[Any, str], list[str]],
            launcher: Sequence[str], parallel: int,
            say: Callable[[str], None]) -> tuple[dict[Any, str], int | None]:
  """Brings every run to finished: trains (or resumes) it and evaluates it
  on the test split, `parallel` processes at a time, each pinned to its
  own cores. Returns ({run: '' if finished, else why not}, the signal
  that stopped the study or None). A step is tried once per call: a run
  whose step fails is reported and left for the next call."""
  slots = cpu_slots(parallel, available_cpus())
  free, active = list(slots), []
  pending = collections.deque(all_runs)
  tried: dict[Any, set[str]] = collections.defaultdict(set)
  outcome: dict[Any, str] = {}
  signals = _Signals(active, say)
  try:
    while active or (pending and signals.received is None):
      while pending and free and signals.received is None:
        run = pending.popleft()
        step = next_step(run.workdir)
        if step is None:
          outcome[run] = ''
          if not tried[run]:
            say(f'skip     {run.describe()}: finished before '
                f'({os.path.basename(test_evaluation(run.workdir))})')
          continue
        if step in tried[run]:
          outcome[run] = (f'its {step} step ended without a test evaluation; '
                          f'see {os.path.join(run.workdir, LOG_FILE)}')
          say(f'FAILED   {run.describe()}: {outcome[run]}')
          continue
        tried[run].add(step)
        active.append(_start(args(run, step), run, step, free.pop(0), launcher,
                             parallel, say))
      time.sleep(POLL_S)
      for done in [a for a in active if a.process.poll() is not None]:
        active.remove(done)
        done.log.close()
        free.append(done.slot)
        _finished_step(done, pending, outcome, signals.received, say)
  finally:
    signals.close()
  for run in all_runs:
    outcome.setdefault(run, 'not run: the study was stopped')
  return outcome, signals.received


def _start(arguments: list[str], run: Any, step: str,
           slot: tuple[int, ...], launcher: Sequence[str], parallel: int,
           say: Callable[[str], None]) -> _Active:
  """Starts one step of `run` in its own session, its output appended to
  WORKDIR/log.txt."""
  os.makedirs(run.workdir, exist_ok=True)
  command = [*launcher, *arguments]
  log_path = os.path.join(run.workdir, LOG_FILE)
  log = open(log_path, 'a', encoding='utf-8')
  stamp = datetime.datetime.now().isoformat(timespec='seconds')
  log.write(f'\n=== {stamp} study step {step}: {shlex.join(command)}\n')
  log.flush()
  verb = ('resume  ' if step == 'train' and os.path.exists(
      os.path.join(run.workdir, 'metrics.jsonl')) else f'{step:<8s}')
  cores = f' on cores {",".join(map(str, slot))}' if parallel > 1 else ''
  say(f'{verb} {run.describe()}{cores} (log: {log_path})')
  process = subprocess.Popen(
      command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
      env=slot_environment(dict(os.environ), len(slot), parallel),
      start_new_session=True)
  if parallel > 1:
    _pin(process.pid, slot)
  return _Active(run, step, slot, process, log, time.time())


def _finished_step(done: _Active, pending: collections.deque,
                   outcome: dict[Any, str], stopped: int | None,
                   say: Callable[[str], None]) -> None:
  """After a step's process ended: the run's next step goes first in line
  (a step that succeeded), or the run is reported as failed."""
  seconds = time.time() - done.started
  code = done.process.returncode
  log_path = os.path.join(done.run.workdir, LOG_FILE)
  if code == 0:
    if stopped is None:
      pending.appendleft(done.run)  # its evaluation, or finished
    say(f'done     {done.run.describe()}: {done.step} in {seconds:.1f} s')
    return
  why = (f'stopped by {signal.Signals(-code).name}' if code < 0 else
         f'exit status {code}')
  outcome[done.run] = f'{done.step} failed ({why}); see {log_path}'
  if stopped is not None:
    outcome[done.run] = ('interrupted: the study was stopped; run it again '
                         'to resume')
  say(f'{"stopped " if stopped else "FAILED  "} {done.run.describe()}: '
      f'{outcome[done.run]}')
