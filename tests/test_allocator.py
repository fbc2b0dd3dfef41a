"""launch.py restarts itself under TCMalloc where it is installed (faster CPU
steps: XLA's buffers are reused instead of page-faulted in every step), and
the benchmark reports which allocator it ran under."""

import json
import os
import subprocess
import sys

import pytest

import launch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TCMALLOC = launch.find_tcmalloc()
needs_tcmalloc = pytest.mark.skipif(
    TCMALLOC is None, reason='TCMalloc is not installed (libtcmalloc-minimal4)')


def test_restart_environment_preloads_tcmalloc_once():
  environ = {'PATH': '/bin', 'LD_PRELOAD': '/opt/libother.so'}
  restart = launch.tcmalloc_environment(environ, 'libtcmalloc_minimal.so.4')
  assert restart['LD_PRELOAD'] == 'libtcmalloc_minimal.so.4 /opt/libother.so'
  assert restart['PATH'] == '/bin'
  assert environ['LD_PRELOAD'] == '/opt/libother.so'  # not changed in place
  # The restarted process finds it preloaded and goes on: no second restart.
  assert launch.tcmalloc_environment(restart, 'libtcmalloc_minimal.so.4') is None
  # Nothing to preload, or the user preloads a TCMalloc of their own.
  assert launch.tcmalloc_environment({'PATH': '/bin'}, None) is None
  assert launch.tcmalloc_environment(
      {'LD_PRELOAD': '/usr/lib/libtcmalloc.so.4'}, 'x') is None


def without_preload() -> dict[str, str]:
  return {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}


def allocator_of_a_process(environment: dict[str, str]) -> str:
  out = subprocess.run(
      [sys.executable, '-c', 'from transformer import memory; '
       'print(memory.memory_allocator())'],
      cwd=REPO, env=environment, capture_output=True, text=True, timeout=120,
      check=True)
  return out.stdout.strip()


@needs_tcmalloc
def test_benchmark_names_the_allocator_that_is_loaded():
  plain = without_preload()
  assert allocator_of_a_process(plain) == 'system malloc'
  assert allocator_of_a_process(dict(plain, LD_PRELOAD=TCMALLOC)) == 'tcmalloc'


# Imported by every interpreter that starts with it on sys.path: appends
# the allocator that interpreter runs under to $ALLOCATOR_STARTS.
RECORD_START = """import os
with open('/proc/self/maps') as maps:
  loaded = 'tcmalloc' if 'libtcmalloc' in maps.read() else 'system malloc'
with open(os.environ['ALLOCATOR_STARTS'], 'a') as f:
  f.write(loaded + '\\n')
"""


def interpreter_starts(directory, *flag) -> list[str]:
  """The allocator of each Python start of `launch.py --experiment=nope`,
  which ends at once with a user error, after its restart (if any)."""
  directory.mkdir()
  (directory / 'sitecustomize.py').write_text(RECORD_START)
  starts = directory / 'starts.txt'
  out = subprocess.run(
      [sys.executable, 'launch.py', '--experiment=nope', *flag], cwd=REPO,
      env=dict(without_preload(), PYTHONPATH=str(directory),
               ALLOCATOR_STARTS=str(starts), JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, timeout=120)
  assert out.returncode == 2 and 'no such experiment' in out.stderr, (
      out.stderr[-3000:])
  return starts.read_text().splitlines()


@needs_tcmalloc
def test_launch_restarts_under_tcmalloc_unless_told_not_to(tmp_path):
  # Started without it, then replaced by the same command under TCMalloc.
  assert interpreter_starts(tmp_path / 'default') == ['system malloc',
                                                      'tcmalloc']
  assert interpreter_starts(tmp_path / 'off', '--notcmalloc') == [
      'system malloc']


@needs_tcmalloc
@pytest.mark.slow
def test_launch_benchmark_reports_tcmalloc(tmp_path):
  """End to end: the restarted run's benchmark names TCMalloc. (Without it,
  'system malloc': test_benchmark_names_the_allocator_that_is_loaded.)"""
  environment = dict(without_preload(), JAX_PLATFORMS='cpu', XLA_FLAGS='')
  out = subprocess.run(
      [sys.executable, 'launch.py', '--experiment=tiny', '--mode=benchmark',
       f'--workdir={tmp_path}'], cwd=REPO, env=environment,
      capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / 'benchmark.json') as f:
    assert json.load(f)['allocator'] == 'tcmalloc'
  assert ', tcmalloc\n' in out.stdout  # the table's device line
