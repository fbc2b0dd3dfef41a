"""Speed of training, evaluation, decoding and the input pipeline; FLOPs and MFU.

`run(config, workdir)` (`launch.py --mode=benchmark`) measures, in one
process, the task of `config` (`benchmark_task`, or one passed as `task=`).
What every task family shares:

  train step   the step training runs (`make_mesh`, `jit_init_state`,
               `jit_train_step`: same sharding, donated state): compile time
               (`compile_s`: trace, lower and XLA-compile the step; the first
               call of training takes compile_s + first_step_s), then the
               median, min, max and quartiles of `repeats` steps after a
               warm-up, each timed to `jax.block_until_ready`;
  eval step    `jit_eval_step` on the same batches;
  FLOPs, MFU   model FLOPs per step from the family's formula below, achieved
               FLOP/s = FLOPs / median step time, MFU = achieved / peak;
  memory       peak device memory (GPU/TPU) or the process's peak resident
               memory (CPU); XLA's memory analysis of the compiled train
               step (`step_memory`): its temporary buffers (activations
               kept for the backward pass, gradients, workspace), arguments
               and outputs, per device; and the bytes of activations JAX
               saves for the backward pass (`step_residual_bytes`: what
               model.remat trades for recomputation, on any backend --
               XLA:CPU undoes remat of unrolled layers, so there only this
               count shows it unless model.scan_layers is on);
  remat        with `run(..., remat_memory=True)`, or alone with
               `measure_remat_memory(config)`: for every model.remat, the
               residuals and the train step compiled ahead of time from
               abstract shapes (nothing allocated or run, so a model too
               big for the host can be measured): its temporary memory.

What differs by task family is asked of a `TaskFamily`, found by the task's
class (`FAMILIES`): the batches, the FLOP counts, the rates (tokens,
examples) and what only that family measures. Translation
(`TranslationFamily`) also measures:

  decoding     `greedy_decode` and `beam_search` (beam 4) of one fixed batch of
               sources, the same for both: seconds per batch, sentences/s,
               generated tokens/s, and the beam-4 / greedy time ratio;
  input        `pipeline.measure_input_pipeline` alone: batches/s, and how
               many times faster than the train step it produces them.

Classification and regression (`LabelledFamily`) decode nothing and have no
such pipeline measurement. The language model (`LanguageModelFamily`)
measures instead:

  generation   `generate.generate` (the key/value cache) of one batch of
               data.eval_batch_size prompts of P = min(16, max_length / 2)
               tokens continued by up to N = data.max_length - P new ones,
               so that the cache and the last step hold data.max_length
               positions of context: greedy, and sampled with
               SAMPLE_SETTINGS (temperature 1, top-p 0.9): seconds per
               batch, new tokens/s, and seconds per step (the batch's time
               over its P + longest continuation loop steps; every step is
               one cached step over the whole buffer, whatever its
               position, so this is also the time of a new token at the
               full context);
  no cache     one new token by re-running the whole prefix of
               data.max_length tokens through the teacher-forced forward
               pass (`uncached_next_token`, greedy), the way generation
               without a cache does at that context, and the ratio of its
               time to the greedy cached step (generate_cached_speedup).
               Its forward pass also projects every position onto the
               vocabulary, where only the last is needed: with a small
               vocabulary (characters) a few percent.

Translation batches: real ones (the workdir's tokenizer, trained with
`load_or_train` if missing, and `pipeline.train_dataset`) when the data is
there, else random tokens of the same shape ([batch_size, max_length] int32,
no padding). Decoding takes the first test sentences (as evaluation batches
them) or random [eval_batch_size, max_length] sources ending in EOS. Decoding
uses the workdir's latest checkpoint when there is one, else the fresh
parameters, whose output lengths (and so decoding times) are not a trained
model's: greedy tends to run to the length limit, beam search to stop at
once on an early EOS. Mean output lengths are reported; the output says what
was used.

Language-model batches: like translation's, real ones (the workdir's
tokenizer, trained with `load_or_train` on the task's corpus if missing, and
the task's `lm.train_dataset`: packed documents) when the data is there,
else random full rows (`random_lm_batch`: one document per row, random
ordinary ids, the last EOS, no padding); the eval step's add 'weights' (1.0
on the real tokens). Prompts are the first P tokens of the first test
documents that have as many, or random ids. Generation uses a checkpoint or
the fresh parameters with EOS suppressed, as decoding does.

Classification and regression batches: always random, no workdir or data
needed (`random_labelled_batch`): 'inputs' [batch_size, max_length] int32 in
full rows (every position a random ordinary token, the last EOS, as the
labelled pipeline ends a text; no padding, so every slot is real work and
MFU is not diluted by padding) and 'labels' (uniform class ids, or standard
normal targets); the eval step's batches add 'weights' (ones). The task by
default (`benchmark_task`) is a Classification of BENCHMARK_CLASSES = 4
classes (2 with train.loss='log_loss': one sigmoid output), no class
weights, or a Regression (mean 0, std 1).

Model FLOPs: matrix multiplications only, counted as 2 * m * n * k; embedding
lookups, softmax, LayerNorm, masks, pooling, biases, the loss and the
optimizer are left out (a few percent at these sizes). With B rows, S source
and T target positions, d = d_model, f = d_ff, V = vocab_size, K = the head's
outputs, per layer:

  encoder layer:  Q, K, V, O projections     4 * 2*B*S*d*d
  (`encoder_      scores Q K^T, values A V   2 * 2*B*S*S*d   (heads * head_dim
  layer_flops`)                                               = d; all S*S
                                                              pairs, masked
                                                              ones included)
                  feed-forward               2 * 2*B*S*d*f
  decoder layer:  self-attention             4 * 2*B*T*d*d + 2 * 2*B*T*T*d
                                             (the full T*T, as computed,
                                             though causal masking hides half)
                  cross-attention Q, O       2 * 2*B*T*d*d
                  cross-attention K, V       2 * 2*B*S*d*d   (encoder side,
                                                              S long)
                  cross scores, values       2 * 2*B*T*S*d
                  feed-forward               2 * 2*B*T*d*f
  language-model layer: as an encoder layer over T positions (masked
                  self-attention with the full T*T scores and values, as
                  computed: causal masking hides half but XLA multiplies
                  them all; no cross-attention; the FFN)
  output projection                          2*B*T*d*V (tied or not)
  classifier head (on the pooled [B, d])     2*B*d*K

  translation (`forward_flops`):
    forward = L_enc * encoder + L_dec * decoder + output projection
  language model (`lm_forward_flops`; LanguageModel builds no encoder,
  whatever num_encoder_layers says):
    forward = L_dec * language-model layer (T = data.max_length) + output
              projection
  classification, regression (`labelled_forward_flops`; EncoderClassifier
  builds no decoder, whatever num_decoder_layers says):
    forward = L_enc * encoder (S = data.max_length) + classifier head
  train step (`train_flops`, `lm_train_flops`, `labelled_train_flops`)
          = 3 * forward
          (backward = 2 * forward: the gradients with respect to both inputs
          of every matmul), over data.batch_size rows of data.max_length
          source (and target) positions.
  eval step (`eval_flops`, `lm_eval_flops`, `labelled_eval_flops`)
          = forward, on the same
          batch.

`run` takes the model's FLOPs per step only from the family
(`TaskFamily.train_flops`, `eval_flops`): a model family of another shape
brings its own pair.

FLOPs count token slots, padding included: that is the work the step does.
Token throughputs count real (non-PAD) tokens: translation's target tokens
(and source tokens), the language model's tokens, classification's and
regression's input tokens.

Peak FLOP/s: on GPU and TPU the chip's published dense peak for the compute
dtype (`PEAK_FLOPS`, by `device_kind`) times the number of devices; an unknown
chip gets MFU None with a note. On CPU there is no published number: the peak
is the throughput of a large jitted matrix multiplication in the model's dtype
(2048 x 2048 @ 2048 x 2048, the median of several), measured in the same run
before and after the train steps, the larger of the two.

benchmark.json (what `run` returns): times in seconds, rates per second.
Every task: jax_version, platform, device_kind, num_devices, process_count,
allocator, batch_size, max_length, eval_batch_size, dtype, attention_impl,
remat, scan_layers, repeats, date, data and data_note, num_params,
compile_s, step_temp_bytes, step_argument_bytes, step_output_bytes,
step_alias_bytes (None without a memory analysis), step_residual_bytes,
first_step_s,
final_loss, train_step_s (median of steps each waited for; also _min_s,
_max_s, _p25_s, _p75_s), train_step_back_to_back_s (the same steps run back
to back, as training runs them, in BACK_TO_BACK_GROUPS groups: the median
group's mean step; throughput and MFU use this), train_steps_per_s,
train_tokens_per_s, train_flops, xla_train_flops (XLA's count, a
cross-check; with model.scan_layers it counts the loop's body once),
train_flops_per_s, matmul_flops_per_s (and on CPU
matmul_flops_per_s_before_after), peak_flops_per_s and peak_source,
train_mfu (None for an unknown accelerator), eval_compile_s, eval_step_s
(also _min_s, _max_s), eval_tokens_per_s, eval_mfu, peak_memory_bytes and
peak_memory_source, benchmark_wall_s; with remat_memory=True also, per
model.remat MODE, step_residual_bytes_remat_MODE, step_temp_bytes_remat_MODE
and compile_s_remat_MODE, and for 'full' and 'dots'
step_residual_remat_MODE_over_none and step_temp_remat_MODE_over_none.
Translation adds: decode_repeats, train_tokens_per_s in real target tokens,
train_source_tokens_per_s, train_target_tokens_per_step, greedy_s and
beam4_s (seconds per batch; _min_s, _max_s, _sentences_per_s,
_tokens_per_s, _mean_output_length, _max_output_length, _first_call_s),
beam4_over_greedy,
decode_inputs, decode_params, decode_input_shape, input_batches_per_s,
input_tokens_per_s, input_packing_efficiency, input_over_train (input
batches/s over train steps/s; None with random batches).
Classification and regression add: task, num_outputs (the head's),
train_examples_per_s, train_tokens_per_s in real input tokens,
train_examples_per_step, train_tokens_per_step, eval_examples_per_s.
The language model adds: task, decode_repeats, train_tokens_per_step (real
tokens), generate_params, generate_prompts, generate_rows,
generate_context, generate_prompt_length, generate_max_new_tokens,
generate_sample_settings; generate_greedy_ and generate_sample_ s (seconds
per batch), _min_s, _max_s, _first_call_s, _tokens_per_s (new tokens),
_sentences_per_s (continuations), _mean_output_length and
_max_output_length (new tokens, EOS included), _step_s;
generate_uncached_first_call_s, generate_uncached_token_s (seconds per new
token of all rows; _min_s, _max_s), generate_uncached_tokens_per_s,
generate_cached_speedup.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from transformer import attention
from transformer import decode as decode_lib
from transformer import tasks
from transformer import train as train_lib
from transformer.config import (BOS_ID, EOS_ID, PAD_ID, Config,
                                ModelConfig)
from transformer.tasks import labelled as labelled_tasks
from transformer.tasks import language_model as lm_tasks
from transformer.tasks import translation as translation_tasks

RESULT_FILENAME = 'benchmark.json'
BEAM_SIZE = 4
# Steps run after the compiling one and before timing starts.
WARMUP_STEPS = 2
CPU_MATMUL_SIZE = 2048
ACCELERATOR_MATMUL_SIZE = 8192
MATMUL_REPEATS = 5
BACK_TO_BACK_GROUPS = 4  # the timed train steps, run back to back in groups

# Published dense (no sparsity) peak FLOP/s per chip.
#   'bf16': bfloat16 inputs on the matrix units (tensor cores, MXUs).
#   'tf32': float32 inputs at JAX's default matmul precision on NVIDIA GPUs,
#           which uses TF32 tensor cores ("By default, JAX leans toward speed:
#           float32 dot products may be computed with reduced-precision
#           arithmetic internally (bfloat16 on TPU, TF32 on recent GPUs)",
#           https://docs.jax.dev/en/latest/201/precision.html).
#   'fp32': true float32 (jax_default_matmul_precision='highest'): on GPUs
#           the non-tensor FP32 rate.
# TPUs publish only bf16; float32 matmuls at default precision run as bf16
# passes, so bf16 is the peak for both dtypes there.
# Matched in order against jax.devices()[0].device_kind, lower-cased.
PEAK_FLOPS: tuple[tuple[str, str, dict[str, float], str], ...] = (
    # NVIDIA H100 datasheet / Hopper whitepaper (the datasheet's tensor
    # numbers are with sparsity: halved here). SXM5: BF16 989.4, TF32 494.7,
    # FP32 66.9 TFLOPS (132 SMs at 1.83 GHz; see also
    # https://glennklockwood.com/garden/processors/h100). PCIe: BF16 756,
    # TF32 378, FP32 51 TFLOPS.
    ('h100', 'pcie', {'bf16': 756e12, 'tf32': 378e12, 'fp32': 51.2e12},
     'NVIDIA H100 PCIe datasheet (dense)'),
    ('h100', '', {'bf16': 989.4e12, 'tf32': 494.7e12, 'fp32': 66.9e12},
     'NVIDIA H100 SXM5 datasheet (dense)'),
    # H200: the same GH100 compute as H100 SXM with more, faster HBM3e
    # (NVIDIA H200 datasheet: 989 TFLOPS BF16 dense, 67 TFLOPS FP32).
    ('h200', '', {'bf16': 989.4e12, 'tf32': 494.7e12, 'fp32': 66.9e12},
     'NVIDIA H200 datasheet (dense; = H100 SXM)'),
    # NVIDIA A100 datasheet: BF16 312, TF32 156, FP32 19.5 TFLOPS (SXM and
    # PCIe alike).
    ('a100', '', {'bf16': 312e12, 'tf32': 156e12, 'fp32': 19.5e12},
     'NVIDIA A100 datasheet (dense)'),
    # Cloud TPU system architecture pages (https://cloud.google.com/tpu/docs/
    # v4, v5e, v5p, v6e): peak bf16 compute per chip. device_kind is
    # 'TPU v4', 'TPU v5 lite' (v5e), 'TPU v5' / 'TPU v5p', 'TPU v6 lite' (v6e).
    ('tpu v5 lite', '', {'bf16': 197e12}, 'Cloud TPU v5e docs'),
    ('tpu v5e', '', {'bf16': 197e12}, 'Cloud TPU v5e docs'),
    ('tpu v6 lite', '', {'bf16': 918e12}, 'Cloud TPU v6e (Trillium) docs'),
    ('tpu v6e', '', {'bf16': 918e12}, 'Cloud TPU v6e (Trillium) docs'),
    ('tpu v5', '', {'bf16': 459e12}, 'Cloud TPU v5p docs'),  # 'TPU v5', 'v5p'
    ('tpu v4', '', {'bf16': 275e12}, 'Cloud TPU v4 docs'),
)


# ---------------------------------------------------------------------------
# FLOPs.
# ---------------------------------------------------------------------------


def encoder_layer_flops(model_config: ModelConfig, batch: int,
                        length: int) -> float:
  """Matmul FLOPs of one encoder layer's forward pass over [batch, length]."""
  b, s = float(batch), float(length)
  d, f = float(model_config.d_model), float(model_config.d_ff)
  return (4 * 2 * b * s * d * d  # Q, K, V, O projections
          + 2 * 2 * b * s * s * d  # Q K^T and A V over all heads
          + 2 * 2 * b * s * d * f)  # feed-forward


