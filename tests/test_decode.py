"""Greedy and beam search, each checked against an independent reference.

The references run the full (uncached) forward pass over the whole prefix and
score or extend sequences in NumPy; the decoders use the key/value cache inside
jitted while loops.
"""

import dataclasses
import functools
import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer.tasks.translation import decode
from transformer.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID, ModelConfig
from transformer.model import Transformer

from conftest import TINY_MODEL
from scripts import launching

# The smallest vocabulary: PAD, UNK, BOS, EOS and two real tokens.
MICRO_MODEL = ModelConfig(vocab_size=6, d_model=16, d_ff=32, num_heads=2,
                          num_encoder_layers=1, num_decoder_layers=1,
                          max_length=16)
# Tokens a decoder may emit before EOS (PAD and BOS are never generated).
MICRO_TOKENS = (UNK_ID, 4, 5)
# Most tests decode [4, WIDTH] batches with EXTRA more tokens: one compile.
WIDTH, EXTRA = 8, 6


@functools.lru_cache(maxsize=None)
def params_for(config: ModelConfig, seed: int = 0):
  tokens = jnp.ones((1, 4), jnp.int32)
  return Transformer(config).init(jax.random.key(seed), tokens,
                                  tokens)['params']


@functools.partial(jax.jit, static_argnames=('config',))
def log_probs(config, params, inputs, targets):
  """Full teacher-forced pass: [B, T, V] log P(targets[:, t] | prefix)."""
  logits = Transformer(config).apply({'params': params}, inputs, targets)
  return jax.nn.log_softmax(logits)


def sentences(seed, lengths, width, vocab=TINY_MODEL.vocab_size):
  """[len(lengths), width] random source ids, PAD after each length."""
  rng = np.random.default_rng(seed)
  rows = np.full((len(lengths), width), PAD_ID, np.int32)
  for row, n in zip(rows, lengths):
    row[:n] = rng.integers(4, vocab, n)
  return jnp.asarray(rows)


def assert_finite(*arrays):
  """assert_allclose treats NaN as equal to NaN: check outputs separately."""
  for array in arrays:
    assert np.all(np.isfinite(np.asarray(array, np.float64))), array


def gnmt_penalty(n, alpha):
  return ((5.0 + n) / 6.0) ** alpha


