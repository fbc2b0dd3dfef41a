"""model.init: the GPT-2 initialisation against its formula (Radford et al.
2019, sec. 2.3; nanoGPT's _init_weights)."""

import jax
import numpy as np
import pytest

from transformer import config as config_lib
from transformer import tasks, train
from transformer.config import Config
from transformer.model import sinusoidal_positions

LM = ['task=language_model', 'data.source=toy', 'model.vocab_size=300',
      'model.d_model=128', 'model.d_ff=512', 'model.num_heads=4',
      'model.num_encoder_layers=0', 'model.num_decoder_layers=6',
      'model.positions=learned']


def init_params(*overrides):
  config = config_lib.override_all(Config(), LM + list(overrides))
  task = tasks.for_benchmark(config)
  return config, train.init_state(task, jax.random.PRNGKey(0)).params


def by_name(params) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(p, simple=True, separator='/'): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}


def test_gpt2_init_standard_deviations():
  _, params = init_params('model.init=gpt2')
  residual = 0.02 / np.sqrt(2 * 6)  # two residual branches per layer
  checked = 0
  for name, value in by_name(params).items():
    assert np.all(np.isfinite(value))
    if name.endswith(('bias', 'norm/scale')) or 'norm' in name:
      continue
    want = residual if name.endswith(('ffn/wo/kernel', 'out/kernel')) else 0.02
    assert np.mean(value) == pytest.approx(0.0, abs=3 * want / np.sqrt(
        value.size)), name
    assert np.std(value) == pytest.approx(want, rel=0.05), name
    checked += 1
  assert checked == 6 * 6 + 2  # q, k, v, out, wi, wo per layer; 2 embeddings


def test_gpt2_init_does_not_scale_the_embeddings():
  """The token embedding enters the residual stream as it is ('gpt2'), or
  times sqrt(d_model) ('xavier', sec. 3.4)."""
  for init, scale in (('gpt2', 1.0), ('xavier', np.sqrt(128.0))):
    config, params = init_params(f'model.init={init}',
                                 'model.num_decoder_layers=1',
                                 'model.positions=sinusoidal')
    assert config.model.init == init
    task = tasks.for_benchmark(config)
    model = task.model()
    tokens = np.array([[5, 6, 7]], np.int32)
    embedding = np.asarray(params['decoder']['embedding']['embedding'])
    positions = np.zeros((1, 3), np.int32)
    x = model.apply({'params': params}, tokens, positions,
                    method=lambda m, t, p: m.decoder._embed(
                        m.decoder.target_embedding, t, p, deterministic=True))
    want = embedding[tokens] * scale + np.asarray(
        sinusoidal_positions(positions, 128))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