def forward_flops(model_config: ModelConfig, batch: int, src_len: int,
                  tgt_len: int) -> float:
  """Matmul FLOPs of one teacher-forced forward pass (module docstring)."""
  c = model_config
  b, s, t = float(batch), float(src_len), float(tgt_len)
  d, f, v = float(c.d_model), float(c.d_ff), float(c.vocab_size)
  encoder = encoder_layer_flops(c, batch, src_len)
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


def lm_forward_flops(model_config: ModelConfig, batch: int,
                     length: int) -> float:
  """Matmul FLOPs of `LanguageModel`'s forward pass over [batch, length]:
  its decoder layers, which have no encoder-decoder attention (each one
  counts as an encoder layer does: Q, K, V, O, the full length x length
  scores and values as computed, though causal masking hides half; the
  FFN), then the output projection. The encoder layers of the config are
  never built."""
  b, t = float(batch), float(length)
  d, v = float(model_config.d_model), float(model_config.vocab_size)
  output = 2 * b * t * d * v  # [B*T, d] @ [d, V], tied or not
  return (model_config.num_decoder_layers
          * encoder_layer_flops(model_config, batch, length) + output)


def lm_train_flops(config: Config) -> float:
  """Model FLOPs of one language-model train step on a global batch of
  data.batch_size rows of data.max_length tokens: 3 * forward."""
  return 3.0 * lm_eval_flops(config)


def lm_eval_flops(config: Config) -> float:
  """Model FLOPs of its eval step on the same batch: one forward."""
  return lm_forward_flops(config.model, config.data.batch_size,
                          config.data.max_length)


def labelled_forward_flops(model_config: ModelConfig, batch: int, length: int,
                           num_outputs: int) -> float:
  """Matmul FLOPs of `EncoderClassifier`'s forward pass (classification,
  regression): the encoder's layers, then the head on the pooled vectors."""
  b, d = float(batch), float(model_config.d_model)
  head = 2 * b * d * float(num_outputs)  # [B, d] @ [d, outputs]
  return (model_config.num_encoder_layers
          * encoder_layer_flops(model_config, batch, length) + head)


def labelled_train_flops(task) -> float:
  """Model FLOPs of one train step of a classification or regression task on
  a global batch of data.batch_size rows of data.max_length: 3 * forward."""
  c = task.config
  return 3.0 * labelled_forward_flops(c.model, c.data.batch_size,
                                      c.data.max_length, task.num_outputs)


def labelled_eval_flops(task) -> float:
  """Model FLOPs of its eval step on the same batch: one forward."""
  c = task.config
  return labelled_forward_flops(c.model, c.data.batch_size, c.data.max_length,
                                task.num_outputs)