def score(config, params, source, outputs, alpha):
  """Reference score of each output: sum of the log-probabilities of its
  tokens up to and including EOS (in float64), / ((5 + |Y|) / 6) ** alpha."""
  outputs = np.asarray(outputs)
  rows = -(-len(outputs) // 128) * 128  # few distinct shapes: few compiles
  padded = np.pad(outputs, [(0, rows - len(outputs)), (0, 0)])
  inputs = jnp.repeat(jnp.asarray(source)[None], rows, axis=0)
  lp = np.asarray(log_probs(config, params, inputs, jnp.asarray(padded)),
                  np.float64)
  assert_finite(lp)
  scores = []
  for row, tokens in zip(lp, outputs):
    n = list(tokens).index(EOS_ID) + 1
    scores.append(row[np.arange(n), tokens[:n]].sum() / gnmt_penalty(n, alpha))
  return np.array(scores)


def check_well_formed(tokens, inputs, max_extra_length):
  """Each output: allowed tokens, one EOS within its limit, PAD after it."""
  tokens, inputs = np.asarray(tokens), np.asarray(inputs)
  for row, source in zip(tokens, inputs):
    limit = np.sum(source != PAD_ID) + max_extra_length
    eos = np.flatnonzero(row == EOS_ID)
    assert len(eos) == 1, row
    assert eos[0] < limit, (row, limit)
    assert np.all(row[eos[0] + 1:] == PAD_ID), row
    assert not np.isin(row[:eos[0]], [PAD_ID, BOS_ID]).any(), row


# ---------------------------------------------------------------------------
# 1. Beam size 1 is greedy search.
# ---------------------------------------------------------------------------


def test_beam_size_one_equals_greedy():
  params = params_for(TINY_MODEL)
  inputs = sentences(0, [5, 2, 8, 1], WIDTH)
  greedy = decode.greedy_decode(params, TINY_MODEL, inputs,
                                max_extra_length=EXTRA)
  # alpha = 0: hypotheses rank by log P alone, as greedy search's steps do.
  beams, scores = decode.beam_search(params, TINY_MODEL, inputs, beam_size=1,
                                     length_penalty=0.0,
                                     max_extra_length=EXTRA)
  assert greedy.shape == (4, 14) and beams.shape == (4, 1, 14)
  assert_finite(scores)
  np.testing.assert_array_equal(beams[:, 0], greedy)
  check_well_formed(greedy, inputs, EXTRA)
  # Its score is the log-probability of the greedy output.
  for source, tokens, got in zip(inputs, greedy, scores[:, 0]):
    want = score(TINY_MODEL, params, source, tokens[None], alpha=0.0)
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------
# 2. A beam wide enough to hold every output finds them all, best first.
# ---------------------------------------------------------------------------


def all_outputs(limit, length):
  """Every output of at most `limit` tokens, the last of them EOS.

  An output of `limit` tokens ends with the EOS the decoders force there; it
  is scored with its model log-probability, like any other EOS.
  """
  outputs = []
  for n in range(limit):
    for prefix in itertools.product(MICRO_TOKENS, repeat=n):
      row = list(prefix) + [EOS_ID]
      outputs.append(row + [PAD_ID] * (length - len(row)))
  return np.array(outputs, np.int32)


@pytest.mark.parametrize('alpha', [0.0, 0.6, 1.5])
def test_wide_beam_equals_exhaustive_search(alpha):
  params = params_for(MICRO_MODEL, seed=1)
  # One-token and two-token sources, 3 extra tokens: outputs of at most 4 and
  # 5 tokens, i.e. 1 + 3 + 9 + 27 = 40 and 40 + 81 = 121 of them.
  inputs = jnp.array([[4, PAD_ID], [5, 4]], jnp.int32)
  beam = 121
  seqs, scores = decode.beam_search(params, MICRO_MODEL, inputs,
                                    beam_size=beam, length_penalty=alpha,
                                    max_extra_length=3)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  for b, limit in enumerate([4, 5]):
    outputs = all_outputs(limit, seqs.shape[2])
    want = np.sort(score(MICRO_MODEL, params, inputs[b], outputs, alpha))[::-1]
    assert_finite(want)
    found = np.isfinite(scores[b])
    assert found.sum() == len(outputs) and found[:len(outputs)].all()
    # All outputs, best first, with the reference's scores ...
    np.testing.assert_allclose(scores[b, found], want, rtol=1e-5, atol=1e-4)
    assert len({tuple(s) for s in seqs[b, found]}) == len(outputs)
    check_well_formed(seqs[b, found], np.repeat(inputs[b:b + 1], found.sum(),
                                                0), 3)
    np.testing.assert_allclose(
        score(MICRO_MODEL, params, inputs[b], seqs[b, found], alpha),
        scores[b, found], rtol=1e-5, atol=1e-4)
    # ... and empty slots after them.
    assert np.all(seqs[b, ~found] == PAD_ID)

  # A narrow beam (with early stopping) finds what the same search run on
  # the full forward pass finds, with true scores.
  seqs, scores = decode.beam_search(params, MICRO_MODEL, inputs, beam_size=2,
                                    length_penalty=alpha, max_extra_length=3)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  assert_finite(scores)
  for b, limit in enumerate([4, 5]):
    want_seqs, want_scores = naive_beam_search(
        MICRO_MODEL, params, inputs[b], 2, alpha, 3, seqs.shape[2])
    np.testing.assert_array_equal(seqs[b], want_seqs)
    np.testing.assert_allclose(scores[b], want_scores, rtol=1e-5, atol=1e-4)
    got = score(MICRO_MODEL, params, inputs[b], seqs[b], alpha)
    np.testing.assert_allclose(got, scores[b], rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(scores[b]) <= 0)
    # Its best is one of the outputs the exhaustive search ranked, with the
    # same score, and at most the best of them. (Here the narrow beam misses
    # the best output, [EOS]: at step 0 EOS is the third candidate, outside
    # the first 2, so it never finishes; finishing among all 2 * beam
    # candidates, as tensor2tensor does, would have found it.)
    outputs = all_outputs(limit, seqs.shape[2])
    exhaustive = score(MICRO_MODEL, params, inputs[b], outputs, alpha)
    rank = np.flatnonzero((outputs == seqs[b, 0]).all(axis=1))
    assert len(rank) == 1
    np.testing.assert_allclose(scores[b, 0], exhaustive[rank[0]], rtol=1e-5,
                               atol=1e-4)
    assert scores[b, 0] <= exhaustive.max() + 1e-4


def naive_beam_search(config, params, source, beam, alpha, max_extra_length,
                      length):
  """The search of decode's docstring on the full (uncached) forward pass,
  in float64 and Python lists, without early stopping (which must not
  change the result): extend every alive hypothesis by every allowed token,
  keep the 2 * beam best candidates by log P; those among the first `beam`
  that end in EOS join the finished ones (ranked by log P / lp), the `beam`
  best others stay alive."""
  source = np.asarray(source)
  limit = int(np.sum(source != PAD_ID)) + max_extra_length
  alive = [((), 0.0)]  # (tokens, log P)
  finished = []  # (tokens, log P / lp)
  rows = 8  # one shape for every step: one compilation
  for step in range(limit):
    prefixes = np.full((rows, length), PAD_ID, np.int32)
    for r, (tokens, _) in enumerate(alive):
      prefixes[r, :step] = tokens
    lp = np.asarray(log_probs(config, params, jnp.repeat(
        jnp.asarray(source)[None], rows, 0), jnp.asarray(prefixes)),
                    np.float64)[:, step]
    assert_finite(lp)
    allowed = [EOS_ID] if step == limit - 1 else [
        t for t in range(config.vocab_size) if t not in (PAD_ID, BOS_ID)]
    candidates = [(tokens + (t,), total + lp[r, t])
                  for r, (tokens, total) in enumerate(alive) for t in allowed]
    candidates = sorted(candidates, key=lambda c: -c[1])[:2 * beam]
    finished += [(tokens, total / gnmt_penalty(step + 1, alpha))
                 for tokens, total in candidates[:beam]
                 if tokens[-1] == EOS_ID]
    finished = sorted(finished, key=lambda c: -c[1])[:beam]
    alive = [c for c in candidates if c[0][-1] != EOS_ID][:beam]
    if not alive:
      break
  seqs = np.full((beam, length), PAD_ID, np.int32)
  scores = np.full(beam, -np.inf)
  for i, (tokens, value) in enumerate(finished):
    seqs[i, :len(tokens)], scores[i] = tokens, value
  return seqs, scores


# ---------------------------------------------------------------------------
# 3. Cached decoding equals decoding with the full forward pass.
# ---------------------------------------------------------------------------


def naive_greedy(config, params, inputs, max_extra_length):
  """Greedy search that reruns the whole prefix through the model each step."""
  inputs = np.asarray(inputs)
  batch, length = inputs.shape[0], inputs.shape[1] + max_extra_length
  limits = np.sum(inputs != PAD_ID, axis=1) + max_extra_length
  tokens = np.full((batch, length), PAD_ID, np.int32)
  done = np.zeros(batch, bool)
  for t in range(length):
    lp = np.array(log_probs(config, params, jnp.asarray(inputs),
                            jnp.asarray(tokens)))[:, t]
    assert_finite(lp)  # NaN logits would make both searches pick UNK
    lp[:, [PAD_ID, BOS_ID]] = -np.inf
    token = np.where(t >= limits - 1, EOS_ID, lp.argmax(axis=1))
    tokens[:, t] = np.where(done, PAD_ID, token)
    done |= tokens[:, t] == EOS_ID
  return tokens


# 48 steps: the self-attention cache grows from 32 positions to 48 on the way.
LONG_EXTRA = 40


def test_cached_greedy_equals_uncached():
  params = params_for(TINY_MODEL)
  inputs = sentences(1, [6, 3, 8, 1], WIDTH)
  want = naive_greedy(TINY_MODEL, params, inputs, LONG_EXTRA)
  got = decode.greedy_decode(params, TINY_MODEL, inputs,
                             max_extra_length=LONG_EXTRA)
  np.testing.assert_array_equal(got, want)
  check_well_formed(got, inputs, LONG_EXTRA)


def test_cached_beam_scores_equal_uncached():
  params = params_for(TINY_MODEL)
  inputs = sentences(2, [6, 2, 8, 1], WIDTH)
  seqs, scores = decode.beam_search(params, TINY_MODEL, inputs,
                                    max_extra_length=LONG_EXTRA)
  assert_finite(scores)
  for b in range(4):
    check_well_formed(seqs[b], np.repeat(inputs[b:b + 1], 4, 0), LONG_EXTRA)
    np.testing.assert_allclose(
        score(TINY_MODEL, params, inputs[b], seqs[b], 0.6), scores[b],
        rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------
# 4. Length limits and early stopping.
# ---------------------------------------------------------------------------


def test_outputs_stop_at_each_sentences_limit():
  params = params_for(TINY_MODEL)
  inputs = sentences(3, [2, 5, 6, 1], WIDTH)  # limits 8, 11, 12, 7; L = 14
  tokens, steps = decode._greedy_search(params, TINY_MODEL, inputs, EXTRA)
  seqs, _, beam_steps = decode._beam_search(params, TINY_MODEL, inputs, 0.6,
                                            4, EXTRA)
  assert tokens.shape == (4, 14) and seqs.shape == (4, 4, 14)
  check_well_formed(tokens, inputs, EXTRA)
  for k in range(4):
    check_well_formed(seqs[:, k], inputs, EXTRA)
  # The untrained model does not end early: EOS is forced at each limit, and
  # the loops stop at the last one, not at L.
  np.testing.assert_array_equal(np.argmax(tokens == EOS_ID, axis=1),
                                [7, 10, 11, 6])
  assert steps == 12 and beam_steps == 12


def eos_loving(config, params):
  """Parameters whose decoder output always points at EOS's embedding."""
  params = jax.tree.map(lambda x: x, params)  # a copy to edit
  eos = params['embedding']['embedding'][EOS_ID]
  last = params[f'decoder_{config.num_decoder_layers - 1}']
  last['ffn_norm']['scale'] = jnp.zeros_like(eos)  # post-LN: y = bias
  last['ffn_norm']['bias'] = 10.0 * eos / jnp.linalg.norm(eos)
  params['embedding']['embedding'] = (
      params['embedding']['embedding'].at[EOS_ID].multiply(3.0))
  return params


def test_loops_stop_once_every_sentence_is_finished():
  params = eos_loving(TINY_MODEL, params_for(TINY_MODEL))
  inputs = sentences(4, [4, 7, 2, 8], WIDTH)
  tokens, steps = decode._greedy_search(params, TINY_MODEL, inputs, EXTRA)
  expected = np.full((4, 14), PAD_ID)
  expected[:, 0] = EOS_ID
  np.testing.assert_array_equal(tokens, expected)
  assert steps == 1
  # Step 0 finishes [EOS]; step 1 finishes the k best [x, EOS] (about -30
  # nats each). With alpha = 0 the alive ones (about -60) are then beaten.
  seqs, scores, steps = decode._beam_search(params, TINY_MODEL, inputs, 0.0,
                                            4, EXTRA)
  np.testing.assert_array_equal(seqs[:, 0], expected)
  assert np.all(np.isfinite(scores)) and steps == 2
  # Also with alpha = 0.6: their best reachable score, about -60 / lp(14
  # tokens) = -30, is below the worst finished one, -30 / lp(2) = -27.
  seqs, scores, steps = decode._beam_search(params, TINY_MODEL, inputs, 0.6,
                                            4, EXTRA)
  np.testing.assert_array_equal(seqs[:, 0], expected)
  assert np.all(np.isfinite(scores)) and steps == 2


# ---------------------------------------------------------------------------
# 5. Padding and batch-mates do not change a sentence's output.
# ---------------------------------------------------------------------------


def test_sentence_alone_equals_sentence_in_padded_batch():
  params = params_for(TINY_MODEL)
  alone = sentences(5, [4], 4)
  batch = jnp.concatenate([sentences(6, [8], WIDTH),
                           jnp.pad(alone, [(0, 0), (0, WIDTH - 4)]),
                           sentences(7, [2, 5], WIDTH)])
  n = 4 + EXTRA  # the sentence's output buffer when alone
  greedy_alone = decode.greedy_decode(params, TINY_MODEL, alone,
                                      max_extra_length=EXTRA)
  greedy_batch = decode.greedy_decode(params, TINY_MODEL, batch,
                                      max_extra_length=EXTRA)
  np.testing.assert_array_equal(greedy_batch[1, :n], greedy_alone[0])
  assert np.all(greedy_batch[1, n:] == PAD_ID)

  seqs_alone, scores_alone = decode.beam_search(params, TINY_MODEL, alone,
                                                max_extra_length=EXTRA)
  seqs_batch, scores_batch = decode.beam_search(params, TINY_MODEL, batch,
                                                max_extra_length=EXTRA)
  np.testing.assert_array_equal(seqs_batch[1, :, :n], seqs_alone[0])
  assert np.all(seqs_batch[1, :, n:] == PAD_ID)
  assert_finite(scores_batch, scores_alone)
  np.testing.assert_allclose(scores_batch[1], scores_alone[0], rtol=1e-5,
                             atol=1e-5)


def test_batch_sharded_over_two_devices_gives_the_same_outputs(tmp_path):
  """With a batch split over 2 (CPU) devices the search is unchanged.

  With several devices, beam search reorders its cache by a batched gather
  instead of row copies; XLA needs the flag before JAX starts, hence the
  subprocess.
  """
  params = params_for(TINY_MODEL)
  inputs = sentences(8, [5, 2, 8, 3], WIDTH)
  greedy = decode.greedy_decode(params, TINY_MODEL, inputs,
                                max_extra_length=EXTRA)
  seqs, scores = decode.beam_search(params, TINY_MODEL, inputs,
                                    max_extra_length=EXTRA)
  np.savez(tmp_path / 'inputs.npz', inputs=inputs)
  script = textwrap.dedent(f"""
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      import test_decode as t
      from transformer.tasks.translation import decode
      assert jax.device_count() == 2
      mesh = Mesh(np.array(jax.devices()), ('data',))
      inputs = jax.device_put(np.load({str(tmp_path / 'inputs.npz')!r})[
          'inputs'], NamedSharding(mesh, P('data')))
      params = t.params_for(t.TINY_MODEL)
      greedy = decode.greedy_decode(params, t.TINY_MODEL, inputs,
                                    max_extra_length=t.EXTRA)
      seqs, scores = decode.beam_search(params, t.TINY_MODEL, inputs,
                                        max_extra_length=t.EXTRA)
      assert seqs.sharding.spec[0] == 'data', seqs.sharding
      np.savez({str(tmp_path / 'out.npz')!r}, greedy=greedy, seqs=seqs,
               scores=scores)
      """)
  env = dict(os.environ, XLA_FLAGS=launching.xla_flags(2),
             JAX_PLATFORMS='cpu')
  here = os.path.dirname(__file__)
  env['PYTHONPATH'] = os.pathsep.join(
      [here, os.path.dirname(here), env.get('PYTHONPATH', '')])
  subprocess.run([sys.executable, '-c', script], env=env, check=True,
                 cwd=here)
  out = np.load(tmp_path / 'out.npz')
  assert_finite(scores, out['scores'])
  np.testing.assert_array_equal(out['greedy'], greedy)
  np.testing.assert_array_equal(out['seqs'], seqs)
  np.testing.assert_allclose(out['scores'], scores, rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_rejected():
  params = params_for(TINY_MODEL)
  inputs = sentences(9, [3, 1, 2, 8], WIDTH)
  with pytest.raises(ValueError, match='max_extra_length'):
    decode.greedy_decode(params, TINY_MODEL, inputs, max_extra_length=0)
  with pytest.raises(ValueError, match='beam_size'):
    decode.beam_search(params, TINY_MODEL, inputs, beam_size=0)
  learned = dataclasses.replace(TINY_MODEL, positions='learned', max_length=8)
  with pytest.raises(ValueError, match='max_length'):
    decode.greedy_decode(params_for(learned), learned, inputs)


@pytest.mark.parametrize('values', ['normal', 'ties', 'mostly_inf'])
def test_top_k_by_blocks_equals_lax_top_k(values):
  rng = np.random.default_rng({'normal': 0, 'ties': 1, 'mostly_inf': 2}[values])
  for n, k, block in [(8000, 8, 32), (100, 8, 16), (37, 5, 4), (9, 9, 4),
                      (6, 2, 32), (300, 12, 7)]:
    if values == 'ties':  # few distinct values: order among equals matters
      x = rng.integers(0, 3, size=(3, 4, n)).astype(np.float32)
    else:
      x = rng.normal(size=(3, 4, n)).astype(np.float32)
      if values == 'mostly_inf':
        x[rng.random(x.shape) < 0.97] = -np.inf
    want_values, want_indices = jax.lax.top_k(x, k)
    values_, indices = decode.top_k_by_blocks(jnp.asarray(x), k, block)
    assert not np.isnan(np.asarray(values_)).any()  # -inf is expected here
    np.testing.assert_array_equal(values_, want_values)
    finite = np.isfinite(np.asarray(want_values))
    np.testing.assert_array_equal(np.asarray(indices)[finite],
                                  np.asarray(want_indices)[finite])
