"""Checkpoint averaging, scoring and line-by-line translation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import evaluate
from transformer import train as train_lib
from transformer.checkpoint import Checkpointer
from transformer.config import EOS_ID, Config, DataConfig, EvalConfig

from conftest import TINY_MODEL

CONFIG = Config(model=TINY_MODEL,
                data=DataConfig(eval_batch_size=4, eval_max_length=16),
                eval=EvalConfig(max_extra_length=4))


def save_states(directory, states_by_step):
  checkpointer = Checkpointer(str(directory / 'checkpoints'), keep=10)
  for step, state in states_by_step.items():
    checkpointer.save(state, None, step=step)
  checkpointer.wait()
  checkpointer.close()


def state_with_seed(seed):
  return train_lib.init_state(CONFIG, jax.random.key(seed))


@pytest.fixture(scope='module')
def mesh():
  return train_lib.make_mesh(jax.devices()[:1])


def test_averaging_identical_checkpoints_gives_the_same_params(tmp_path, mesh):
  state = state_with_seed(0)
  save_states(tmp_path, {10: state, 20: state, 30: state})
  params, steps = evaluate.restore_params(CONFIG, str(tmp_path), mesh,
                                          average=3)
  assert steps == [10, 20, 30]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               params, state.params)


def test_averaging_two_checkpoints_gives_their_mean(tmp_path, mesh):
  a, b, c = state_with_seed(1), state_with_seed(2), state_with_seed(3)
  save_states(tmp_path, {1: a, 2: b, 3: c})
  params, steps = evaluate.restore_params(CONFIG, str(tmp_path), mesh,
                                          average=2)
  assert steps == [2, 3]  # the last two
  jax.tree.map(lambda got, x, y: np.testing.assert_allclose(
      got, (np.asarray(x, np.float64) + y) / 2, rtol=1e-6, atol=1e-7),
               params, b.params, c.params)
  # Up to a chosen step, and a single checkpoint unchanged.
  params, steps = evaluate.restore_params(CONFIG, str(tmp_path), mesh, step=2)
  assert steps == [2]
  jax.tree.map(np.testing.assert_array_equal, params, b.params)
  with pytest.raises(evaluate.NoCheckpointError, match='steps \\[1, 2, 3\\]'):
    evaluate.restore_params(CONFIG, str(tmp_path), mesh, step=7)


def test_no_checkpoint_says_what_to_run(tmp_path, mesh):
  with pytest.raises(evaluate.NoCheckpointError, match='Train first'):
    evaluate.restore_params(CONFIG, str(tmp_path), mesh)


def test_score_matches_sacrebleu_on_a_known_case():
  refs = ['the cat sat on the mat', 'a dog barked']
  perfect = evaluate.score(refs, refs)
  assert perfect['bleu'] == pytest.approx(100.0)
  assert perfect['chrf'] == pytest.approx(100.0)
  assert 'nrefs:1' in perfect['bleu_signature']
  assert evaluate.score(['x y z', 'q'], refs)['bleu'] < 1.0


class CharTokenizer:
  """Characters as ids 4.., enough to drive translate_lines."""

  def encode(self, text):
    return [4 + (ord(ch) % 30) for ch in text]

  def decode(self, ids):
    out = []
    for i in ids:
      if i == EOS_ID:
        break
      out.append(chr(ord('a') + (i - 4) % 26) if i >= 4 else '')
    return ''.join(out)


def test_translate_lines_keeps_order_and_empty_lines(mesh):
  params = state_with_seed(4).params
  lines = ['abc\n', '\n', 'hello there\n', '   \n', 'x' * 40 + '\n', 'de\n',
           'fgh\n']
  warnings = []
  got = list(evaluate.translate_lines(params, CONFIG, CharTokenizer(), lines,
                                      mesh, warn=warnings.append))
  assert len(got) == len(lines)
  assert got[1] == '' and got[3] == ''
  assert len(warnings) == 1 and 'line 5' in warnings[0]
  # Each non-empty line translates as it would alone (batching changes
  # nothing).
  for i in (0, 2, 5, 6):
    alone = list(evaluate.translate_lines(params, CONFIG, CharTokenizer(),
                                          [lines[i]], mesh))
    assert alone == [got[i]]