def xla_flops(compiled) -> float | None:
  """XLA's own FLOP count of a compiled computation, if it gives one."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # not every backend implements it
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


# ---------------------------------------------------------------------------
# Peak FLOP/s and memory.
# ---------------------------------------------------------------------------


def _matmul_precision_kind() -> str:
  precision = str(jax.config.jax_default_matmul_precision or '').lower()
  if precision in ('highest', 'float32', 'f32_f32_f32'):
    return 'fp32'
  return 'tf32'


def published_peak(device_kind: str, dtype: str
                   ) -> tuple[float | None, str]:
  """(peak FLOP/s of one chip, where it comes from), or (None, why not)."""
  kind = device_kind.lower()
  for name, variant, peaks, source in PEAK_FLOPS:
    if name in kind and variant in kind:
      if 'tf32' not in peaks:  # TPU: bf16 is the only published rate
        return peaks['bf16'], f'{source}: bf16 {peaks["bf16"] / 1e12:g} TFLOP/s'
      key = 'bf16' if dtype == 'bfloat16' else _matmul_precision_kind()
      return peaks[key], f'{source}: {key} {peaks[key] / 1e12:g} TFLOP/s'
  return None, (f'no published peak for device_kind {device_kind!r} in '
                'benchmark.PEAK_FLOPS: MFU not computed')


def measure_matmul(size: int, dtype: str, repeats: int = MATMUL_REPEATS
                   ) -> float:
  """FLOP/s of a jitted [size, size] @ [size, size] matmul: median of runs."""
  matmul = jax.jit(jnp.matmul)
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  jax.block_until_ready(matmul(a, b))  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - start)
  return 2.0 * size**3 / statistics.median(times)


def memory_allocator() -> str:
  """'tcmalloc' when this process runs under TCMalloc (launch.py preloads it
  where installed), else 'system malloc'. On CPU it decides whether a step
  reuses its buffers or page-faults them in afresh (see launch.py)."""
  try:
    with open('/proc/self/maps', encoding='utf-8') as maps:
      if 'libtcmalloc' in maps.read():
        return 'tcmalloc'
  except OSError:  # not Linux
    pass
  return 'system malloc'


def peak_memory() -> tuple[int | None, str]:
  """(bytes, what was measured): device peak on GPU/TPU, else peak RSS."""
  device = jax.local_devices()[0]
  if device.platform != 'cpu':
    try:
      stats = device.memory_stats() or {}
    except Exception:  # pylint: disable=broad-except
      stats = {}
    if 'peak_bytes_in_use' in stats:
      return int(stats['peak_bytes_in_use']), (
          'device memory_stats()["peak_bytes_in_use"] of device 0, over '
          'the whole process')
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  rss *= 1 if sys.platform == 'darwin' else 1024  # Linux reports KiB
  return int(rss), ('peak resident memory of the process (ru_maxrss), host '
                    'side: parameters, activations, data and the compiler')


# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------


def training_attention(model: ModelConfig, length: int) -> str:
  """Which implementation the train step's attention resolves to."""
  if model.attention_dropout_rate > 0:
    return 'explicit (attention dropout)'
  return attention.resolve_implementation(model.attention_impl, model.dtype,
                                          model.head_dim, length)


def _summary(times: list[float]) -> dict[str, float]:
  q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (
      times[0],) * 3
  return {'median': statistics.median(times), 'min': min(times),
          'max': max(times), 'p25': q1, 'p75': q3}


def _time_calls(call: Callable[[], Any], repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return times


# ---------------------------------------------------------------------------
# Inputs.
# ---------------------------------------------------------------------------


def _random_ids(rng: np.random.Generator, rows: int, length: int,
                vocab_size: int) -> np.ndarray:
  """[rows, length] int32 ids, none of them special, the last one EOS."""
  if vocab_size <= EOS_ID + 1:
    raise ValueError(f'model.vocab_size={vocab_size} leaves no ordinary '
                     'token for random batches')
  ids = rng.integers(EOS_ID + 1, vocab_size, (rows, length), dtype=np.int32)
  ids[:, -1] = EOS_ID
  return ids


def random_batch(config: Config, rng: np.random.Generator, rows: int
                 ) -> dict[str, np.ndarray]:
  """A batch of the pipeline's keys and shape: one sentence per row, no PAD."""
  length = config.data.max_length
  positions = np.broadcast_to(np.arange(length, dtype=np.int32),
                              (rows, length)).copy()
  ones = np.ones((rows, length), np.int32)
  vocab = config.model.vocab_size
  return {'inputs': _random_ids(rng, rows, length, vocab),
          'targets': _random_ids(rng, rows, length, vocab),
          'inputs_segmentation': ones, 'targets_segmentation': ones.copy(),
          'inputs_positions': positions, 'targets_positions': positions.copy()}


def _data_errors() -> tuple[type[BaseException], ...]:
  errors: list[type[BaseException]] = [OSError]
  try:
    from transformer.data.corpus import DataError  # pylint: disable=g-import-not-at-top
    from transformer.data.bible import CorpusUnavailableError  # pylint: disable=g-import-not-at-top
    errors += [DataError, CorpusUnavailableError]
  except ImportError:
    pass
  return tuple(errors)


def random_lm_batch(config: Config, rng: np.random.Generator, rows: int
                    ) -> dict[str, np.ndarray]:
  """A language-model batch of lm.BATCH_KEYS: one document per row, the
  whole row (random ordinary ids, the last EOS), no PAD."""
  batch = random_batch(config, rng, rows)
  return {k: batch[k] for k in ('targets', 'targets_positions',
                                'targets_segmentation')}


def train_batches(config: Config, workdir: str, count: int,
                  rng: np.random.Generator, task=None,
                  random: Callable[..., dict[str, np.ndarray]] = random_batch):
  """`count` host batches: real ones if the data is there, else random.

  task: whose tokenizer corpus and training pipeline give the real batches
    (default: translation's); random(config, rng, rows) the random ones.
  Returns (tokenizer or None, batches, what they are, why not real or '').
  """
  task = translation_tasks.Translation(config) if task is None else task
  try:
    from transformer.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
    tokenizer = tokenizer_lib.load_or_train(config, workdir,
                                            task.tokenizer_corpus)
    iterator = iter(task.train_dataset(
        tokenizer, process_index=jax.process_index(),
        process_count=jax.process_count()))
    batches = [next(iterator) for _ in range(count)]
    if hasattr(iterator, 'close'):
      iterator.close()
    return (tokenizer, batches,
            f'real: data.source={config.data.source!r} train split', '')
  except _data_errors() + (ImportError,) as error:
    rows = config.data.batch_size // jax.process_count()
    return (None, [random(config, rng, rows) for _ in range(count)],
            'random', f'random token batches [{rows}, '
            f'{config.data.max_length}], no padding: the data is not '
            f'available ({error})')


def decode_inputs(config: Config, tokenizer, rng: np.random.Generator
                   ) -> tuple[np.ndarray, int, str]:
  """(global [rows, S] sources, real sentences among them, description)."""
  rows = config.data.eval_batch_size
  if tokenizer is not None:
    from transformer.data import pipeline  # pylint: disable=g-import-not-at-top
    try:
      data = pipeline.eval_dataset(config, tokenizer, 'test', rows)
      first = data.batches[0]
      return (first.batch['inputs'], int(first.valid.sum()),
              f'the first {int(first.valid.sum())} test sentences, batched as '
              'evaluation does')
    except _data_errors() as error:
      note = f' (test split unavailable: {error})'
  else:
    note = ''
  return (_random_ids(rng, rows, config.data.max_length,
                      config.model.vocab_size), rows,
          f'random ids [{rows}, {config.data.max_length}] ending in EOS'
          + note)


_UNTRAINED = ('random initialisation (no checkpoint in the workdir), EOS '
              'suppressed: every output runs to its length limit, a worst case')


def never_eos(params: dict, model: ModelConfig) -> dict:
  """`params` whose EOS logit is never the largest before the length limit.

  Random weights stop after whatever number of tokens their logits happen
  to give (on a GPU, random bfloat16 WMT models chose EOS at once), which
  makes untrained decoding times meaningless. With the EOS row of the tied
  output embedding zeroed its logit is 0 while the maximum of the others is
  well above it (or, untied, its bias is -1e9), so every sentence runs to
  its length limit, where decoding forces EOS. A language model's params
  (`LanguageModel`: all under 'decoder') are changed the same way.
  """
  if set(params) == {'decoder'}:
    return {'decoder': never_eos(params['decoder'], model)}
  if model.tie_output_embedding:
    name = 'embedding' if model.share_embeddings else 'target_embedding'
    table = params[name]['embedding']
    return {**params, name: {**params[name],
                             'embedding': table.at[EOS_ID].set(0.0)}}
  layer = params['output_projection']
  return {**params, 'output_projection': {
      **layer, 'bias': layer['bias'].at[EOS_ID].set(-1e9)}}


def _decode_params(config: Config, workdir: str, mesh, params):
  """The workdir's latest checkpoint's params if any, else `params` with
  EOS suppressed (`never_eos`)."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return never_eos(params, config.model), _UNTRAINED
  try:
    from transformer import checkpoint  # pylint: disable=g-import-not-at-top
    restored, steps = checkpoint.restore_params(
        tasks.for_config(config), workdir, mesh)
    return restored, f'checkpoint at step {steps[-1]}'
  except Exception as error:  # pylint: disable=broad-except
    return (never_eos(params, config.model),
            f'{_UNTRAINED}; the checkpoint could not be used: {error}')


def _local_rows(rows: np.ndarray) -> np.ndarray:
  """This process's share of a global batch that every process holds."""
  per_process = rows.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  return rows[start:start + per_process]


def random_labelled_batch(task, rng: np.random.Generator, rows: int
                          ) -> dict[str, np.ndarray]:
  """A classification or regression batch of the labelled pipeline's keys:
  'inputs' [rows, data.max_length] int32, full rows (random ordinary ids,
  the last EOS, BOS first with model.pooling='first', no padding), and
  'labels': int32 class ids [rows] (classification) or float32 standardised
  targets [rows, 1] (regression)."""
  c = task.config
  inputs = _random_ids(rng, rows, c.data.max_length, c.model.vocab_size)
  if c.model.pooling == 'first':
    inputs[:, 0] = BOS_ID
  if isinstance(task, labelled_tasks.Classification):
    labels = rng.integers(0, len(task.labels), rows, dtype=np.int32)
  else:
    labels = rng.standard_normal((rows, task.num_outputs)).astype(np.float32)
  return {'inputs': inputs, 'labels': labels}


# ---------------------------------------------------------------------------
# Measurements. Each returns its part of benchmark.json (or what the next one
# needs); the train state is passed on because the step donates it.
# ---------------------------------------------------------------------------

State = Any  # train_lib's train state
Batch = dict[str, jax.Array]
Step = Callable[[State, Batch], tuple[State, dict[str, jax.Array]]]


def setup_report(config: Config, mesh, repeats: int,
                 family_keys: dict[str, Any]) -> dict[str, Any]:
  """What was measured where: versions, devices, shapes, repeats, date;
  `family_keys` (the task family's, e.g. decode_repeats) before the date."""
  device = jax.devices()[0]
  return {
      'jax_version': jax.__version__,
      'platform': device.platform,
      'device_kind': device.device_kind,
      'num_devices': mesh.size,
      'process_count': jax.process_count(),
      'allocator': memory_allocator(),
      'batch_size': config.data.batch_size,
      'max_length': config.data.max_length,
      'eval_batch_size': config.data.eval_batch_size,
      'dtype': config.model.dtype,
      'attention_impl': training_attention(config.model, config.data.max_length),
      'remat': config.model.remat,
      'scan_layers': config.model.scan_layers,
      'repeats': repeats,
      **family_keys,
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
  }


class Batches(NamedTuple):
  """The batches of the run, on the mesh, and what they are."""
  batches: list[Batch]  # global arrays, as the train step takes them
  eval_batches: list[Batch]  # the same rows, as the eval step takes them
  # Per global batch, what the task family's rates count: e.g.
  # 'target_tokens' (real, non-PAD ones) or 'examples'.
  counts: dict[str, list[int]]
  data: str  # 'real: ...' or 'random'
  data_note: str  # why not real, or ''
  tokenizer: Any = None  # translation's, for decoding; None with random ones

  # The first batch compiles, the next WARMUP_STEPS warm up, the rest time.
  @property
  def timed(self) -> list[Batch]:
    return self.batches[1 + WARMUP_STEPS:]

  @property
  def timed_eval(self) -> list[Batch]:
    return self.eval_batches[1 + WARMUP_STEPS:]

  def timed_mean(self, name: str) -> float:
    """The mean of counts[name] over the timed batches."""
    return statistics.mean(self.counts[name][1 + WARMUP_STEPS:])


def real_tokens(host_batches: list[dict[str, np.ndarray]], key: str
                ) -> list[int]:
  """Real (non-PAD) ids of `key` per global batch: this host's, times the
  hosts (they see similar batches)."""
  return [int(np.count_nonzero(b[key] != PAD_ID)) * jax.process_count()
          for b in host_batches]


def compile_train_step(task, mesh, batch: Batch
                       ) -> tuple[State, Any, Step, dict[str, Any]]:
  """The fresh train state and the step training runs, compiled for `batch`.

  Returns (state, its sharding, step, report): the step is `jit_train_step`
  with training's sharding and donated state, bound to the dropout key; the
  report has num_params, compile_s (trace, lower and XLA-compile),
  xla_train_flops and XLA's memory analysis (`step_memory`).
  """
  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  init_rng, dropout_rng = train_lib.seed_rngs(task.config)
  state = init_fn(init_rng)
  num_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, dropout_rng).compile()
  compile_s = time.perf_counter() - start
  step = lambda state, batch: compiled(state, batch, dropout_rng)
  return state, sharding, step, {'num_params': num_params,
                                 'compile_s': compile_s,
                                 'xla_train_flops': xla_flops(compiled),
                                 **step_memory(compiled)}


