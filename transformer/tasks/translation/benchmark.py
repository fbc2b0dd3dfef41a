"""What --mode=benchmark measures of translation (transformer/benchmark.py
times the steps, counts memory, measures the peak and prints the table).

Batches: real ones (the workdir's tokenizer, trained with `load_or_train`
if missing, and `pipeline.train_dataset`) when the data is there, else
random tokens of the same shape (`random_batch`: [batch_size, max_length]
int32, no padding). Rates count real (non-PAD) target tokens, and source
tokens beside them.

Model FLOPs: matrix multiplications only, counted as 2 * m * n * k
(embedding lookups, softmax, LayerNorm, masks, biases, the loss and the
optimizer are left out: a few percent at these sizes). With B rows, S
source and T target positions, d = d_model, f = d_ff, V = vocab_size, per
layer:

  encoder layer   Q, K, V, O projections     4 * 2*B*S*d*d
                  scores Q K^T, values A V   2 * 2*B*S*S*d  (all S*S pairs)
                  feed-forward               2 * 2*B*S*d*f
  decoder layer   self-attention             4 * 2*B*T*d*d + 2 * 2*B*T*T*d
                                             (the full T*T, as computed)
                  cross-attention Q, O       2 * 2*B*T*d*d
                  cross-attention K, V       2 * 2*B*S*d*d  (encoder side)
                  cross scores, values       2 * 2*B*T*S*d
                  feed-forward               2 * 2*B*T*d*f
  output projection                          2*B*T*d*V (tied or not)

  forward = L_enc * encoder + L_dec * decoder + output projection
  train step = 3 * forward (backward = 2 * forward), eval step = forward,
  over data.batch_size rows of data.max_length source and target positions.

Also measured:

  decoding   `greedy_decode` and `beam_search` (beam 4) of one fixed batch
             of sources, the same for both: the first test sentences (as
             evaluation batches them) or random [eval_batch_size,
             max_length] sources ending in EOS; seconds per batch,
             sentences/s, generated tokens/s, and the beam-4 / greedy time
             ratio. The workdir's latest checkpoint decodes when there is
             one, else the fresh parameters with EOS suppressed
             (`measure.never_eos`);
  input      `pipeline.measure_input_pipeline` alone: batches/s, and how
             many times faster than the train step it produces them.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from transformer import measure
from transformer import train as train_lib
from transformer.config import Config, ModelConfig
from transformer.data.bible import CorpusUnavailableError
from transformer.data.corpus import DataError
from transformer.tasks import base
from transformer.tasks.translation import decode as decode_lib
from transformer.tasks.translation import pipeline

BEAM_SIZE = 4
# What makes decoding fall back to random sources: the test split is missing.
TEST_SPLIT_ERRORS = (OSError, DataError, CorpusUnavailableError)


# ---------------------------------------------------------------------------
# FLOPs (module docstring).
# ---------------------------------------------------------------------------


def forward_flops(model_config: ModelConfig, batch: int, src_len: int,
                  tgt_len: int) -> float:
  """Matmul FLOPs of one teacher-forced forward pass (module docstring)."""
  c = model_config
  b, s, t = float(batch), float(src_len), float(tgt_len)
  d, f, v = float(c.d_model), float(c.d_ff), float(c.vocab_size)
  encoder = measure.encoder_layer_flops(c, batch, src_len)
  decoder = (4 * 2 * b * t * d * d + 2 * 2 * b * t * t * d  # self-attention
             + 2 * 2 * b * t * d * d  # cross-attention Q and O
             + 2 * 2 * b * s * d * d  # cross-attention K and V (encoder side)
             + 2 * 2 * b * t * s * d  # cross-attention scores and values
             + 2 * 2 * b * t * d * f)  # feed-forward
  output = 2 * b * t * d * v
  return (c.num_encoder_layers * encoder + c.num_decoder_layers * decoder
          + output)


def train_flops(config: Config) -> float:
  """Model FLOPs of one train step on a global batch: 3 * forward."""
  length = config.data.max_length
  return 3.0 * forward_flops(config.model, config.data.batch_size, length,
                             length)


def eval_flops(config: Config) -> float:
  """Model FLOPs of one eval step on a global training batch: one forward."""
  length = config.data.max_length
  return forward_flops(config.model, config.data.batch_size, length, length)


# ---------------------------------------------------------------------------
# Inputs.
# ---------------------------------------------------------------------------


def random_batch(config: Config, rng: np.random.Generator, rows: int
                 ) -> dict[str, np.ndarray]:
  """A batch of the pipeline's keys and shape: one sentence per row, no PAD."""
  length = config.data.max_length
  positions = np.broadcast_to(np.arange(length, dtype=np.int32),
                              (rows, length)).copy()
  ones = np.ones((rows, length), np.int32)
  vocab = config.model.vocab_size
  return {'inputs': measure.random_ids(rng, rows, length, vocab),
          'targets': measure.random_ids(rng, rows, length, vocab),
          'inputs_segmentation': ones, 'targets_segmentation': ones.copy(),
          'inputs_positions': positions, 'targets_positions': positions.copy()}


