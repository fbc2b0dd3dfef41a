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
  2), then padding: what tasks/language_model/data.py's packer emits."""
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
  # adam_eps=1e-6 (TrainConfig's default: 1e-9): gradients that are zero in
  # exact arithmetic (attention's key bias: softmax ignores a constant added
  # to a query's logits) come out as rounding noise, ~1e-9, which Adam with
  # a tiny eps turns into full-size updates of random sign; devices that sum
  # in another order draw other signs, and the losses drift apart by more
  # than rounding (tests/test_mesh.py's language model: 1.1e-5 at step 17).
  # Other gradient entries are ~2e-3 (99.5% above 1e-5), so 1e-6 barely
  # changes their updates; the sharding under test does not depend on eps.
  base = Config(model=ModelConfig(vocab_size=50, d_model=32, d_ff=64,
                                  num_heads=4, num_encoder_layers=2,
                                  num_decoder_layers=2),
                train=TrainConfig(steps=4, warmup_steps=2,
                                  schedule='constant', learning_rate=1e-3,
                                  adam_eps=1e-6))
  rng = lambda config, impl: dataclasses.replace(
      config, train=dataclasses.replace(config.train, dropout_rng=impl))
  one, every = jax.devices()[:1], jax.devices()
  # Each task on one device and on all, dropout on: translation with the
  # default masks ('hash'), classification (class weights) with jax.random's
  # 'threefry' and the language model (decoder only, packed rows) with
  # 'rbg', so that each mask source is split over devices once. One more
  # one-device run each with 'hash' shows that the task passes
  # train.dropout_rng on (other masks, other losses). FSDP is
  # tests/test_mesh.py's: these arrays are too small for it to split.
  out = {'device_count': jax.device_count(),
         'one': run(base, one, 4), 'all': run(base, every, 4)}
  threefry = rng(base, 'threefry')
  for name, devices, config in (('one', one, threefry),
                                ('all', every, threefry),
                                ('one_hash', one, base)):
    out[f'classify_{name}'] = run(config, devices, 4,
                                  classification_task(config),
                                  synthetic_labelled_batch)
  lm = dataclasses.replace(base, task='language_model',
                           model=dataclasses.replace(
                               base.model, num_encoder_layers=0,
                               dropout_rate=0.1))
  lm_rbg = rng(lm, 'rbg')
  for name, devices, config in (('one', one, lm_rbg), ('all', every, lm_rbg),
                                ('one_hash', one, lm)):
    out[f'lm_{name}'] = run(config, devices, 4, batches=synthetic_lm_batch)
  json.dump(out, sys.stdout)


if __name__ == '__main__':
  with tempfile.TemporaryDirectory() as cache:
    # A compilation cache for this process alone: runs that build the same
    # program (initialisation under each train.dropout_rng) have it
    # compiled once. A program from the cache computes what a fresh compile
    # of it does.
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    main()