# XLA's memory analysis of a compiled step (`compiled.memory_analysis()`),
# per device, as benchmark keys.
STEP_MEMORY_KEYS = {
    'step_temp_bytes': 'temp_size_in_bytes',  # activations, workspace
    'step_argument_bytes': 'argument_size_in_bytes',  # state, batch, key
    'step_output_bytes': 'output_size_in_bytes',  # new state, metrics
    'step_alias_bytes': 'alias_size_in_bytes',  # outputs in donated inputs
}


def step_memory(compiled) -> dict[str, int | None]:
  """XLA's memory analysis of a compiled computation, per device:
  step_temp_bytes (the buffers that live only during the step: activations
  kept for the backward pass, gradients, workspace -- what remat
  shrinks), step_argument_bytes, step_output_bytes, step_alias_bytes
  (outputs written into donated inputs). None where the backend gives no
  analysis."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    analysis = None  # not every backend implements it
  if isinstance(analysis, (list, tuple)):  # older JAX: one per device
    analysis = analysis[0] if analysis else None
  return {key: (None if analysis is None else
                int(getattr(analysis, field, None) or 0))
          for key, field in STEP_MEMORY_KEYS.items()}


def step_residual_bytes(task, batch: Batch) -> int | None:
  """Bytes of what the forward pass of `task`'s loss keeps for the
  backward pass, as JAX's autodiff saves it (the residuals that
  `jax.ad_checkpoint.print_saved_residuals` lists), over the whole batch
  (one micro-batch of all its rows), the parameters and the batch themselves
  left out: the activations that model.remat trades for recomputation.

  Traced only (abstract shapes), and the same on every backend, where
  XLA's own analysis (`step_memory`) may not show remat: XLA:CPU drops the
  optimization barriers that keep the recomputation apart and merges it back
  into the forward pass, so with unrolled layers its temporary memory does
  not change (with model.scan_layers it does: a loop's body keeps the
  backward pass's recomputation to itself). None if this JAX lacks
  `saved_residuals`.
  """
  try:
    from jax._src.ad_checkpoint import saved_residuals  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  params = jax.eval_shape(
      lambda: train_lib.init_state(task, jax.random.key(0)).params)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  _, rng = train_lib.seed_rngs(task.config)
  residuals = saved_residuals(
      lambda params, batch, rng: task.loss_sums(params, batch, rng)[0],
      params, batch, rng)
  return int(sum(aval.size * aval.dtype.itemsize for aval, source in residuals
                 if not source.startswith('from the argument')))


REMAT_MODES = ('none', 'full', 'dots')  # ModelConfig.remat's choices


def abstract_train_batch(family: TaskFamily, mesh) -> Batch:
  """A global train batch of `family`'s keys and shapes as
  jax.ShapeDtypeStruct (random host rows give them; nothing goes to the
  device)."""
  rows = family.config.data.batch_size
  host = family.random_host_batch(np.random.default_rng(0), rows)
  sharding = train_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
          for k, v in host.items()}


def compile_abstract_train_step(task, mesh) -> tuple[Any, float]:
  """(compiled train step, seconds) for `task`, ahead of time from
  abstract shapes (`train.abstract_state`, `abstract_train_batch`): no
  parameter, optimizer state or batch is allocated, so any model size
  compiles on a small host."""
  state = train_lib.abstract_state(task, mesh)
  sharding = jax.tree.map(lambda x: x.sharding, state)
  batch = abstract_train_batch(family_for(task), mesh)
  _, dropout_rng = train_lib.seed_rngs(task.config)
  step_fn = train_lib.jit_train_step(task, mesh, sharding)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, dropout_rng).compile()
  return compiled, time.perf_counter() - start


def measure_remat_memory(config: Config, modes: tuple[str, ...] = REMAT_MODES,
                         *, compile_steps: bool = True,
                         log: Callable[[str], None] = lambda message: None
                         ) -> dict[str, Any]:
  """What each model.remat in `modes` keeps of `config`'s train step,
  from abstract shapes (nothing allocated, nothing run). Per MODE:

    step_residual_bytes_remat_MODE  JAX's residuals (`step_residual_bytes`,
                                    traced only);
    step_temp_bytes_remat_MODE      XLA's temporary memory of the compiled
    compile_s_remat_MODE            step, per device, and its compile time
                                    (`compile_abstract_train_step`; with
                                    `compile_steps` only);

  and for each MODE but 'none' its ratio to 'none''s:
  step_residual_remat_MODE_over_none, step_temp_remat_MODE_over_none.
  """
  mesh = train_lib.make_mesh(config=config)
  result: dict[str, Any] = {}
  for mode in modes:
    model = dataclasses.replace(config.model, remat=mode)
    task = benchmark_task(dataclasses.replace(config, model=model))
    batch = abstract_train_batch(family_for(task), mesh)
    result[f'step_residual_bytes_remat_{mode}'] = step_residual_bytes(
        task, batch)
    line = (f'  remat={mode}: residuals '
            f'{_si(result[f"step_residual_bytes_remat_{mode}"], "B")}')
    if compile_steps:
      compiled, seconds = compile_abstract_train_step(task, mesh)
      result[f'step_temp_bytes_remat_{mode}'] = step_memory(compiled)[
          'step_temp_bytes']
      result[f'compile_s_remat_{mode}'] = seconds
      line += (f', XLA temporary '
               f'{_si(result[f"step_temp_bytes_remat_{mode}"], "B")}, '
               f'compiled in {seconds:.1f}s')
    log(line)
  for kind in ('residual', 'temp'):
    none = result.get(f'step_{kind}_bytes_remat_none')
    for mode in modes:
      value = result.get(f'step_{kind}_bytes_remat_{mode}')
      if mode != 'none' and none and value is not None:
        result[f'step_{kind}_remat_{mode}_over_none'] = value / none
  return result


def first_steps(step: Step, state: State, batches: list[Batch]
                ) -> tuple[State, float]:
  """(state, seconds of the first call), after the first and warm-up steps.

  Training's first call takes compile_s + this; the warm-up steps keep
  whatever else happens once out of the timed steps.
  """
  start = time.perf_counter()
  state, metrics = step(state, batches[0])
  jax.block_until_ready((state, metrics))
  first_step_s = time.perf_counter() - start
  for batch in batches[1:1 + WARMUP_STEPS]:
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  return state, first_step_s


def time_each_step(step: Step, state: State, batches: list[Batch]
                   ) -> tuple[State, list[float]]:
  """(state, seconds per step), each step waited for on its own."""
  times = []
  for batch in batches:
    begin = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - begin)
  return state, times


def time_back_to_back(step: Step, state: State, batches: list[Batch],
                      groups: int = BACK_TO_BACK_GROUPS
                      ) -> tuple[State, dict[str, jax.Array], float]:
  """(state, last metrics, seconds per step) with steps run as training does.

  The training loop waits only to log: the host queues step i + 1 while the
  device runs step i, so launching a step costs no device time (the times of
  `time_each_step` include it). Steps run in `groups` groups, each waited for
  once; the median group's mean step is the rate throughput and MFU use.
  """
  group = max(1, len(batches) // groups)
  rates = []
  for first in range(0, len(batches) - group + 1, group):
    begin = time.perf_counter()
    for batch in batches[first:first + group]:
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    rates.append((time.perf_counter() - begin) / group)
  return state, metrics, statistics.median(rates)


def train_step_report(times: list[float], step_s: float, final_loss: float,
                      rates: dict[str, float]) -> dict[str, float]:
  """Train step times, then the task family's throughputs (`rates`)."""
  train = _summary(times)
  return {
      'final_loss': final_loss,
      'train_step_s': train['median'],
      'train_step_min_s': train['min'], 'train_step_max_s': train['max'],
      'train_step_p25_s': train['p25'], 'train_step_p75_s': train['p75'],
      'train_step_back_to_back_s': step_s,
      'train_steps_per_s': 1.0 / step_s,
      **rates,
  }