def decode_inputs(config: Config, tokenizer, rng: np.random.Generator
                  ) -> tuple[np.ndarray, int, str]:
  """(global [rows, S] sources, real sentences among them, description)."""
  rows = config.data.eval_batch_size
  if tokenizer is not None:
    try:
      data = pipeline.eval_dataset(config, tokenizer, 'test', rows)
      first = data.batches[0]
      return (first.batch['inputs'], int(first.valid.sum()),
              f'the first {int(first.valid.sum())} test sentences, batched as '
              'evaluation does')
    except TEST_SPLIT_ERRORS as error:
      note = f' (test split unavailable: {error})'
  else:
    note = ''
  return (measure.random_ids(rng, rows, config.data.max_length,
                             config.model.vocab_size), rows,
          f'random ids [{rows}, {config.data.max_length}] ending in EOS'
          + note)


# ---------------------------------------------------------------------------
# Decoding and the input pipeline.
# ---------------------------------------------------------------------------

# name -> (decode the batch, its output -> the best [B, L] tokens)
Decoders = dict[str, tuple[Callable[[], Any], Callable[[Any], jax.Array]]]


def decoders(config: Config, params, inputs: jax.Array) -> Decoders:
  """Greedy and beam-4 decoding of `inputs` with evaluation's settings."""
  extra = config.eval.max_extra_length
  return {
      'greedy': (lambda: decode_lib.greedy_decode(
          params, config.model, inputs, max_extra_length=extra),
                 lambda tokens: tokens),
      'beam4': (lambda: decode_lib.beam_search(
          params, config.model, inputs, beam_size=BEAM_SIZE,
          length_penalty=config.eval.length_penalty, max_extra_length=extra),
                lambda output: output[0][:, 0]),
  }


def measure_decoding(task, workdir: str, mesh, train_params, tokenizer,
                     rng: np.random.Generator, repeats: int,
                     log: Callable[[str], None]) -> dict[str, Any]:
  """Greedy and beam 4 on one fixed batch of sources, the same for both."""
  config = task.config
  params, params_note = measure.decode_params(task, workdir, mesh,
                                              train_params)
  sources, sentences, what = decode_inputs(config, tokenizer, rng)
  result: dict[str, Any] = {'decode_params': params_note,
                            'decode_inputs': what,
                            'decode_input_shape': list(sources.shape)}
  inputs = train_lib.global_batch({'inputs': measure.local_rows(sources)},
                                  mesh)['inputs']
  for name, (decode, best) in decoders(config, params, inputs).items():
    result.update(measure.time_decoder(name, decode, best, sentences,
                                       repeats))
    log(f'  {name} decoding timed ({repeats} batches)')
  result['beam4_over_greedy'] = result['beam4_s'] / result['greedy_s']
  return result


def measure_input(config: Config, tokenizer, num_batches: int,
                  train_step_s: float, log: Callable[[str], None]
                  ) -> dict[str, float | None]:
  """The input pipeline alone, and how many times faster than the train step
  it produces batches; all None without real data (no tokenizer)."""
  if tokenizer is None:
    return {'input_batches_per_s': None, 'input_tokens_per_s': None,
            'input_packing_efficiency': None, 'input_over_train': None}
  speed = pipeline.measure_input_pipeline(config, tokenizer,
                                          num_batches=num_batches)
  log(f'  input pipeline timed ({num_batches} batches)')
  return {
      'input_batches_per_s': speed['batches_per_second'],
      'input_tokens_per_s': speed['tokens_per_second'],
      'input_packing_efficiency': speed['packing_efficiency'],
      'input_over_train': speed['batches_per_second'] * train_step_s,
  }


