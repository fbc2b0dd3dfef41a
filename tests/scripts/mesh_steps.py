"""Training, checkpoints and decoding on 1-D and 2-D (data x model) meshes.

Prints one JSON object: losses of 20 steps per mesh, parameter shardings,
losses after a checkpoint written on one mesh is restored on others, and
decoded tokens. Run with XLA_FLAGS=--xla_force_host_platform_device_count=8
(tests/test_mesh.py); every mesh case shares this one process, and each
mesh's compiled init and train step are built once and reused.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np

import sharded_steps  # tests/scripts, beside this file
from transformer import sharding, tasks
from transformer.tasks.language_model import generate
from transformer.tasks.translation import evaluate
from transformer import train as train_lib
from transformer.checkpoint import Checkpointer
from transformer.config import (Config, GenerateConfig, ModelConfig,
                                TrainConfig, EvalConfig)

STEPS, SAVE_AT = 20, 10
# Shapes every mesh here divides: 4 heads, d_ff 256 and a vocabulary of 256
# split over model axes of 2 and 4; the embedding and the feed-forward
# kernels (2**14 elements each) are large enough for FSDP to split. No
# dropout: each dropout site derives its key with a Threefry hash, whose
# unrolled rounds add ~2 s to every one of the nine train-step compiles;
# dropout on split batches is sharded_steps.py's (tests/test_train.py).
MODEL = ModelConfig(vocab_size=256, d_model=64, d_ff=256, num_heads=4,
                    num_encoder_layers=1, num_decoder_layers=1,
                    dropout_rate=0.0, max_length=64)
# adam_eps=1e-6, not 1e-9: a gradient that is zero in exact arithmetic (the
# key bias: softmax ignores a constant added to a query's logits) comes out
# as rounding noise, ~1e-9, which Adam with a tiny eps turns into full-size
# updates of random sign; another mesh sums in another order, draws other
# signs, and the losses drift apart (the language model by 1.1e-5 at step
# 17 with 1e-9). Other gradient entries are ~2e-3 (99.5% above 1e-5), so
# 1e-6 barely changes their updates; the sharding does not use eps.
TRAIN = TrainConfig(steps=STEPS, warmup_steps=2, schedule='constant',
                    learning_rate=1e-3, adam_eps=1e-6)
TRANSLATION = Config(model=MODEL, train=TRAIN,
                     eval=EvalConfig(beam_size=4, max_extra_length=6))
LANGUAGE_MODEL = Config(task='language_model',
                        model=dataclasses.replace(MODEL, num_encoder_layers=0),
                        train=TRAIN)
# name -> (devices, train.model_parallel, train.fsdp)
MESHES = {'one': (1, 1, False), 'data8': (8, 1, False),
          'data4_model2': (8, 2, False), 'data2_model4': (8, 4, False),
          'data4_model2_fsdp': (8, 2, True)}
# Parameters whose shardings the test checks, as paths under 'params'.
CHECKED_PARAMS = {
    'query': ('encoder_0', 'self_attention', 'query', 'kernel'),
    'query_bias': ('encoder_0', 'self_attention', 'query', 'bias'),
    'out': ('encoder_0', 'self_attention', 'out', 'kernel'),
    'wi': ('encoder_0', 'ffn', 'wi', 'kernel'),
    'wo': ('encoder_0', 'ffn', 'wo', 'kernel'),
    'embedding': ('embedding', 'embedding'),
    'norm_scale': ('encoder_0', 'ffn_norm', 'scale'),
}


@dataclasses.dataclass
class Run:
  """A task on a mesh with its compiled init and train step."""
  task: Any
  mesh: jax.sharding.Mesh
  sharding: Any
  init: Callable
  step: Callable

  @classmethod
  def build(cls, config: Config, mesh_name: str) -> Run:
    count, model_parallel, fsdp = MESHES[mesh_name]
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, model_parallel=model_parallel, fsdp=fsdp))
    task = tasks.for_config(config)
    mesh = train_lib.make_mesh(jax.devices()[:count], config)
    init, sharding = train_lib.jit_init_state(task, mesh)
    return cls(task, mesh, sharding, init,
               train_lib.jit_train_step(task, mesh, sharding))

  def train(self, state, start: int, stop: int, batches, *,
            checkpointer: Checkpointer | None = None):
    """Steps start..stop-1; saves after step SAVE_AT if given a checkpointer.
    Returns (state, losses, all metrics finite)."""
    _, dropout_rng = train_lib.seed_rngs(self.task.config)
    losses, finite = [], True
    for step in range(start, stop):
      if checkpointer is not None and step == SAVE_AT:
        checkpointer.save(state, None, step=step)
        checkpointer.wait()  # before the next step donates the buffers
      batch = train_lib.global_batch(batches(step), self.mesh)
      state, metrics = self.step(state, batch, dropout_rng)
      losses.append(float(metrics['loss']))
      finite &= bool(metrics['finite']) and bool(np.isfinite(losses[-1]))
    return state, losses, finite

  def fresh(self):
    init_rng, _ = train_lib.seed_rngs(self.task.config)
    return self.init(init_rng)

  def place(self, host_state):
    """A state copied to this mesh as it places states (no compile: an
    initialisation compiles for seconds, its random draws unrolled)."""
    return jax.device_put(host_state, self.sharding)


def spec_of(array: jax.Array) -> list[str | None]:
  """The array's PartitionSpec, one entry per dimension."""
  spec = list(array.sharding.spec)
  return spec + [None] * (array.ndim - len(spec))