def measure_train_step(family: TaskFamily, mesh, data: Batches,
                       log: Callable[[str], None]
                       ) -> tuple[State, Any, float, dict[str, Any]]:
  """Compiles, warms up and times the task's train step on `data`.

  Returns (state, its sharding, the back-to-back seconds per step, report).
  """
  state, sharding, step, report = compile_train_step(family.task, mesh,
                                                     data.batches[0])
  report['step_residual_bytes'] = step_residual_bytes(family.task,
                                                      data.batches[0])
  state, report['first_step_s'] = first_steps(step, state, data.batches)
  log(f'  train step compiled in {report["compile_s"]:.1f}s')
  state, times = time_each_step(step, state, data.timed)
  state, metrics, step_s = time_back_to_back(step, state, data.timed)
  report.update(train_step_report(times, step_s, float(metrics['loss']),
                                  family.train_rates(data, step_s)))
  return state, sharding, step_s, report


def cpu_peak(dtype: str, before: float, after: float, processes: int
             ) -> dict[str, Any]:
  """Peak keys on CPU from the matmul FLOP/s measured before and after the
  train steps: the larger counts, so that a slow moment of a shared machine
  during one measurement cannot inflate MFU."""
  measured = max(before, after)
  size = f'{CPU_MATMUL_SIZE}x{CPU_MATMUL_SIZE}'
  return {
      'matmul_flops_per_s': measured,
      'matmul_flops_per_s_before_after': [before, after],
      'peak_flops_per_s': measured * processes,
      'peak_source': (
          f'measured: jitted {size} @ {size} {dtype} matmul, median of '
          f'{MATMUL_REPEATS}, before and after the train steps in this run, '
          f'the larger ({_si(before)} / {_si(after)}; CPUs have no published '
          'peak)'),
  }


def accelerator_peak(device_kind: str, dtype: str, num_devices: int,
                     matmul_flops_per_s: float) -> dict[str, Any]:
  """Peak keys on GPU/TPU: the published per-chip peak times the devices;
  the measured matmul rate is reported beside it."""
  per_chip, source = published_peak(device_kind, dtype)
  peak = None if per_chip is None else per_chip * num_devices
  if peak is not None and num_devices > 1:
    source += f' x {num_devices} devices'
  return {'matmul_flops_per_s': matmul_flops_per_s,
          'peak_flops_per_s': peak, 'peak_source': source}


def measure_peak(device, dtype: str, num_devices: int,
                 matmul_before: float | None) -> dict[str, Any]:
  """Peak FLOP/s keys: measured on CPU (again, to pair with `matmul_before`),
  published on GPU/TPU."""
  if device.platform == 'cpu':
    return cpu_peak(dtype, matmul_before,
                    measure_matmul(CPU_MATMUL_SIZE, dtype),
                    jax.process_count())
  return accelerator_peak(device.device_kind, dtype, num_devices,
                          measure_matmul(ACCELERATOR_MATMUL_SIZE, dtype))


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
  """Model FLOPs utilisation: achieved FLOP/s over peak, None without one."""
  return None if peak is None else flops / seconds / peak


def time_eval_step(task, mesh, params_sharding, params, first: Batch,
                   timed: list[Batch]) -> tuple[float, list[float]]:
  """(compile seconds, seconds per step) of `jit_eval_step`: compiled for
  and first run on `first`, then each of `timed` waited for."""
  eval_fn = train_lib.jit_eval_step(task, mesh, params_sharding)
  start = time.perf_counter()
  compiled = eval_fn.lower(params, first).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(params, first))
  times = []
  for batch in timed:
    begin = time.perf_counter()
    jax.block_until_ready(compiled(params, batch))
    times.append(time.perf_counter() - begin)
  return compile_s, times


def eval_step_report(compile_s: float, times: list[float],
                     rates: Callable[[float], dict[str, float]], flops: float,
                     peak: float | None) -> dict[str, Any]:
  """Eval step times, the throughputs `rates(median seconds)` gives, MFU."""
  evaluation = _summary(times)
  return {
      'eval_compile_s': compile_s,
      'eval_step_s': evaluation['median'],
      'eval_step_min_s': evaluation['min'],
      'eval_step_max_s': evaluation['max'],
      **rates(evaluation['median']),
      'eval_mfu': mfu(flops, evaluation['median'], peak),
  }


def measure_eval_step(family: TaskFamily, mesh, params_sharding, params,
                      data: Batches, peak: float | None) -> dict[str, Any]:
  """The eval step on the train step's batches (`data.eval_batches`)."""
  compile_s, times = time_eval_step(family.task, mesh, params_sharding,
                                    params, data.eval_batches[0],
                                    data.timed_eval)
  return eval_step_report(compile_s, times,
                          lambda seconds: family.eval_rates(data, seconds),
                          family.eval_flops(), peak)


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


def time_decoder(name: str, decode: Callable[[], Any],
                 best: Callable[[Any], jax.Array], sentences: int,
                 repeats: int) -> dict[str, float]:
  """NAME_first_call_s (compiles), then the median of `repeats` decodes and
  the rates it gives for the first `sentences` rows (the real ones), and
  the longest of their outputs."""
  start = time.perf_counter()
  output = jax.block_until_ready(decode())
  first_call_s = time.perf_counter() - start
  outputs = np.asarray(jax.device_get(best(output)))
  lengths = np.count_nonzero(outputs[:sentences] != PAD_ID, axis=1)
  generated = int(lengths.sum())
  summary = _summary(_time_calls(decode, repeats))
  seconds = summary['median']
  return {
      f'{name}_first_call_s': first_call_s,
      f'{name}_s': seconds,
      f'{name}_min_s': summary['min'],
      f'{name}_max_s': summary['max'],
      f'{name}_sentences_per_s': sentences / seconds,
      f'{name}_tokens_per_s': generated / seconds,
      f'{name}_mean_output_length': generated / max(sentences, 1),
      f'{name}_max_output_length': int(lengths.max(initial=0)),
  }


