"""Checkpoint averaging, scoring and line-by-line translation."""

import collections
import math

import jax
import numpy as np
import pytest
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from transformer import tasks
from transformer import checkpoint
from transformer import train as train_lib
from transformer.checkpoint import Checkpointer
from transformer.config import EOS_ID, Config, DataConfig, EvalConfig
from transformer.tasks.translation import evaluate

from conftest import TINY_MODEL

CONFIG = Config(model=TINY_MODEL,
                data=DataConfig(eval_batch_size=4, eval_max_length=16),
                eval=EvalConfig(max_extra_length=4))
TASK = tasks.for_config(CONFIG)


def save_states(directory, states_by_step):
  checkpointer = Checkpointer(str(directory / 'checkpoints'), keep=10)
  for step, state in states_by_step.items():
    checkpointer.save(state, None, step=step)
  checkpointer.wait()
  checkpointer.close()


def state_with_seed(seed):
  return train_lib.init_state(TASK, jax.random.key(seed))


def assert_finite(tree):
  """assert_allclose treats NaN as equal to NaN: check outputs separately."""
  for leaf in jax.tree.leaves(tree):
    assert np.all(np.isfinite(np.asarray(leaf))), leaf


@pytest.fixture(scope='module')
def mesh():
  return train_lib.make_mesh(jax.devices()[:1])


def test_averaging_identical_checkpoints_gives_the_same_params(tmp_path, mesh):
  state = state_with_seed(0)
  save_states(tmp_path, {10: state, 20: state, 30: state})
  params, steps = checkpoint.restore_params(TASK, str(tmp_path), mesh,
                                          average=3)
  assert steps == [10, 20, 30]
  assert_finite(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               params, state.params)


def test_averaging_two_checkpoints_gives_their_mean(tmp_path, mesh):
  a, b, c = state_with_seed(1), state_with_seed(2), state_with_seed(3)
  save_states(tmp_path, {1: a, 2: b, 3: c})
  params, steps = checkpoint.restore_params(TASK, str(tmp_path), mesh,
                                          average=2)
  assert steps == [2, 3]  # the last two
  assert_finite(params)
  jax.tree.map(lambda got, x, y: np.testing.assert_allclose(
      got, (np.asarray(x, np.float64) + y) / 2, rtol=1e-6, atol=1e-7),
               params, b.params, c.params)
  # Up to a chosen step, and a single checkpoint unchanged.
  params, steps = checkpoint.restore_params(TASK, str(tmp_path), mesh, step=2)
  assert steps == [2]
  assert_finite(params)
  jax.tree.map(np.testing.assert_array_equal, params, b.params)
  with pytest.raises(checkpoint.NoCheckpointError, match='steps \\[1, 2, 3\\]'):
    checkpoint.restore_params(TASK, str(tmp_path), mesh, step=7)


def test_no_checkpoint_says_what_to_run(tmp_path, mesh):
  with pytest.raises(checkpoint.NoCheckpointError, match='Train first'):
    checkpoint.restore_params(TASK, str(tmp_path), mesh)


# Lower-case words without punctuation: sacreBLEU's 13a tokenizer leaves
# them as they are, so whitespace-split tokens are BLEU's tokens. Partial
# overlaps at every n-gram order up to 4, and hypotheses shorter than their
# references (25 words against 30): the brevity penalty bites.
HYPOTHESES = ['the cat sat on the mat today',
              'a dog barked at the old man',
              'we will go to the park tomorrow morning',
              'it is raining']
REFERENCES = ['the cat sat on the red mat today',
              'the dog barked loudly at the man',
              'tomorrow we will go to the park in the morning',
              'it was raining all day']


def ngrams(items, n):
  return collections.Counter(tuple(items[i:i + n])
                             for i in range(len(items) - n + 1))


