"""train.steps=0: as many steps as fit in train.time_limit, fixed up front.

A learning-rate schedule that decays to its end at the budget beats one cut
off in the middle ("Budgeted Training", Li, Yumer & Ramanan, ICLR 2020). So
a budgeted run first times what a run is made of (compiling, a train step,
an evaluation, a checkpoint), then fixes the number of steps that fit in
what is left of its minutes and runs the whole schedule over exactly those.
The number is saved in the workdir (budget.json) and config.json; a resumed
run reads it back, so resuming is as exact as with a fixed train.steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

FILE = 'budget.json'
# Kept free of the budget: a shared VM's speed drifts during a run and from
# run to run (text_lm's 2-core VM: 36 to 54 steps/s within one run, and a
# run timed at 19.7 ms/step that then ran at 22-23), so a fitted run must not
# meet train.time_limit, which would cut its schedule short.
SAFETY = 0.10
# A timed block of train steps lasts about this long (at least
# MIN_TIMED_STEPS steps, at most MAX_TIMED_STEPS): the loop dispatches steps
# without waiting, a timed block waits for its last, and over short blocks
# of fast steps that wait made the step look a fifth slower than it runs.
TIMED_BLOCK_S = 1.0
MIN_TIMED_STEPS, MAX_TIMED_STEPS = 5, 200


@dataclasses.dataclass(frozen=True)
class Timings:
  """Seconds measured before training (transformer/loop.py)."""
  elapsed: float  # since the run started: set-up, tokenizer, data, timing
  compile: float  # compiling the train step (done again for the fitted one)
  step: float  # one train step on real batches, steady state
  evaluation: float  # one evaluation of eval.split (0 if eval.every = 0)
  checkpoint: float  # one checkpoint save


def timed_block_steps(step_s: float) -> int:
  """Steps per timed block for steps of about `step_s` seconds: enough to
  last TIMED_BLOCK_S, within [MIN_TIMED_STEPS, MAX_TIMED_STEPS]."""
  if step_s <= 0:
    return MAX_TIMED_STEPS
  return int(min(max(math.ceil(TIMED_BLOCK_S / step_s), MIN_TIMED_STEPS),
                 MAX_TIMED_STEPS))


def fit_steps(minutes: float, timings: Timings, *, eval_every: int,
              checkpoint_every: int, saves_per_eval: int) -> tuple[int, str]:
  """(steps, why): the most steps whose training, evaluations and
  checkpoints end within `minutes` of the run's start, with SAFETY of it
  kept free.

  Costs per step: the step, 1/eval_every of an evaluation and
  1/checkpoint_every of a checkpoint, plus `saves_per_eval` checkpoints per
  evaluation (a new best is saved when found); once: the recompilation and
  the last step's evaluation and checkpoint.
  """
  budget = minutes * 60.0 * (1.0 - SAFETY)
  per_step = timings.step + timings.checkpoint / checkpoint_every
  if eval_every:
    per_step += (timings.evaluation +
                 saves_per_eval * timings.checkpoint) / eval_every
  once = timings.compile + timings.evaluation + timings.checkpoint
  left = budget - timings.elapsed - once
  steps = max(int(left // per_step), 1)
  why = (f'{minutes:g} minutes less {SAFETY:.0%} kept free, '
         f'{timings.elapsed:.1f}s spent setting up and timing, '
         f'{timings.compile:.1f}s compiling; then {timings.step * 1e3:.1f}ms '
         'per step')
  if eval_every:
    why += (f', an evaluation of {timings.evaluation:.1f}s every '
            f'{eval_every} steps')
  why += f', a checkpoint of {timings.checkpoint:.2f}s every '
  why += f'{checkpoint_every} steps' + (' and at each new best' if
                                        saves_per_eval else '')
  return steps, why


def save(workdir: str, steps: int, why: str, timings: Timings,
         minutes: float) -> None:
  """Writes budget.json (process 0 only calls this)."""
  record = {'steps': steps, 'time_limit_minutes': minutes, 'why': why,
            'seconds': dataclasses.asdict(timings)}
  tmp = os.path.join(workdir, FILE + '.tmp')
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, os.path.join(workdir, FILE))


def load(workdir: str) -> dict[str, Any] | None:
  """The saved budget of the run in `workdir`, if it has one."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)