def measure_decoding(config: Config, workdir: str, mesh, train_params,
                     tokenizer, rng: np.random.Generator, repeats: int,
                     log: Callable[[str], None]) -> dict[str, Any]:
  """Greedy and beam 4 on one fixed batch of sources, the same for both."""
  params, params_note = _decode_params(config, workdir, mesh, train_params)
  sources, sentences, what = decode_inputs(config, tokenizer, rng)
  result: dict[str, Any] = {'decode_params': params_note,
                            'decode_inputs': what,
                            'decode_input_shape': list(sources.shape)}
  inputs = train_lib.global_batch({'inputs': _local_rows(sources)},
                                  mesh)['inputs']
  for name, (decode, best) in decoders(config, params, inputs).items():
    result.update(time_decoder(name, decode, best, sentences, repeats))
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
  from transformer.data import pipeline  # pylint: disable=g-import-not-at-top
  speed = pipeline.measure_input_pipeline(config, tokenizer,
                                          num_batches=num_batches)
  log(f'  input pipeline timed ({num_batches} batches)')
  return {
      'input_batches_per_s': speed['batches_per_second'],
      'input_tokens_per_s': speed['tokens_per_second'],
      'input_packing_efficiency': speed['packing_efficiency'],
      'input_over_train': speed['batches_per_second'] * train_step_s,
  }


# Language-model generation (`measure_generation`): the sampling of
# 'generate_sample', beside greedy's 'generate_greedy'.
SAMPLE_SETTINGS = {'temperature': 1.0, 'top_p': 0.9}


def generation_prompts(config: Config, tokenizer, rng: np.random.Generator,
                       rows: int, width: int) -> tuple[np.ndarray, str]:
  """([rows, width] int32 prompts of exactly `width` tokens, what they are):
  the first `width` tokens of the first test documents that have as many
  (cycled if too few), else random ordinary ids."""
  note = ''
  if tokenizer is not None:
    from transformer.data import lm  # pylint: disable=g-import-not-at-top
    try:
      documents = lm.load_documents(config, 'test')
      found = []
      for i in range(min(len(documents), 64 * rows)):
        ids = tokenizer.encode(documents[i])
        if len(ids) >= width:
          found.append(ids[:width])
        if len(found) == rows:
          break
      if found:
        prompts = np.asarray([found[i % len(found)] for i in range(rows)],
                             np.int32)
        return prompts, (f'the first {width} tokens of {len(found)} test '
                         'document(s)')
      note = f' (no test document has {width} tokens)'
    except _data_errors() as error:
      note = f' (test split unavailable: {error})'
  return (rng.integers(EOS_ID + 1, config.model.vocab_size, (rows, width),
                       dtype=np.int32),
          f'random ids [{rows}, {width}]' + note)


def uncached_next_token(task) -> Callable[[Any, jax.Array], jax.Array]:
  """Jitted (params, [B, L] tokens) -> [B] greedy next tokens, re-running
  the whole prefix through the teacher-forced forward pass (no cache), with
  `generate`'s PAD and BOS exclusion."""
  def next_token(params, tokens):
    logits = task.forward(params, {'targets': tokens}, rng=None)[:, -1]
    logits = logits.at[:, jnp.array([PAD_ID, BOS_ID])].set(-jnp.inf)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jax.jit(next_token)


def measure_generation(task, workdir: str, mesh, train_params, tokenizer,
                       rng: np.random.Generator, repeats: int,
                       log: Callable[[str], None]) -> dict[str, Any]:
  """Cached generation (`generate.generate`), greedy and sampled, of one
  batch of prompts to data.max_length tokens of context; and one new token
  by re-running the full prefix of that length without the cache."""
  from transformer import generate as generate_lib  # pylint: disable=g-import-not-at-top
  from transformer.config import GenerateConfig  # pylint: disable=g-import-not-at-top
  config = task.config
  params, params_note = _decode_params(config, workdir, mesh, train_params)
  rows, context = config.data.eval_batch_size, config.data.max_length
  width = min(lm_tasks.PROMPT_BUCKET, context // 2)
  new = context - width
  prompts, what = generation_prompts(config, tokenizer, rng, rows, width)
  lengths = np.full(rows, width, np.int32)
  keys = jax.vmap(jax.random.fold_in, (None, 0))(
      jax.random.key(config.generate.seed), jnp.arange(rows))
  result: dict[str, Any] = {
      'generate_params': params_note, 'generate_prompts': what,
      'generate_rows': rows, 'generate_context': context,
      'generate_prompt_length': width, 'generate_max_new_tokens': new,
      'generate_sample_settings': SAMPLE_SETTINGS}
  for name, settings in (
      ('generate_greedy', GenerateConfig(temperature=0.0,
                                         max_new_tokens=new)),
      ('generate_sample', GenerateConfig(max_new_tokens=new,
                                         seed=config.generate.seed,
                                         **SAMPLE_SETTINGS))):
    run_once = functools.partial(generate_lib.generate, params, config.model,
                                 prompts, lengths, keys, settings)
    result.update(time_decoder(name, run_once, lambda out: out, rows,
                               repeats))
    # Every step of the loop (prompt or new token) is one cached step over
    # the whole buffer of `context` positions, until the longest row ends.
    steps = width + result[f'{name}_max_output_length']
    result[f'{name}_step_s'] = result[f'{name}_s'] / steps
    log(f'  {name} timed ({repeats} batches)')
  next_token = uncached_next_token(task)
  tokens = _random_ids(rng, rows, context, config.model.vocab_size)
  start = time.perf_counter()
  jax.block_until_ready(next_token(params, tokens))
  first_call_s = time.perf_counter() - start
  uncached = _summary(_time_calls(lambda: next_token(params, tokens),
                                  repeats))
  log(f'  uncached next token timed ({repeats} batches)')
  result.update(
      generate_uncached_first_call_s=first_call_s,
      generate_uncached_token_s=uncached['median'],
      generate_uncached_token_min_s=uncached['min'],
      generate_uncached_token_max_s=uncached['max'],
      generate_uncached_tokens_per_s=rows / uncached['median'],
      generate_cached_speedup=(uncached['median']
                               / result['generate_greedy_step_s']))
  return result


def write_result(result: dict[str, Any], workdir: str) -> str:
  """Writes WORKDIR/benchmark.json atomically (process 0); returns its path."""
  path = os.path.join(workdir, RESULT_FILENAME)
  if jax.process_index() == 0:
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=2)
      f.write('\n')
    os.replace(tmp, path)
  return path


# ---------------------------------------------------------------------------
# Task families: what the benchmark asks of each. The shared measurements
# (compile, train step, eval step, FLOPs and MFU, peak, memory) take the task
# and its batches from here; what only one family has (translation's
# decoding and input pipeline) is its `task_measurements`.
# ---------------------------------------------------------------------------


class TaskFamily:
  """The benchmark's view of a task family (base: nothing extra).

  Attributes:
    task: the task object (`transformer/tasks/`) whose train and eval steps
      are timed.
  """

  def __init__(self, task):
    self.task = task
    self.config: Config = task.config

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    """The family's keys of the setup report (before 'date')."""
    raise NotImplementedError

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> Batches:
    """`count` global batches for the train and eval steps."""
    raise NotImplementedError

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    """A random train batch of `rows` rows of the family's keys and shapes
    (what `abstract_train_batch` compiles for)."""
    raise NotImplementedError

  def train_flops(self) -> float:
    """Model FLOPs of one train step on a global batch."""
    raise NotImplementedError

  def eval_flops(self) -> float:
    """Model FLOPs of one eval step on a global batch."""
    raise NotImplementedError

  def train_rates(self, data: Batches, step_s: float) -> dict[str, float]:
    """Throughput keys of the train step (after train_steps_per_s)."""
    raise NotImplementedError

  def eval_rates(self, data: Batches, seconds: float) -> dict[str, float]:
    """Throughput keys of the eval step."""
    raise NotImplementedError

  def task_measurements(self, *, workdir: str, mesh, params, data: Batches,
                        rng: np.random.Generator, step_s: float,
                        decode_repeats: int, input_batches: int,
                        log: Callable[[str], None]) -> dict[str, Any]:
    """What only this family measures, after the eval step."""
    del workdir, mesh, params, data, rng, step_s, decode_repeats
    del input_batches, log
    return {}

  # The table (`format_table`): rows that differ by family.
  @staticmethod
  def task_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows after 'shape'."""
    del r
    return []

  @staticmethod
  def train_rate_row(r: dict[str, Any]) -> tuple[str, str]:
    raise NotImplementedError

  @staticmethod
  def eval_rate_text(r: dict[str, Any]) -> str:
    raise NotImplementedError

  @staticmethod
  def extra_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows after 'eval step'."""
    del r
    return []