def hand_bleu(hypotheses, references, max_order=4):
  """Papineni et al. (2002): the brevity penalty times the geometric mean of
  the modified (clipped) n-gram precisions, counted over the corpus."""
  matches, totals = [0] * max_order, [0] * max_order
  hyp_length = ref_length = 0
  for hyp, ref in zip(hypotheses, references):
    hyp, ref = hyp.split(), ref.split()
    hyp_length, ref_length = hyp_length + len(hyp), ref_length + len(ref)
    for n in range(1, max_order + 1):
      h, r = ngrams(hyp, n), ngrams(ref, n)
      matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
      totals[n - 1] += sum(h.values())
  assert all(matches), 'every order matches: no smoothing involved'
  precisions = [m / t for m, t in zip(matches, totals)]
  brevity = min(1.0, math.exp(1 - ref_length / hyp_length))
  return 100 * brevity * math.exp(sum(map(math.log, precisions)) / max_order)


def hand_chrf(hypotheses, references, max_order=6, beta=2.0):
  """Popovic (2015): character n-grams (spaces removed) of orders 1..6;
  precision and recall averaged over the orders, counted over the corpus,
  then F_beta with beta = 2."""
  matches, hyp_totals, ref_totals = ([0] * max_order for _ in range(3))
  for hyp, ref in zip(hypotheses, references):
    hyp, ref = hyp.replace(' ', ''), ref.replace(' ', '')
    for n in range(1, max_order + 1):
      h, r = ngrams(hyp, n), ngrams(ref, n)
      matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
      hyp_totals[n - 1] += sum(h.values())
      ref_totals[n - 1] += sum(r.values())
  precision = np.mean([m / t for m, t in zip(matches, hyp_totals)])
  recall = np.mean([m / t for m, t in zip(matches, ref_totals)])
  return 100 * (1 + beta**2) * precision * recall / (beta**2 * precision +
                                                     recall)


def test_score_matches_sacrebleu_on_a_known_case():
  refs = ['the cat sat on the mat', 'a dog barked']
  perfect = evaluate.score(refs, refs)
  assert perfect['bleu'] == pytest.approx(100.0)
  assert perfect['chrf'] == pytest.approx(100.0)
  assert 'nrefs:1' in perfect['bleu_signature']
  assert evaluate.score(['x y z', 'q'], refs)['bleu'] < 1.0


def test_score_matches_sacrebleu_and_hand_counts_on_partial_overlaps():
  tokenize = Tokenizer13a()
  for line in HYPOTHESES + REFERENCES:
    assert tokenize(line) == line
  got = evaluate.score(HYPOTHESES, REFERENCES)
  assert math.isfinite(got['bleu']) and math.isfinite(got['chrf'])
  # sacreBLEU's own functions ...
  bleu = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES])
  assert got['bleu'] == pytest.approx(bleu.score, rel=1e-12)
  assert got['bleu'] == pytest.approx(
      sacrebleu.metrics.BLEU().corpus_score(HYPOTHESES, [REFERENCES]).score,
      rel=1e-12)
  assert got['chrf'] == pytest.approx(
      sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score, rel=1e-12)
  # ... and the definitions, counted by hand: 22 of the 25 hypothesis words
  # occur in their references (all but 'a', 'old', 'is'), 30 reference words.
  assert (bleu.counts[0], bleu.totals[0]) == (22, 25)
  assert (bleu.sys_len, bleu.ref_len) == (25, 30)
  assert bleu.bp < 1.0 and 10.0 < got['bleu'] < 90.0  # not a trivial case
  assert got['bleu'] == pytest.approx(hand_bleu(HYPOTHESES, REFERENCES),
                                      rel=1e-9)
  assert 10.0 < got['chrf'] < 90.0
  assert got['chrf'] == pytest.approx(hand_chrf(HYPOTHESES, REFERENCES),
                                      rel=1e-9)
  # The signatures name what the numbers mean (sacreBLEU's defaults).
  for part in ('nrefs:1', 'case:mixed', 'tok:13a', 'smooth:exp',
               f'version:{sacrebleu.__version__}'):
    assert part in got['bleu_signature']
  for part in ('nrefs:1', 'nc:6', 'nw:0', 'space:no'):
    assert part in got['chrf_signature']
  # Order matters: sentence i is scored against reference i only.
  shuffled = evaluate.score(HYPOTHESES[::-1], REFERENCES)
  assert shuffled['bleu'] < got['bleu'] / 2


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
