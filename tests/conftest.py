"""Shared test settings: small models, so that the whole suite stays fast."""

import jax
import pytest
from absl import flags

from transformer.config import ModelConfig

# Tests compare float32 results against float64 NumPy references.
jax.config.update('jax_default_matmul_precision', 'highest')
# grain's worker processes read absl flags, which absl.app parses in
# launch.py; here their defaults are what the tests want.
flags.FLAGS.mark_as_parsed()

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
  from scripts import launching  # pylint: disable=g-import-not-at-top
  with pytest.MonkeyPatch.context() as patch:
    for name, value in launching.cache_environment(
        compilation_cache_dir).items():
      patch.setenv(name, value)
    yield compilation_cache_dir