class TranslationFamily(TaskFamily):
  """task='translation': real batches when the data is there, rates in
  target (and source) tokens, the encoder-decoder's FLOPs, and decoding and
  the input pipeline measured too."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    return {'decode_repeats': decode_repeats}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> Batches:
    """Real ones if the data is there, else random (`train_batches`)."""
    tokenizer, host_batches, data, note = train_batches(self.config, workdir,
                                                        count, rng)
    batches = [train_lib.global_batch(b, mesh) for b in host_batches]
    return Batches(batches, batches,
                   {'target_tokens': real_tokens(host_batches, 'targets'),
                    'source_tokens': real_tokens(host_batches, 'inputs')},
                   data, note, tokenizer)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_batch(self.config, rng, rows)

  def train_flops(self) -> float:
    return train_flops(self.config)

  def eval_flops(self) -> float:
    return eval_flops(self.config)

  def train_rates(self, data: Batches, step_s: float) -> dict[str, float]:
    target = data.timed_mean('target_tokens')
    return {'train_tokens_per_s': target / step_s,
            'train_source_tokens_per_s': data.timed_mean('source_tokens')
                                         / step_s,
            'train_target_tokens_per_step': target}

  def eval_rates(self, data: Batches, seconds: float) -> dict[str, float]:
    return {'eval_tokens_per_s': data.timed_mean('target_tokens') / seconds}

  def task_measurements(self, *, workdir: str, mesh, params, data: Batches,
                        rng: np.random.Generator, step_s: float,
                        decode_repeats: int, input_batches: int,
                        log: Callable[[str], None]) -> dict[str, Any]:
    """Greedy and beam-4 decoding, and the input pipeline alone."""
    result = measure_decoding(self.config, workdir, mesh, params,
                              data.tokenizer, rng, decode_repeats, log)
    result.update(measure_input(self.config, data.tokenizer, input_batches,
                                step_s, log))
    return result

  @staticmethod
  def train_rate_row(r: dict[str, Any]) -> tuple[str, str]:
    return ('train tokens/s', f'{r["train_tokens_per_s"]:,.0f} target '
                              f'({r["train_source_tokens_per_s"]:,.0f} '
                              'source)')

  @staticmethod
  def eval_rate_text(r: dict[str, Any]) -> str:
    return f'{r["eval_tokens_per_s"]:,.0f} tokens/s'

  @staticmethod
  def extra_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ('decode inputs', f'{r["decode_inputs"]}; params: '
                          f'{r["decode_params"]}'),
        ('greedy', _decoding_row(r, 'greedy')),
        ('beam 4', _decoding_row(r, 'beam4')),
        ('beam 4 / greedy', _ratio(r['beam4_over_greedy'])),
        ('input pipeline', _input_row(r)),
    ]


class LabelledFamily(TaskFamily):
  """task='classification' or 'regression' (`EncoderClassifier`): random
  full-row batches, rates in examples (and tokens), the encoder's and the
  head's FLOPs; nothing decodes."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    del decode_repeats
    return {'task': self.config.task, 'num_outputs': self.task.num_outputs}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> Batches:
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
    if isinstance(self.task, labelled_tasks.Classification):
      labels = f'uniformly random labels of {len(self.task.labels)} classes'
    else:
      labels = 'standard normal targets'
    return Batches(
        batches, [{**b, 'weights': weights} for b in batches],
        {'examples': [self.config.data.batch_size] * count,
         'tokens': real_tokens(host_batches, 'inputs')},
        'random',
        f'random token ids [{rows}, {length}], full rows (no padding: '
        f'{length} tokens each, the last EOS), {labels}; task='
        f'{self.config.task} is benchmarked on random batches, no data '
        'needed', None)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_labelled_batch(self.task, rng, rows)

  def train_flops(self) -> float:
    return labelled_train_flops(self.task)

  def eval_flops(self) -> float:
    return labelled_eval_flops(self.task)

  def train_rates(self, data: Batches, step_s: float) -> dict[str, float]:
    examples, tokens = data.timed_mean('examples'), data.timed_mean('tokens')
    return {'train_examples_per_s': examples / step_s,
            'train_tokens_per_s': tokens / step_s,
            'train_examples_per_step': examples,
            'train_tokens_per_step': tokens}

  def eval_rates(self, data: Batches, seconds: float) -> dict[str, float]:
    return {'eval_examples_per_s': data.timed_mean('examples') / seconds,
            'eval_tokens_per_s': data.timed_mean('tokens') / seconds}

  @staticmethod
  def task_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [('task', f'{r["task"]}: encoder, pooling, a head of '
                     f'{r["num_outputs"]} output(s)')]

  @staticmethod
  def train_rate_row(r: dict[str, Any]) -> tuple[str, str]:
    return ('train examples/s', f'{r["train_examples_per_s"]:,.1f} '
                                f'({r["train_tokens_per_s"]:,.0f} tokens/s)')

  @staticmethod
  def eval_rate_text(r: dict[str, Any]) -> str:
    return (f'{r["eval_examples_per_s"]:,.1f} examples/s, '
            f'{r["eval_tokens_per_s"]:,.0f} tokens/s')


class LanguageModelFamily(TaskFamily):
  """task='language_model' (`LanguageModel`, decoder only): real batches
  when the data is there (the task's tokenizer and pipeline), else random
  full rows; rates in real tokens; the decoder-only model's FLOPs; and
  generation, cached (greedy and sampled) and uncached, measured too."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    return {'task': self.config.task, 'decode_repeats': decode_repeats}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> Batches:
    """Real ones if the data is there, else random (`train_batches` with
    `random_lm_batch`); the eval step's add 'weights' (1 on real tokens)."""
    tokenizer, host_batches, data, note = train_batches(
        self.config, workdir, count, rng, task=self.task,
        random=random_lm_batch)
    batches = [train_lib.global_batch(b, mesh) for b in host_batches]
    weights = [train_lib.global_batch(
        {'weights': (b['targets'] != PAD_ID).astype(np.float32)},
        mesh)['weights'] for b in host_batches]
    return Batches(batches, [{**b, 'weights': w}
                             for b, w in zip(batches, weights)],
                   {'tokens': real_tokens(host_batches, 'targets')},
                   data, note, tokenizer)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_lm_batch(self.config, rng, rows)

  def train_flops(self) -> float:
    return lm_train_flops(self.config)

  def eval_flops(self) -> float:
    return lm_eval_flops(self.config)

  def train_rates(self, data: Batches, step_s: float) -> dict[str, float]:
    tokens = data.timed_mean('tokens')
    return {'train_tokens_per_s': tokens / step_s,
            'train_tokens_per_step': tokens}

  def eval_rates(self, data: Batches, seconds: float) -> dict[str, float]:
    return {'eval_tokens_per_s': data.timed_mean('tokens') / seconds}

  def task_measurements(self, *, workdir: str, mesh, params, data: Batches,
                        rng: np.random.Generator, step_s: float,
                        decode_repeats: int, input_batches: int,
                        log: Callable[[str], None]) -> dict[str, Any]:
    """Cached generation (greedy, sampled) and the uncached next token."""
    del step_s, input_batches
    return measure_generation(self.task, workdir, mesh, params,
                              data.tokenizer, rng, decode_repeats, log)

  @staticmethod
  def task_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [('task', f'{r["task"]}: decoder only (causal self-attention, '
                     'no encoder-decoder attention)')]

  @staticmethod
  def train_rate_row(r: dict[str, Any]) -> tuple[str, str]:
    return ('train tokens/s', f'{r["train_tokens_per_s"]:,.0f} '
                              f'({r["train_tokens_per_step"]:,.0f} real '
                              'tokens per step)')

  eval_rate_text = staticmethod(TranslationFamily.eval_rate_text)

  @staticmethod
  def extra_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    sample = ', '.join(f'{k} {v:g}'
                       for k, v in r['generate_sample_settings'].items())
    return [
        ('generate', f'{r["generate_rows"]} prompts of '
                     f'{r["generate_prompt_length"]} tokens ('
                     f'{r["generate_prompts"]}) + up to '
                     f'{r["generate_max_new_tokens"]} new = '
                     f'{r["generate_context"]} positions of context; '
                     f'params: {r["generate_params"]}'),
        ('greedy, cached', _generation_row(r, 'generate_greedy')),
        ('sampled, cached', _generation_row(r, 'generate_sample')
         + f' ({sample})'),
        ('no cache', f'{_ms(r["generate_uncached_token_s"])} per new token '
                     f'of {r["generate_rows"]} rows at '
                     f'{r["generate_context"]} tokens of context, '
                     f'{r["generate_uncached_tokens_per_s"]:,.0f} tokens/s'),
        ('cache speedup', f'{_ratio(r["generate_cached_speedup"])} per new '
                          'token (no cache / greedy cached step)'),
    ]


# Task class -> its family. Another task family brings its own entry.
FAMILIES: dict[type, type[TaskFamily]] = {
    translation_tasks.Translation: TranslationFamily,
    labelled_tasks.Classification: LabelledFamily,
    labelled_tasks.Regression: LabelledFamily,
    lm_tasks.LanguageModelTask: LanguageModelFamily,
}
# By a report's 'task' (translation's reports have none).
FAMILY_BY_TASK_NAME: dict[str, type[TaskFamily]] = {
    'classification': LabelledFamily, 'regression': LabelledFamily,
    'language_model': LanguageModelFamily,
}
BENCHMARK_CLASSES = labelled_tasks.BENCHMARK_CLASSES


def family_for(task) -> TaskFamily:
  """The benchmark's family for `task`, by the task's class."""
  for cls in type(task).__mro__:
    if cls in FAMILIES:
      return FAMILIES[cls](task)
  raise ValueError(f'no benchmark for tasks of class {type(task).__name__}: '
                   'add its family to benchmark.FAMILIES')


def benchmark_task(config: Config):
  """The task `run` measures by default (`tasks.for_benchmark`)."""
  return tasks.for_benchmark(config)


# ---------------------------------------------------------------------------
# The benchmark.
# ---------------------------------------------------------------------------


