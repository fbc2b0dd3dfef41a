"""Shared test settings: small models, so that the whole suite stays fast."""

import glob
import os
import tempfile

import jax
import pytest
from absl import flags

from scripts import launching
from transformer.config import ModelConfig

# XLA reads XLA_FLAGS when its CPU backend starts, on the first use of a
# device, after this: compile as every test process does (launching.py).
if launching.FAST_COMPILE_FLAGS not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' +
                             launching.FAST_COMPILE_FLAGS).strip()

# Tests compare float32 results against float64 NumPy references.
jax.config.update('jax_default_matmul_precision', 'highest')
# grain's worker processes read absl flags, which absl.app parses in
# launch.py; here their defaults are what the tests want.
flags.FLAGS.mark_as_parsed()

# The longest files first, as measured (pytest --durations=0, alone): the
# workers (setup.cfg: --dist loadfile --no-loadscope-reorder) take whole
# files in this order, so the short files come last and fill the gaps, and
# neither worker is left alone with a long file at the end. Other files
# follow in pytest's order. pytest-xdist's own order (most tests first)
# would put the long end-to-end files, which hold few tests, last.
LONGEST_FIRST = (
    'test_launch.py', 'test_benchmark.py', 'test_launch_runs.py',
    'test_lm_launch.py', 'test_export.py', 'test_masked_lm.py',
    'test_warm_start.py', 'test_train.py', 'test_launch_classification.py',
    'test_decode.py', 'test_end_to_end_eval.py', 'test_allocator.py',
    'test_remat_scan.py', 'test_mesh.py', 'test_model.py', 'test_notebook.py',
    'test_visualize.py', 'test_language_model.py', 'test_classification.py',
    'test_evaluate.py', 'test_huggingface.py', 'test_study.py',
    'test_budget_runs.py')


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


def _tfds_temp_dirs() -> set[str]:
  return set(glob.glob(os.path.join(tempfile.gettempdir(), 'tmp*tfds')))


@pytest.fixture(scope='session', autouse=True)
def remove_tfds_temp_dirs():
  """TFDS's DatasetInfo.initialize_from_bucket makes an empty temporary
  directory (mkdtemp('tfds')) for every builder it cannot find prepared
  data for, and never removes it (tensorflow-datasets 4.9): the mocked
  TFDS tests would leave hundreds in /tmp. Remove the empty ones this
  session made."""
  before = _tfds_temp_dirs()
  yield
  for path in _tfds_temp_dirs() - before:
    try:
      os.rmdir(path)  # only if empty
    except OSError:
      pass


TINY_MODEL = ModelConfig(vocab_size=37, d_model=32, d_ff=64, num_heads=4,
                         num_encoder_layers=2, num_decoder_layers=2,
                         dropout_rate=0.1, max_length=64)


@pytest.fixture(scope='session')
def tiny_model_config() -> ModelConfig:
  return TINY_MODEL


@pytest.fixture(scope='session')
def compilation_cache_dir(tmp_path_factory) -> str:
  """One persistent JAX compilation cache for the session's launch.py
  processes (tests/scripts/launching.py), empty at the start."""
  return str(tmp_path_factory.mktemp('jax_compilation_cache'))


@pytest.fixture(scope='module')
def shared_compilation_cache(compilation_cache_dir):
  """The module's launch.py processes use the session's compilation cache;
  other modules' processes and this process's JAX are left as they are."""
  with pytest.MonkeyPatch.context() as patch:
    for name, value in launching.cache_environment(
        compilation_cache_dir).items():
      patch.setenv(name, value)
    yield compilation_cache_dir
