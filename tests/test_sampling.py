"""Tests of transformer/sampling.py: filters, greedy and sampled tokens.

References are by hand (kept sets of hand-made distributions), NumPy
float64 softmaxes, and chi-square goodness-of-fit tests of many draws.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from transformer import sampling

PROBS = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
NUM_SAMPLES = 20_000


def logits_of(probs) -> jnp.ndarray:
  return jnp.asarray(np.log(np.asarray(probs, np.float64)), jnp.float32)


def kept(filtered) -> set[int]:
  """The ids a filter kept in a [1, vocab] result; the rest must be -inf."""
  row = np.asarray(filtered)[0]
  finite = np.isfinite(row)
  assert np.all(row[~finite] == -np.inf)
  return set(np.flatnonzero(finite).tolist())


def softmax64(logits) -> np.ndarray:
  x = np.asarray(logits, np.float64)
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize('top_p, expected', [
    (0.6, {0, 1}),
    # 0.5 + 0.2 reaches 0.7 exactly; float32 may sum it to 0.6999995, which
    # TOP_P_TOLERANCE counts as reaching p.
    (0.7, {0, 1}),
    (0.71, {0, 1, 2}),
    (0.05, {0}),
    (0.85, {0, 1, 2}),
    (0.9, {0, 1, 2, 3}),
    (1.0, {0, 1, 2, 3, 4})])
def test_top_p_hand_made(top_p, expected):
  logits = logits_of(PROBS)[None]
  filtered = sampling.filter_logits(logits, top_p=top_p)
  assert filtered.dtype == jnp.float32
  assert kept(filtered) == expected
  ids = sorted(expected)
  assert np.all(np.isfinite(np.asarray(filtered)[0, ids]))
  np.testing.assert_array_equal(np.asarray(filtered)[0, ids],
                                np.asarray(logits)[0, ids])
  # The same distribution over shuffled ids: kept by probability, not id.
  perm = np.random.default_rng(0).permutation(len(PROBS))
  shuffled = sampling.filter_logits(logits_of(PROBS[perm])[None], top_p=top_p)
  assert kept(shuffled) == {int(np.flatnonzero(perm == i)[0]) for i in ids}


def test_top_p_ties_at_boundary_keep_lowest_ids():
  uniform = logits_of([0.25] * 4)[None]
  assert kept(sampling.filter_logits(uniform, top_p=0.5)) == {0, 1}
  assert kept(sampling.filter_logits(uniform, top_p=0.3)) == {0, 1}
  assert kept(sampling.filter_logits(uniform, top_p=0.2)) == {0}
  tied = logits_of([0.1, 0.3, 0.3, 0.3])[None]
  assert kept(sampling.filter_logits(tied, top_p=0.5)) == {1, 2}
  # A tiny p still keeps one token: the most probable.
  assert kept(sampling.filter_logits(logits_of(PROBS)[None],
                                     top_p=1e-9)) == {0}


def test_top_k_keeps_exactly_k_ties_lowest_id():
  logits = jnp.array([[1.0, 3.0, 3.0, 0.0, 3.0, -2.0]])
  assert kept(sampling.filter_logits(logits, top_k=1)) == {1}
  assert kept(sampling.filter_logits(logits, top_k=2)) == {1, 2}
  assert kept(sampling.filter_logits(logits, top_k=4)) == {0, 1, 2, 4}
  assert kept(sampling.filter_logits(logits, top_k=99)) == set(range(6))
  # top-p after top-k, on the renormalised top 3: 0.5/0.85 >= 0.55.
  top3 = sampling.filter_logits(logits_of(PROBS)[None], top_k=3, top_p=0.55)
  assert kept(top3) == {0}
  assert kept(sampling.filter_logits(logits_of(PROBS)[None], top_k=3,
                                     top_p=0.6)) == {0, 1}


def test_rows_are_filtered_independently():
  rows = np.stack([np.log(PROBS), np.log(PROBS[::-1]),
                   np.log([0.2] * 5), np.log([0.9, 0.04, 0.03, 0.02, 0.01])])
  logits = jnp.asarray(rows, jnp.float32)
  for settings in (dict(top_p=0.7), dict(top_k=2), dict(top_k=3, top_p=0.6),
                   dict(temperature=0.5, top_p=0.8)):
    together = np.asarray(sampling.filter_logits(logits, **settings))
    alone = np.concatenate([sampling.filter_logits(logits[i:i + 1],
                                                   **settings)
                            for i in range(len(rows))])
    np.testing.assert_array_equal(together, alone)
    assert np.all(np.isfinite(together).sum(axis=-1) >= 1)
  by_row = [kept(sampling.filter_logits(logits[i:i + 1], top_p=0.7))
            for i in range(len(rows))]
  assert by_row == [{0, 1}, {4, 3}, {0, 1, 2, 3}, {0}]


def test_temperature_divides_logits():
  logits = jax.random.normal(jax.random.PRNGKey(0), (3, 11))
  for temperature in (0.5, 1.0, 2.0):
    filtered = np.asarray(sampling.filter_logits(logits,
                                                 temperature=temperature))
    assert np.all(np.isfinite(filtered))
    np.testing.assert_allclose(filtered, np.asarray(logits) / temperature,
                               rtol=1e-6)
  bfloat16 = sampling.filter_logits(logits.astype(jnp.bfloat16), top_k=2)
  assert bfloat16.dtype == jnp.float32


def test_top_k_1_and_small_temperature_are_greedy():
  for seed in range(5):
    key, draw = jax.random.split(jax.random.PRNGKey(seed))
    logits = 3 * jax.random.normal(key, (8, 50))
    top2 = np.sort(np.asarray(logits), axis=-1)[:, -2:]
    # At temperature 1e-4 a gap of 0.01 leaves the runner-up e^-100.
    assert np.all(top2[:, 1] - top2[:, 0] > 0.01)
    greedy = np.asarray(sampling.sample(draw, logits, temperature=0.0))
    assert greedy.dtype == np.int32 and greedy.shape == (8,)
    np.testing.assert_array_equal(greedy, np.argmax(np.asarray(logits), -1))
    for settings in (dict(top_k=1), dict(temperature=1e-4),
                     dict(top_k=1, temperature=2.0), dict(top_p=1e-9)):
      ids = sampling.sample(draw, logits, **settings)
      np.testing.assert_array_equal(np.asarray(ids), greedy)


def draw_counts(logits, seed=0, **settings) -> np.ndarray:
  """How often each id comes in NUM_SAMPLES draws from one [vocab] row."""
  batch = jnp.broadcast_to(logits, (NUM_SAMPLES, logits.shape[-1]))
  ids = sampling.sample(jax.random.PRNGKey(seed), batch, **settings)
  return np.bincount(np.asarray(ids), minlength=logits.shape[-1])


def assert_fits(counts, probs):
  """Chi-square goodness of fit over the ids `probs` gives weight to."""
  support = probs > 0
  expected = counts.sum() * probs[support] / probs[support].sum()
  result = scipy.stats.chisquare(counts[support], expected)
  assert np.isfinite(result.pvalue) and np.isfinite(result.statistic)
  assert result.pvalue > 0.001, (counts, expected)


PROBS6 = np.array([0.32, 0.08, 0.25, 0.15, 0.04, 0.16])


@pytest.mark.parametrize('settings, kept_ids', [
    (dict(), [0, 1, 2, 3, 4, 5]),
    (dict(temperature=0.5), [0, 1, 2, 3, 4, 5]),
    (dict(top_k=3), [0, 2, 5]),
    # 0.32 + 0.25 = 0.57 < 0.6; + 0.16 = 0.73 >= 0.6.
    (dict(top_p=0.6), [0, 2, 5]),
    (dict(top_p=0.5), [0, 2]),
    (dict(top_k=4, top_p=0.9, temperature=2.0), [0, 2, 3, 5])])
def test_samples_match_the_filtered_distribution(settings, kept_ids):
  logits = logits_of(PROBS6)
  temperature = settings.get('temperature', 1.0)
  # The reference: softmax at the temperature, renormalised over kept ids.
  probs = softmax64(np.log(PROBS6) / temperature)
  probs[[i for i in range(len(PROBS6)) if i not in kept_ids]] = 0
  probs /= probs.sum()
  assert np.all(np.isfinite(probs))
  counts = draw_counts(logits, **settings)
  assert counts.sum() == NUM_SAMPLES
  assert counts[probs == 0].sum() == 0  # nothing outside the kept set
  assert_fits(counts, probs)


def test_samples_differ_by_key_and_repeat_by_key():
  logits = logits_of(PROBS6)
  first = draw_counts(logits, seed=1)
  assert np.array_equal(first, draw_counts(logits, seed=1))
  assert not np.array_equal(first, draw_counts(logits, seed=2))


def test_sample_inside_jit_and_scan():
  logits = jax.random.normal(jax.random.PRNGKey(3), (4, 20))

  @jax.jit
  def steps(rng):
    def step(carry, key):
      return carry, sampling.sample(key, logits, temperature=0.8, top_k=5,
                                    top_p=0.9)
    return jax.lax.scan(step, 0, jax.random.split(rng, 6))[1]

  ids = np.asarray(steps(jax.random.PRNGKey(0)))
  assert ids.shape == (6, 4) and ids.dtype == np.int32
  top5 = np.argsort(-np.asarray(logits), axis=-1)[:, :5]
  assert all(ids[t, b] in top5[b] for t in range(6) for b in range(4))


@pytest.mark.parametrize('settings', [
    dict(temperature=-1.0), dict(top_k=-1), dict(top_p=0.0),
    dict(top_p=1.5)])
def test_invalid_settings(settings):
  logits = jnp.zeros((1, 5))
  with pytest.raises(ValueError):
    sampling.sample(jax.random.PRNGKey(0), logits, **settings)
  with pytest.raises(ValueError):
    sampling.filter_logits(logits, **(dict(temperature=1.0) | settings))
  with pytest.raises(ValueError, match='greedy'):
    sampling.filter_logits(logits, temperature=0.0)