# ---------------------------------------------------------------------------
# The hooks.
# ---------------------------------------------------------------------------


def decoding_row(r: dict[str, Any], name: str) -> str:
  """The table's row of decoder `name` ('greedy', 'beam4')."""
  return (f'{r[name + "_s"]:.3f} s/batch '
          f'({r[name + "_min_s"]:.3f} - {r[name + "_max_s"]:.3f}), '
          f'{r[name + "_sentences_per_s"]:.1f} sentences/s, '
          f'{r[name + "_tokens_per_s"]:,.0f} tokens/s, mean length '
          f'{r[name + "_mean_output_length"]:.1f}; first call '
          f'{r[name + "_first_call_s"]:.2f} s')


def input_row(r: dict[str, Any]) -> str:
  """The table's row of the input pipeline."""
  if r['input_batches_per_s'] is None:
    return 'n/a (random batches)'
  return (f'{r["input_batches_per_s"]:.1f} batches/s, '
          f'{r["input_tokens_per_s"]:,.0f} tokens/s, packing '
          f'{100 * r["input_packing_efficiency"]:.1f}%; '
          f'{measure.ratio(r["input_over_train"])} the train step rate')


class TranslationHooks(base.BenchmarkHooks):
  """task='translation': real batches when the data is there, rates in
  target (and source) tokens, the encoder-decoder's FLOPs, and decoding and
  the input pipeline measured too."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    return {'decode_repeats': decode_repeats}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> base.BenchmarkBatches:
    """Real ones if the data is there, else random (`measure.train_batches`
    with `random_batch`)."""
    tokenizer, host_batches, data, note = measure.train_batches(
        self.task, workdir, count, rng, random_batch)
    batches = [train_lib.global_batch(b, mesh) for b in host_batches]
    return base.BenchmarkBatches(
        batches, batches,
        {'target_tokens': measure.real_tokens(host_batches, 'targets'),
         'source_tokens': measure.real_tokens(host_batches, 'inputs')},
        data, note, tokenizer)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_batch(self.config, rng, rows)

  def train_flops(self) -> float:
    return train_flops(self.config)

  def eval_flops(self) -> float:
    return eval_flops(self.config)

  def train_rates(self, data: base.BenchmarkBatches, step_s: float
                  ) -> dict[str, float]:
    target = data.timed_mean('target_tokens')
    return {'train_tokens_per_s': target / step_s,
            'train_source_tokens_per_s': data.timed_mean('source_tokens')
                                         / step_s,
            'train_target_tokens_per_step': target}

  def eval_rates(self, data: base.BenchmarkBatches, seconds: float
                 ) -> dict[str, float]:
    return {'eval_tokens_per_s': data.timed_mean('target_tokens') / seconds}

  def task_measurements(self, *, workdir: str, mesh, params,
                        data: base.BenchmarkBatches,
                        rng: np.random.Generator, step_s: float,
                        decode_repeats: int, input_batches: int,
                        log: Callable[[str], None]) -> dict[str, Any]:
    """Greedy and beam-4 decoding, and the input pipeline alone."""
    result = measure_decoding(self.task, workdir, mesh, params,
                              data.tokenizer, rng, decode_repeats, log)
    result.update(measure_input(self.config, data.tokenizer, input_batches,
                                step_s, log))
    return result

  def train_rate_row(self, r: dict[str, Any]) -> tuple[str, str]:
    return ('train tokens/s', f'{r["train_tokens_per_s"]:,.0f} target '
                              f'({r["train_source_tokens_per_s"]:,.0f} '
                              'source)')

  def eval_rate_text(self, r: dict[str, Any]) -> str:
    return f'{r["eval_tokens_per_s"]:,.0f} tokens/s'

  def extra_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ('decode inputs', f'{r["decode_inputs"]}; params: '
                          f'{r["decode_params"]}'),
        ('greedy', decoding_row(r, 'greedy')),
        ('beam 4', decoding_row(r, 'beam4')),
        ('beam 4 / greedy', measure.ratio(r['beam4_over_greedy'])),
        ('input pipeline', input_row(r)),
    ]