def checked_specs(state) -> dict[str, Any]:
  """The specs of CHECKED_PARAMS, and of Adam's first moment of the query
  kernel (the optimizer state is placed by the same names)."""
  def at(tree, path):
    for key in path:
      tree = tree[key]
    return tree
  specs = {name: spec_of(at(state.params, path))
           for name, path in CHECKED_PARAMS.items()}
  adam = state.opt_state[0]  # optax.adamw: (ScaleByAdamState, ...)
  specs['query_adam_mu'] = spec_of(at(adam.mu, CHECKED_PARAMS['query']))
  return specs


def translation_batch(step: int):
  return sharded_steps.synthetic_batch(step, vocab=MODEL.vocab_size)


def lm_batch(step: int):
  return sharded_steps.synthetic_lm_batch(step, vocab=MODEL.vocab_size)


def beam_search_tokens(run: Run, params) -> list[list[int]]:
  """Beam search (beam 4) of 8 fixed sources with `params` placed as this
  mesh places parameters."""
  params = jax.device_put(params, run.sharding.params)
  sources = translation_batch(100)['inputs'][:8]
  return evaluate.decode_rows(params, run.task.config, sources,
                              run.mesh).tolist()


def greedy_generation_tokens(run: Run, params) -> list[list[int]]:
  """Greedy continuations of 8 prompts of different lengths."""
  params = jax.device_put(params, run.sharding.params)
  prompts = lm_batch(100)['targets'][:8, :6]
  lengths = np.array([6, 5, 4, 3, 6, 2, 1, 0], np.int32)
  settings = GenerateConfig(temperature=0.0, max_new_tokens=8)
  keys = jax.random.split(jax.random.key(0), len(prompts))
  out = generate.generate(params, run.task.config.model,
                          sharding.to_mesh(prompts, run.mesh),  # pylint: disable=protected-access
                          sharding.to_mesh(lengths, run.mesh),  # pylint: disable=protected-access
                          keys, settings)
  return np.asarray(out).tolist()


def main(workdir: str) -> dict[str, Any]:
  out: dict[str, Any] = {'device_count': jax.device_count(), 'losses': {},
                         'finite': {}, 'specs': {}, 'seconds': {},
                         'cpu_seconds': {}}

  def timed(name: str, fn):
    start, cpu = time.time(), time.process_time()
    result = fn()
    out['seconds'][name] = round(time.time() - start, 2)
    out['cpu_seconds'][name] = round(time.process_time() - cpu, 2)
    return result

  # The one-device run initialises; the others start from a copy of its
  # state.
  runs, states, initial = {}, {}, {}
  for task_name, config, batches, names in (
      ('translation', TRANSLATION, translation_batch, MESHES),
      ('lm', LANGUAGE_MODEL, lm_batch,
       ('one', 'data8', 'data4_model2', 'data2_model4'))):
    for name in names:
      key = f'{task_name}_{name}'

      def train(config=config, name=name, key=key, batches=batches,
                task_name=task_name):
        run = runs[key] = Run.build(config, name)
        if name == 'one':
          state = run.fresh()
          initial[task_name] = jax.device_get(state)
        else:
          state = run.place(initial[task_name])
        # The translation run on data 4 x model 2 writes the checkpoint.
        checkpointer = (Checkpointer(workdir, async_save=False)
                        if key == 'translation_data4_model2' else None)
        state, losses, finite = run.train(state, 0, STEPS, batches,
                                          checkpointer=checkpointer)
        if checkpointer is not None:
          checkpointer.close()
        return state, losses, finite
      state, out['losses'][key], out['finite'][key] = timed(key, train)
      states[key] = state
      if task_name == 'translation':
        out['specs'][name] = checked_specs(state)

  def resume_on_data8():
    """The data 4 x model 2 checkpoint, restored on data 8 and trained on."""
    run = runs['translation_data8']
    checkpointer = Checkpointer(workdir, async_save=False)
    state, step = checkpointer.restore(
        train_lib.abstract_state(run.task, run.mesh), step=SAVE_AT)
    checkpointer.close()
    out['specs']['restored_data8'] = checked_specs(state)
    _, losses, out['finite']['resumed_data8'] = run.train(
        state, step, STEPS, translation_batch)
    return losses
  out['resumed'] = {'data8': timed('resume_data8', resume_on_data8)}

  # Decoding with the one-device run's parameters, on both meshes.
  out['beam_search'], out['generate'] = {}, {}
  for name in ('one', 'data4_model2'):
    out['beam_search'][name] = timed(f'beam_search_{name}', lambda name=name: (
        beam_search_tokens(runs[f'translation_{name}'],
                           states['translation_one'].params)))
    out['generate'][name] = timed(f'generate_{name}', lambda name=name: (
        greedy_generation_tokens(runs[f'lm_{name}'],
                                 states['lm_one'].params)))
  return out


if __name__ == '__main__':
  with tempfile.TemporaryDirectory() as directory:
    started, cpu = time.time(), time.process_time()
    result = main(directory)
    result['seconds']['total'] = round(time.time() - started, 2)
    result['cpu_seconds']['total'] = round(time.process_time() - cpu, 2)
    json.dump(result, sys.stdout)
