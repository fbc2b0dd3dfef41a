"""The pieces of a budgeted run (transformer/budget.py) and of the recipes
it trains with: the linear schedule, the final learning rate, and weight
decay on the matrices only."""

import dataclasses
import math

import jax
import numpy as np
import optax
import pytest

from transformer import budget
from transformer import config as config_lib
from transformer import train as train_lib
from transformer.config import Config, ConfigError, TrainConfig


def test_fit_steps_against_hand_computation():
  timings = budget.Timings(elapsed=10.0, compile=3.0, step=0.05,
                           evaluation=2.0, checkpoint=0.5)
  steps, why = budget.fit_steps(10.0, timings, eval_every=100,
                                checkpoint_every=500, saves_per_eval=1)
  # 600 s less 10% = 540; less set-up (10) and once: compile 3 + the last
  # evaluation 2 + the last checkpoint 0.5 = 524.5 s for steps costing
  # 0.05 + 0.5/500 + (2 + 0.5)/100 = 0.076 s each: 6,901.3 -> 6,901.
  assert budget.SAFETY == 0.10
  assert steps == 6901
  assert '10 minutes' in why and '50.0ms per step' in why
  without_eval, _ = budget.fit_steps(10.0, timings, eval_every=0,
                                     checkpoint_every=500, saves_per_eval=0)
  assert without_eval == math.floor((540 - 10 - 5.5) / (0.05 + 0.001))
  # Set-up longer than the budget still trains one step.
  late = dataclasses.replace(timings, elapsed=1e4)
  assert budget.fit_steps(1.0, late, eval_every=0, checkpoint_every=10,
                          saves_per_eval=0)[0] == 1


def test_timed_blocks_last_about_a_second_within_their_bounds():
  # 20 ms steps (text_lm on 2 cores): 50 of them; 180 ms (bible_lm): 6;
  # 1 s and slower: the minimum of 5; 1 ms: capped at 200.
  assert budget.timed_block_steps(0.020) == 50
  assert budget.timed_block_steps(0.180) == 6
  assert budget.timed_block_steps(1.0) == budget.MIN_TIMED_STEPS == 5
  assert budget.timed_block_steps(3.0) == 5
  assert budget.timed_block_steps(0.001) == budget.MAX_TIMED_STEPS == 200
  assert budget.timed_block_steps(0.0) == 200


def test_budget_file_round_trip(tmp_path):
  timings = budget.Timings(1.0, 2.0, 0.1, 0.0, 0.2)
  assert budget.load(str(tmp_path)) is None
  budget.save(str(tmp_path), 123, 'because', timings, 5.0)
  saved = budget.load(str(tmp_path))
  assert saved['steps'] == 123 and saved['why'] == 'because'
  assert saved['seconds']['step'] == 0.1 and saved['time_limit_minutes'] == 5


def test_steps_zero_needs_a_time_limit_whatever_the_order_of_the_sets():
  with pytest.raises(ConfigError, match='train.time_limit'):
    config_lib.override_all(Config(), ['train.steps=0'])
  for order in (['train.steps=0', 'train.time_limit=5'],
                ['train.time_limit=5', 'train.steps=0']):
    config = config_lib.override_all(Config(), order)
    assert (config.train.steps, config.train.time_limit) == (0, 5.0)


def schedule_values(counts, **train):
  config = Config(train=TrainConfig(**train))
  schedule = train_lib.learning_rate_schedule(config)
  return [float(schedule(c)) for c in counts]


def test_linear_schedule_and_final_fraction_against_the_formula():
  peak, warmup, steps, end = 2e-3, 10, 110, 0.1
  counts = [0, 4, 10, 35, 60, 109, 110, 500]
  for fraction in (0.0, end):
    got = schedule_values(counts, schedule='linear', learning_rate=peak,
                          warmup_steps=warmup, steps=steps,
                          final_learning_rate_fraction=fraction)
    for count, value in zip(counts, got):
      if count < warmup:
        want = peak * count / warmup
      else:  # a straight line from the peak to fraction * peak at `steps`
        progress = min((count - warmup) / (steps - warmup), 1.0)
        want = peak + (fraction * peak - peak) * progress
      assert np.isfinite(value)
      assert value == pytest.approx(want, rel=1e-5, abs=1e-12), (count,
                                                                  fraction)
  # The cosine ends at the same fraction (nanoGPT's min_lr = lr / 10).
  cosine = schedule_values([60, 110], schedule='cosine', learning_rate=peak,
                           warmup_steps=warmup, steps=steps,
                           final_learning_rate_fraction=end)
  want = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, steps,
                                            end_value=end * peak)
  assert cosine == pytest.approx([float(want(60)), float(want(110))])
  assert cosine[1] == pytest.approx(end * peak)


PARAMS = {'dense': {'kernel': np.full((3, 4), 2.0, np.float32),
                    'bias': np.full((4,), 2.0, np.float32)},
          'norm': {'scale': np.full((5,), 2.0, np.float32),
                   'bias': np.full((5,), 2.0, np.float32)},
          'embed': {'embedding': np.full((7, 3), 2.0, np.float32)}}


def decay_step(weight_decay_on):
  """One AdamW update with zero gradients: only the decay moves a weight."""
  config = Config(train=TrainConfig(schedule='constant', learning_rate=0.1,
                                    warmup_steps=1, weight_decay=0.5,
                                    weight_decay_on=weight_decay_on))
  optimizer = train_lib.make_optimizer(config)
  state = optimizer.init(PARAMS)
  grads = jax.tree.map(np.zeros_like, PARAMS)
  # The first update has count 0, where the warm-up's rate is 0: take two.
  for _ in range(2):
    updates, state = optimizer.update(grads, state, PARAMS)
  return optax.apply_updates(PARAMS, updates), state


def test_weight_decay_on_matrices_spares_biases_and_layer_norms():
  decayed = 2.0 - 0.1 * 0.5 * 2.0  # p - lr * wd * p (AdamW, decoupled)
  every, _ = decay_step('all')
  for leaf in jax.tree.leaves(every):
    np.testing.assert_allclose(leaf, decayed, rtol=1e-6)
  matrices, _ = decay_step('matrices')
  want = {'dense': {'kernel': decayed, 'bias': 2.0},
          'norm': {'scale': 2.0, 'bias': 2.0},
          'embed': {'embedding': decayed}}
  for got, value in zip(jax.tree.leaves(matrices), jax.tree.leaves(want)):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, value, rtol=1e-6)


def test_weight_decay_on_keeps_the_optimizer_state_structure():
  """So that a run may switch it on resume, like any training setting."""
  structures = {jax.tree.structure(decay_step(on)[1])
                for on in ('all', 'matrices')}
  assert len(structures) == 1


def test_matrices_are_chosen_by_name_also_when_layers_are_stacked():
  config = Config(train=TrainConfig(weight_decay_on='matrices'))
  stacked = {'layers': {'norm': {'scale': np.ones((3, 8))},
                        'mlp': {'kernel': np.ones((3, 8, 8)),
                                'bias': np.ones((3, 8))}}}
  marks = train_lib.decayed_parameters(config, stacked)
  assert marks == {'layers': {'norm': {'scale': False},
                              'mlp': {'kernel': True, 'bias': False}}}
