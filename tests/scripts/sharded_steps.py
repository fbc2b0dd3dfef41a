"""Runs k train steps on 1 device and on all devices; prints losses as JSON.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/test_train.py).
"""

import dataclasses
import json
import sys
import tempfile

import jax
import numpy as np

from transformer import tasks
from transformer import train as train_lib
from transformer.config import Config, ModelConfig, TrainConfig


def synthetic_batch(step: int, batch: int = 16, length: int = 12,
                    vocab: int = 50):
  rng = np.random.default_rng(step)
  tokens = lambda: rng.integers(4, vocab, (batch, length)).astype(np.int32)
  inputs, targets = tokens(), tokens()
  lengths = rng.integers(3, length + 1, batch)
  pad = np.arange(length)[None] >= lengths[:, None]
  inputs[pad], targets[np.roll(pad, 1, 0)] = 0, 0
  return {'inputs': inputs, 'targets': targets}


def synthetic_labelled_batch(step: int, batch: int = 16, length: int = 12,
                             vocab: int = 50, classes: int = 3):
  """Padded rows of token ids with a class id each."""
  rng = np.random.default_rng(step)
  inputs = rng.integers(4, vocab, (batch, length)).astype(np.int32)
  lengths = rng.integers(2, length + 1, batch)
  inputs[np.arange(length)[None] >= lengths[:, None]] = 0
  return {'inputs': inputs,
          'labels': rng.integers(0, classes, batch).astype(np.int32)}


def synthetic_lm_batch(step: int, batch: int = 16, length: int = 12,
                       vocab: int = 50):
  """Packed rows of two documents each (positions restart, segments 1 and
  2), then padding: what transformer/data/lm.py's packer emits."""
  rng = np.random.default_rng(step)
  targets = rng.integers(4, vocab, (batch, length)).astype(np.int32)
  cut = rng.integers(2, length - 3, batch)  # first document's length
  end = rng.integers(cut + 2, length + 1)  # the second's end
  columns = np.arange(length)[None]
  first, second = columns < cut[:, None], columns < end[:, None]
  targets[~second] = 0
  positions = np.where(first, columns, columns - cut[:, None]) * second
  segments = np.where(first, 1, 2) * second
  return {'targets': targets, 'targets_positions': positions.astype(np.int32),
          'targets_segmentation': segments.astype(np.int32)}


def classification_task(config: Config):
  """A classification task with three classes, weighted against imbalance."""
  from transformer.tasks import labelled  # pylint: disable=g-import-not-at-top
  config = dataclasses.replace(config, task='classification')
  return labelled.Classification(config, ('a', 'b', 'c'), (0.5, 1.0, 2.0))


def run(config: Config, devices, steps: int, task=None,
        batches=synthetic_batch):
  task = task or tasks.for_config(config)
  mesh = train_lib.make_mesh(devices)
  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  init_rng, dropout_rng = train_lib.seed_rngs(config)
  state = init_fn(init_rng)
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  losses = []
  for step in range(steps):
    batch = train_lib.global_batch(batches(step), mesh)
    state, metrics = step_fn(state, batch, dropout_rng)
    losses.append(float(metrics['loss']))
  return losses


def main():
  base = Config(model=ModelConfig(vocab_size=50, d_model=32, d_ff=64,
                                  num_heads=4, num_encoder_layers=2,
                                  num_decoder_layers=2),
                train=TrainConfig(steps=4, warmup_steps=2,
                                  schedule='constant', learning_rate=1e-3))
  fsdp = dataclasses.replace(base, train=dataclasses.replace(base.train,
                                                             fsdp=True))
  rng = lambda impl: dataclasses.replace(
      base, train=dataclasses.replace(base.train, dropout_rng=impl))
  threefry, rbg = rng('threefry'), rng('rbg')
  out = {
      'device_count': jax.device_count(),
      'one': run(base, jax.devices()[:1], 4),
      'all': run(base, jax.devices(), 4),
      'all_fsdp': run(fsdp, jax.devices(), 4),
      'one_threefry': run(threefry, jax.devices()[:1], 4),
      'all_threefry': run(threefry, jax.devices(), 4),
      'one_rbg': run(rbg, jax.devices()[:1], 4),
      'all_rbg': run(rbg, jax.devices(), 4),
  }
  # Classification (dropout on, class weights): the same losses too.
  for name, devices, config in (('one', jax.devices()[:1], base),
                                ('all', jax.devices(), base),
                                ('all_fsdp', jax.devices(), fsdp)):
    out[f'classify_{name}'] = run(config, devices, 4,
                                  classification_task(config),
                                  synthetic_labelled_batch)
  # Language model (decoder only, packed rows, dropout on).
  lm = dataclasses.replace(base, task='language_model',
                           model=dataclasses.replace(
                               base.model, num_encoder_layers=0,
                               dropout_rate=0.1))
  lm_fsdp = dataclasses.replace(lm, train=fsdp.train)
  for name, devices, config in (('one', jax.devices()[:1], lm),
                                ('all', jax.devices(), lm),
                                ('all_fsdp', jax.devices(), lm_fsdp)):
    out[f'lm_{name}'] = run(config, devices, 4, batches=synthetic_lm_batch)
  json.dump(out, sys.stdout)


if __name__ == '__main__':
  with tempfile.TemporaryDirectory() as cache:
    # A compilation cache for this process alone: runs that build the same
    # program (initialisation under each train.dropout_rng, FSDP that
    # shards none of these small arrays) have it compiled once. A program
    # from the cache computes what a fresh compile of it does.
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    main()
