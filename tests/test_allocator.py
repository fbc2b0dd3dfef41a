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


def allocator_of_a_process(environment: dict[str, str]) -> str:
  out = subprocess.run(
      [sys.executable, '-c', 'from transformer import benchmark; '
       'print(benchmark.memory_allocator())'],
      cwd=REPO, env=environment, capture_output=True, text=True, timeout=120,
      check=True)
  return out.stdout.strip()


@needs_tcmalloc
def test_benchmark_names_the_allocator_that_is_loaded():
  plain = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
  assert allocator_of_a_process(plain) == 'system malloc'
  assert allocator_of_a_process(dict(plain, LD_PRELOAD=TCMALLOC)) == 'tcmalloc'


@needs_tcmalloc
@pytest.mark.slow
@pytest.mark.parametrize('flag,allocator', [([], 'tcmalloc'),
                                            (['--notcmalloc'], 'system malloc')])
def test_launch_runs_under_tcmalloc_unless_told_not_to(tmp_path, flag,
                                                       allocator):
  environment = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
  environment.update(JAX_PLATFORMS='cpu', XLA_FLAGS='')
  out = subprocess.run(
      [sys.executable, 'launch.py', '--experiment=tiny', '--mode=benchmark',
       f'--workdir={tmp_path}', *flag], cwd=REPO, env=environment,
      capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / 'benchmark.json') as f:
    assert json.load(f)['allocator'] == allocator
  assert f', {allocator}\n' in out.stdout  # the table's device line