def run(config: Config, workdir: str, *, task=None, repeats: int = 20,
        decode_repeats: int | None = None, input_batches: int = 50,
        remat_memory: bool = False, verbose: bool = True) -> dict[str, Any]:
  """Measures the training and evaluation speed of `config`'s task, and
  what its family adds (translation: decoding and input speed; language
  model: generation with and without the cache).

  Args:
    config: the experiment.
    workdir: benchmark.json is written here. Translation and language
      model: holds (or receives) the tokenizer, and a checkpoint here, if
      any, supplies the decoding parameters.
    task: the task to measure (its config must be `config`); default
      `benchmark_task(config)`.
    repeats: timed train and eval steps (after compiling and warming up).
    decode_repeats: translation and language model: timed decodes
      (generations) of the batch; default min(repeats, 5).
    input_batches: translation: batches timed by the input-pipeline
      measurement.
    remat_memory: also compile the train step with every model.remat
      (`measure_remat_memory`: ahead of time, not run) and report each
      one's temporary memory.
    verbose: print the table.
  Returns:
    The numbers written to WORKDIR/benchmark.json (module docstring).
  """
  if repeats < 1:
    raise ValueError(f'repeats must be positive, got {repeats}')
  family = family_for(benchmark_task(config) if task is None else task)
  if family.config != config:
    raise ValueError('run(config, task=...): the task holds another config')
  decode_repeats = decode_repeats or max(1, min(repeats, 5))
  os.makedirs(workdir, exist_ok=True)
  started = time.perf_counter()
  verbose = verbose and jax.process_index() == 0
  log = (lambda message: print(message, flush=True)) if verbose else (
      lambda message: None)
  device, mesh = jax.devices()[0], train_lib.make_mesh()
  train_lib.check_batch_sizes(config, mesh, training=True)
  rng = np.random.default_rng(config.seed)
  dtype = config.model.dtype
  result = setup_report(config, mesh, repeats,
                        family.setup_keys(decode_repeats))

  data = family.load_batches(workdir, mesh, WARMUP_STEPS + repeats + 1, rng)
  result.update(data=data.data, data_note=data.data_note)
  log(f'Benchmark: {data.data} batches, {mesh.size} device(s) '
      f'({device.device_kind}).')
  # On CPU the peak is a matmul measured before and after the train steps.
  matmul_before = (measure_matmul(CPU_MATMUL_SIZE, dtype)
                   if device.platform == 'cpu' else None)
  state, sharding, step_s, report = measure_train_step(family, mesh, data,
                                                       log)
  result.update(report)

  # Model FLOPs per step: the family's analytic count.
  flops = family.train_flops()
  result.update(train_flops=flops, train_flops_per_s=flops / step_s,
                **measure_peak(device, dtype, mesh.size, matmul_before))
  peak = result['peak_flops_per_s']
  result['train_mfu'] = mfu(flops, step_s, peak)
  result.update(measure_eval_step(family, mesh, sharding.params, state.params,
                                  data, peak))
  log(f'  train and eval steps timed ({repeats} each)')

  result.update(family.task_measurements(
      workdir=workdir, mesh=mesh, params=state.params, data=data, rng=rng,
      step_s=step_s, decode_repeats=decode_repeats,
      input_batches=input_batches, log=log))
  if remat_memory:
    result.update(measure_remat_memory(config, log=log))
  result['peak_memory_bytes'], result['peak_memory_source'] = peak_memory()
  result['benchmark_wall_s'] = time.perf_counter() - started
  path = write_result(result, workdir)
  if verbose:
    print(format_table(result, family) + f'\n\nWritten to {path}',
          flush=True)
  return result


# ---------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------


def _si(value: float | None, unit: str = '') -> str:
  if value is None:
    return 'n/a'
  for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(value) >= factor:
      return f'{value / factor:.3g} {prefix}{unit}'
  return f'{value:.3g} {unit}'.rstrip()


def _ms(seconds: float | None) -> str:
  return 'n/a' if seconds is None else f'{seconds * 1e3:.1f} ms'


def _ratio(value: float | None) -> str:
  return 'n/a' if value is None else f'{value:.2f}x'


def _decoding_row(r: dict[str, Any], name: str) -> str:
  return (f'{r[name + "_s"]:.3f} s/batch '
          f'({r[name + "_min_s"]:.3f} - {r[name + "_max_s"]:.3f}), '
          f'{r[name + "_sentences_per_s"]:.1f} sentences/s, '
          f'{r[name + "_tokens_per_s"]:,.0f} tokens/s, mean length '
          f'{r[name + "_mean_output_length"]:.1f}; first call '
          f'{r[name + "_first_call_s"]:.2f} s')


def _generation_row(r: dict[str, Any], name: str) -> str:
  return (f'{r[name + "_s"]:.3f} s/batch '
          f'({r[name + "_min_s"]:.3f} - {r[name + "_max_s"]:.3f}), '
          f'{r[name + "_tokens_per_s"]:,.0f} new tokens/s, '
          f'{_ms(r[name + "_step_s"])} per step, mean '
          f'{r[name + "_mean_output_length"]:.1f} new tokens; first call '
          f'{r[name + "_first_call_s"]:.2f} s')


def _step_memory_row(r: dict[str, Any]) -> str:
  """XLA's memory analysis of the train step, and of each remat mode
  (`measure_remat_memory`) when measured."""
  if r.get('step_temp_bytes') is None:
    return 'n/a (no memory analysis from this backend)'
  row = (f'{_si(r["step_temp_bytes"], "B")} temporary, '
         f'{_si(r["step_argument_bytes"], "B")} arguments, '
         f'{_si(r["step_output_bytes"], "B")} outputs (XLA, per device); '
         f'{_si(r.get("step_residual_bytes"), "B")} saved for the backward '
         'pass (JAX)')
  for kind, what in (('residual', 'saved'), ('temp', 'temporary')):
    modes = [m for m in REMAT_MODES
             if r.get(f'step_{kind}_bytes_remat_{m}') is not None]
    if modes:
      row += f'; {what} by remat: ' + ', '.join(
          f'{m} {_si(r[f"step_{kind}_bytes_remat_{m}"], "B")}'
          for m in modes)
  return row


def _input_row(r: dict[str, Any]) -> str:
  if r['input_batches_per_s'] is None:
    return 'n/a (random batches)'
  return (f'{r["input_batches_per_s"]:.1f} batches/s, '
          f'{r["input_tokens_per_s"]:,.0f} tokens/s, packing '
          f'{100 * r["input_packing_efficiency"]:.1f}%; '
          f'{_ratio(r["input_over_train"])} the train step rate')


def format_table(r: dict[str, Any],
                 family: TaskFamily | type[TaskFamily] | None = None) -> str:
  """The numbers of `run` as a human-readable table; `family` (default: by
  r's 'task', which translation's reports do not have) gives the rows that
  differ by task family."""
  if family is None:
    family = FAMILY_BY_TASK_NAME.get(r.get('task'), TranslationFamily)
  mfu = lambda x: 'n/a' if x is None else f'{100 * x:.1f}%'
  rows = [
      ('device', f'{r["device_kind"]} x {r["num_devices"]} '
                 f'({r["platform"]}), JAX {r["jax_version"]}, '
                 f'{r["allocator"]}'),
      ('shape', f'batch {r["batch_size"]} x {r["max_length"]} tokens, '
                f'{r["dtype"]}, {r["num_params"] / 1e6:.2f}M parameters, '
                f'attention: {r["attention_impl"]}'),
      *family.task_rows(r),
      ('batches', r['data'] + (f' -- {r["data_note"]}' if r['data_note']
                               else '')),
      ('layers', f'remat {r.get("remat", "none")}, scan_layers '
                 f'{str(r.get("scan_layers", False)).lower()}'),
      ('train compile', f'{r["compile_s"]:.2f} s (first step '
                        f'{r["first_step_s"]:.2f} s)'),
      ('step memory', _step_memory_row(r)),
      ('train step', f'{_ms(r["train_step_s"])} median, '
                     f'{_ms(r["train_step_min_s"])} - '
                     f'{_ms(r["train_step_max_s"])} (IQR '
                     f'{_ms(r["train_step_p25_s"])} - '
                     f'{_ms(r["train_step_p75_s"])}), {r["repeats"]} steps '
                     f'each waited for; {_ms(r["train_step_back_to_back_s"])} '
                     'per step back to back (throughput and MFU below)'),
      family.train_rate_row(r),
      ('model FLOPs/step', f'{_si(r["train_flops"])} (XLA counts '
                           f'{_si(r["xla_train_flops"])}'
                           + ('; a scanned stack\'s loop body once'
                              if r.get('scan_layers') else '') + ')'),
      ('achieved', _si(r['train_flops_per_s'], 'FLOP/s')),
      ('peak', f'{_si(r["peak_flops_per_s"], "FLOP/s")} -- '
               f'{r["peak_source"]}'),
      ('train MFU', mfu(r['train_mfu'])),
      ('eval step', f'{_ms(r["eval_step_s"])} median '
                    f'({family.eval_rate_text(r)}, MFU '
                    f'{mfu(r["eval_mfu"])}); compile '
                    f'{r["eval_compile_s"]:.2f} s'),
      *family.extra_rows(r),
      ('peak memory', f'{_si(r["peak_memory_bytes"], "B")} -- '
                      f'{r["peak_memory_source"]}'),
  ]
  width = max(len(label) for label, _ in rows)
  return '\n'.join(f'{label:<{width}}  {value}' for label, value in rows)
