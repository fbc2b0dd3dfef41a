"""Runs k train steps on 1 device and on all devices; prints losses as JSON.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/test_train.py).
"""

import dataclasses
import json
import sys

import jax
import numpy as np

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


def run(config: Config, devices, steps: int):
  mesh = train_lib.make_mesh(devices)
  init_fn, sharding = train_lib.jit_init_state(config, mesh)
  init_rng, dropout_rng = train_lib.seed_rngs(config)
  state = init_fn(init_rng)
  step_fn = train_lib.jit_train_step(config, mesh, sharding)
  losses = []
  for step in range(steps):
    batch = train_lib.global_batch(synthetic_batch(step), mesh)
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
  json.dump(out, sys.stdout)


if __name__ == '__main__':
  main()
