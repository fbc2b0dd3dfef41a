"""What --mode=benchmark measures of classification and regression.

Batches are always random, no workdir or data needed
(`random_labelled_batch`): 'inputs' [batch_size, max_length] int32 in full
rows (every position a random ordinary token, the last EOS, as the labelled
pipeline ends a text; no padding, so every slot is real work and MFU is not
diluted by padding) and 'labels' (the task's `random_labels`: uniform class
ids, or standard normal targets); the eval step's batches add 'weights'
(ones). The task (`benchmark_task` in __init__.py) is a Classification of
BENCHMARK_CLASSES = 4 classes (2 with train.loss='log_loss': one sigmoid
output), no class weights, or a Regression (mean 0, std 1).

Model FLOPs (matmuls only, as transformer/benchmark.py counts them):
`EncoderClassifier` builds no decoder, whatever num_decoder_layers says, so

  forward = L_enc * encoder layer (S = data.max_length) + head (2*B*d*K)
  train step = 3 * forward; eval step = forward, on the same batch.

Rates are in examples (and real input tokens); nothing decodes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from transformer import measure
from transformer import train as train_lib
from transformer.config import BOS_ID, ModelConfig
from transformer.tasks.base import BenchmarkBatches, BenchmarkHooks
from transformer.tasks.labelled import pipeline


def forward_flops(model_config: ModelConfig, batch: int, length: int,
                  num_outputs: int) -> float:
  """Matmul FLOPs of `EncoderClassifier`'s forward pass (classification,
  regression): the encoder's layers, then the head on the pooled vectors."""
  b, d = float(batch), float(model_config.d_model)
  head = 2 * b * d * float(num_outputs)  # [B, d] @ [d, outputs]
  return (model_config.num_encoder_layers
          * measure.encoder_layer_flops(model_config, batch, length) + head)


def train_flops(task) -> float:
  """Model FLOPs of one train step of a classification or regression task on
  a global batch of data.batch_size rows of data.max_length: 3 * forward."""
  c = task.config
  return 3.0 * forward_flops(c.model, c.data.batch_size, c.data.max_length,
                             task.num_outputs)


def eval_flops(task) -> float:
  """Model FLOPs of its eval step on the same batch: one forward."""
  c = task.config
  return forward_flops(c.model, c.data.batch_size, c.data.max_length,
                       task.num_outputs)


def random_labelled_batch(task, rng: np.random.Generator, rows: int
                          ) -> dict[str, np.ndarray]:
  """A classification or regression batch of the labelled pipeline's keys:
  'inputs' [rows, data.max_length] int32, full rows (random ordinary ids,
  the last EOS, BOS first where pipeline.starts_with_bos, no padding), and
  'labels' (task.random_labels): int32 class ids [rows] (classification) or
  float32 standardised targets [rows, 1] (regression)."""
  c = task.config
  inputs = measure.random_ids(rng, rows, c.data.max_length,
                              c.model.vocab_size)
  if pipeline.starts_with_bos(c):
    inputs[:, 0] = BOS_ID
  return {'inputs': inputs, 'labels': task.random_labels(rng, rows)}


class LabelledHooks(BenchmarkHooks):
  """task='classification' or 'regression' (`EncoderClassifier`): random
  full-row batches, rates in examples (and tokens), the encoder's and the
  head's FLOPs; nothing decodes."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    del decode_repeats
    return {'task': self.config.task, 'num_outputs': self.task.num_outputs}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> BenchmarkBatches:
    """Random full rows (`random_labelled_batch`); the eval step's batches
    add the labelled evaluation's 'weights' (ones: every row real)."""
    del workdir
    rows = self.config.data.batch_size // jax.process_count()
    host_batches = [random_labelled_batch(self.task, rng, rows)
                    for _ in range(count)]
    batches = [train_lib.global_batch(b, mesh) for b in host_batches]
    weights = train_lib.global_batch(
        {'weights': np.ones(rows, np.float32)}, mesh)['weights']
    length = self.config.data.max_length
    return BenchmarkBatches(
        batches, [{**b, 'weights': weights} for b in batches],
        {'examples': [self.config.data.batch_size] * count,
         'tokens': measure.real_tokens(host_batches, 'inputs')},
        'random',
        f'random token ids [{rows}, {length}], full rows (no padding: '
        f'{length} tokens each, the last EOS), '
        f'{self.task.random_labels_note()}; task={self.config.task} is '
        'benchmarked on random batches, no data needed', None)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_labelled_batch(self.task, rng, rows)

  def train_flops(self) -> float:
    return train_flops(self.task)

  def eval_flops(self) -> float:
    return eval_flops(self.task)

  def train_rates(self, data: BenchmarkBatches, step_s: float
                  ) -> dict[str, float]:
    examples, tokens = data.timed_mean('examples'), data.timed_mean('tokens')
    return {'train_examples_per_s': examples / step_s,
            'train_tokens_per_s': tokens / step_s,
            'train_examples_per_step': examples,
            'train_tokens_per_step': tokens}

  def eval_rates(self, data: BenchmarkBatches, seconds: float
                 ) -> dict[str, float]:
    return {'eval_examples_per_s': data.timed_mean('examples') / seconds,
            'eval_tokens_per_s': data.timed_mean('tokens') / seconds}

  def task_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
    return [('task', f'{r["task"]}: encoder, pooling, a head of '
                     f'{r["num_outputs"]} output(s)')]

  def train_rate_row(self, r: dict[str, Any]) -> tuple[str, str]:
    return ('train examples/s', f'{r["train_examples_per_s"]:,.1f} '
                                f'({r["train_tokens_per_s"]:,.0f} tokens/s)')

  def eval_rate_text(self, r: dict[str, Any]) -> str:
    return (f'{r["eval_examples_per_s"]:,.1f} examples/s, '
            f'{r["eval_tokens_per_s"]:,.0f} tokens/s')
