"""launch.py in real processes, for the end-to-end tests.

The processes of one test module share a persistent JAX compilation cache
(`shared_compilation_cache`, set up by tests/conftest.py): tiny's train
step, its initialisation and its beam search are the same programs in most
of them, so XLA compiles each once per session instead of once per process.
XLA's output for a program does not depend on whether it came from the
cache, so the runs compute exactly what they would without it.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TIMEOUT_S = 600

# What `shared_compilation_cache` sets for a module's processes. Every
# program is cached, the small ones too (JAX's default: those that took 1 s).
CACHE_VARIABLES = ('JAX_COMPILATION_CACHE_DIR',
                   'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')


# XLA:CPU flags of every test process (conftest.py sets them for pytest's
# own): LLVM without its expensive optimisations. The test models are tiny,
# so a test spends its time compiling, not running (a quarter less CPU time
# for tests/test_model.py). Every process of the tests compiles with them,
# so what one test compares was built alike.
FAST_COMPILE_FLAGS = ('--xla_backend_optimization_level=0 '
                      '--xla_llvm_disable_expensive_passes=true')


def xla_flags(devices: int) -> str:
  """XLA_FLAGS of a test process with `devices` simulated CPU devices."""
  return (f'--xla_force_host_platform_device_count={devices} '
          f'{FAST_COMPILE_FLAGS}')


def cache_environment(directory: str) -> dict[str, str]:
  return dict(zip(CACHE_VARIABLES, (directory, '0')))


def environment(devices: int = 1, cache: bool = True) -> dict[str, str]:
  """CPU with `devices` devices. cache=False: without the shared compilation
  cache (multi-process runs: each process compiles its part of the
  collectives itself, as it does outside the tests)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1')
  env['XLA_FLAGS'] = xla_flags(devices)
  if not cache:
    for name in CACHE_VARIABLES:
      env.pop(name, None)
  return env


def start(args, devices: int = 1, cache: bool = True) -> subprocess.Popen:
  """Starts `python launch.py *args` without waiting for it."""
  return subprocess.Popen([sys.executable, 'launch.py', *args], cwd=REPO,
                          env=environment(devices, cache),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def finish(process: subprocess.Popen, check: bool = True
           ) -> subprocess.CompletedProcess:
  """Waits for a process of `start`; check: it must have succeeded."""
  stdout, stderr = process.communicate(timeout=TIMEOUT_S)
  out = subprocess.CompletedProcess(process.args, process.returncode, stdout,
                                    stderr)
  if check:
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  return out


def run_all(commands, max_running: int = 2
            ) -> list[subprocess.CompletedProcess]:
  """Runs independent launch.py commands, `max_running` at a time (most of a
  short run is Python starting and importing, one core each), in order.

  commands: (args, devices) pairs. Nothing is checked: the caller asserts
  on each CompletedProcess.
  """
  commands = list(commands)
  results: list[subprocess.CompletedProcess | None] = [None] * len(commands)
  running: list[tuple[int, subprocess.Popen]] = []
  for i, (args, devices) in enumerate(commands):
    running.append((i, start(args, devices)))
    if len(running) == max_running:
      j, process = running.pop(0)
      results[j] = finish(process, check=False)
  for j, process in running:
    results[j] = finish(process, check=False)
  return results


def run_script(name: str, devices: int = 8) -> dict:
  """Runs tests/scripts/`name` on `devices` simulated CPU devices; returns
  the JSON it prints (it must succeed and see all the devices)."""
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices), JAX_PLATFORMS='cpu',
             PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, os.path.join('tests', 'scripts', name)],
                       cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT_S)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout)
  assert result['device_count'] == devices, result['device_count']
  return result
