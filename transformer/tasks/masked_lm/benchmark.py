"""What --mode=benchmark measures of the masked LM (`MaskedLMBenchmark`).

Batches: real ones (the workdir's tokenizer and the task's pipeline) when
the data is there, else the language model's random full rows
(`random_lm_batch`); the train step masks them itself, the eval step's are
masked as evaluation masks them (`data.mask_eval_batch`). Rates count the
real tokens of a batch (the encoder reads them all), beside the masked
ones the loss is taken at.

Model FLOPs: matmuls only, 2 * m * n * k, on data.batch_size rows of
T = data.max_length tokens: the encoder's layers, then BERT's transform
(d x d) and the tied output projection (d x V). Evaluation projects every
position; a train step only the gathered slots (gather.capacity of B*T at
train.mask_rate, tasks/masked_lm/gather.py):

  eval step = L_enc * encoder_layer_flops(B, T) + (2*d*d + 2*d*V) * B*T
  train step = 3 * (L_enc * encoder_layer_flops(B, T)
                    + (2*d*d + 2*d*V) * capacity)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transformer import measure
from transformer import train as train_lib
from transformer.config import Config, ModelConfig
from transformer.tasks.base import BenchmarkBatches, BenchmarkHooks
from transformer.tasks.language_model.benchmark import random_lm_batch
from transformer.tasks.masked_lm import data as data_lib
from transformer.tasks.masked_lm import gather


def mlm_forward_flops(model_config: ModelConfig, batch: int,
                      length: int, predicted: int | None = None) -> float:
  """Matmul FLOPs of MaskedLanguageModel's forward pass over [batch,
  length]: the encoder, then the transform and the output projection at
  `predicted` positions (default: all of them)."""
  d, v = float(model_config.d_model), float(model_config.vocab_size)
  predicted = batch * length if predicted is None else predicted
  return (model_config.num_encoder_layers
          * measure.encoder_layer_flops(model_config, batch, length)
          + (2 * d * d + 2 * d * v) * predicted)


def mlm_eval_flops(config: Config) -> float:
  return mlm_forward_flops(config.model, config.data.batch_size,
                           config.data.max_length)


def mlm_train_flops(config: Config) -> float:
  b, t = config.data.batch_size, config.data.max_length
  slots = gather.capacity(b * t, config.train.mask_rate)
  return 3.0 * mlm_forward_flops(config.model, b, t, slots)


class MaskedLMBenchmark(BenchmarkHooks):
  """task='masked_lm': real or random packed rows, rates in real tokens,
  the encoder's FLOPs with the transform and output projection."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    del decode_repeats
    return {'task': self.config.task}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> BenchmarkBatches:
    tokenizer, host_batches, what, note = measure.train_batches(
        self.task, workdir, count, rng, random=random_lm_batch)
    eval_host = []
    for b in host_batches:
      real = {**b, 'weights': (b['targets_segmentation'] > 0
                               ).astype(np.float32)}
      eval_host.append(data_lib.mask_eval_batch(self.config, real, 0))
    batches = [train_lib.global_batch(b, mesh) for b in host_batches]
    eval_batches = [train_lib.global_batch(b, mesh) for b in eval_host]
    return BenchmarkBatches(
        batches, eval_batches,
        {'tokens': measure.real_tokens(host_batches, 'targets'),
         'masked': [int(b['weights'].sum()) for b in eval_host]},
        what, note, tokenizer)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_lm_batch(self.config, rng, rows)

  def train_flops(self) -> float:
    return mlm_train_flops(self.config)

  def eval_flops(self) -> float:
    return mlm_eval_flops(self.config)

  def train_rates(self, data: BenchmarkBatches, step_s: float
                  ) -> dict[str, float]:
    tokens = data.timed_mean('tokens')
    return {'train_tokens_per_s': tokens / step_s,
            'train_tokens_per_step': tokens}

  def eval_rates(self, data: BenchmarkBatches, seconds: float
                 ) -> dict[str, float]:
    return {'eval_tokens_per_s': data.timed_mean('tokens') / seconds,
            'eval_masked_tokens_per_step': data.timed_mean('masked')}

  def task_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
    return [('task', f'{r["task"]}: encoder, transform and tied output '
                     'projection at every position')]

  def train_rate_row(self, r: dict[str, Any]) -> tuple[str, str]:
    return ('train tokens/s', f'{r["train_tokens_per_s"]:,.0f} '
                              f'({r["train_tokens_per_step"]:,.0f} real '
                              'tokens per step)')

  def eval_rate_text(self, r: dict[str, Any]) -> str:
    return (f'{r["eval_tokens_per_s"]:,.0f} tokens/s '
            f'({r["eval_masked_tokens_per_step"]:,.0f} masked per batch)')
