"""What --mode=benchmark measures of a language model (`LanguageModelBenchmark`,
the family's `BenchmarkHooks`; transformer/benchmark.py times the steps).

Batches: real ones (the workdir's tokenizer, trained with `load_or_train` on
the task's corpus if missing, and the task's `data.train_dataset`: packed
documents) when the data is there, else random full rows (`random_lm_batch`:
one document per row, random ordinary ids, the last EOS, no padding); the
eval step's add 'weights' (1.0 on the real tokens). Rates count real tokens.

Model FLOPs (`lm_forward_flops`): matmuls only, 2 * m * n * k. LanguageModel
builds no encoder, whatever num_encoder_layers says; each of its decoder
layers counts as an encoder layer over T = data.max_length positions
(masked self-attention with the full T*T scores and values, as computed:
causal masking hides half but XLA multiplies them all; no cross-attention;
the FFN):

  forward = L_dec * encoder_layer_flops(B, T) + 2*B*T*d*V (output, tied or not)
  train step = 3 * forward (`lm_train_flops`), eval step = forward
  (`lm_eval_flops`), on data.batch_size rows.

Generation (`measure_generation`):

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

Prompts are the first P tokens of the first test documents that have as
many, or random ids. Generation uses the workdir's latest checkpoint, or the
fresh parameters with EOS suppressed (`measure.decode_params`).

Keys the language model adds to benchmark.json: task, decode_repeats,
train_tokens_per_step (real tokens), generate_params, generate_prompts,
generate_rows, generate_context, generate_prompt_length,
generate_max_new_tokens, generate_sample_settings; generate_greedy_ and
generate_sample_ s (seconds per batch), _min_s, _max_s, _first_call_s,
_tokens_per_s (new tokens), _sentences_per_s (continuations),
_mean_output_length and _max_output_length (new tokens, EOS included),
_step_s; generate_uncached_first_call_s, generate_uncached_token_s (seconds
per new token of all rows; _min_s, _max_s), generate_uncached_tokens_per_s,
generate_cached_speedup.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from transformer import measure
from transformer import train as train_lib
from transformer.config import (BOS_ID, EOS_ID, PAD_ID, Config,
                                GenerateConfig, ModelConfig)
from transformer.tasks.base import BenchmarkBatches, BenchmarkHooks
from transformer.tasks.language_model import data as data_lib
from transformer.tasks.language_model import generate as generate_lib

# Generation (`measure_generation`): the sampling of 'generate_sample',
# beside greedy's 'generate_greedy'.
SAMPLE_SETTINGS = {'temperature': 1.0, 'top_p': 0.9}


# ---------------------------------------------------------------------------
# FLOPs.
# ---------------------------------------------------------------------------


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
          * measure.encoder_layer_flops(model_config, batch, length) + output)


def lm_train_flops(config: Config) -> float:
  """Model FLOPs of one language-model train step on a global batch of
  data.batch_size rows of data.max_length tokens: 3 * forward."""
  return 3.0 * lm_eval_flops(config)


def lm_eval_flops(config: Config) -> float:
  """Model FLOPs of its eval step on the same batch: one forward."""
  return lm_forward_flops(config.model, config.data.batch_size,
                          config.data.max_length)


# ---------------------------------------------------------------------------
# Batches.
# ---------------------------------------------------------------------------


def random_lm_batch(config: Config, rng: np.random.Generator, rows: int
                    ) -> dict[str, np.ndarray]:
  """A language-model batch of data.BATCH_KEYS: one document per row, the
  whole row (random ordinary ids, the last EOS), no PAD."""
  length, vocab = config.data.max_length, config.model.vocab_size
  # Drawn and dropped: the ids of a translation batch's sources, which this
  # batch once shared its draws with; the same seed gives the same targets.
  measure.random_ids(rng, rows, length, vocab)
  positions = np.broadcast_to(np.arange(length, dtype=np.int32),
                              (rows, length)).copy()
  return {'targets': measure.random_ids(rng, rows, length, vocab),
          'targets_positions': positions,
          'targets_segmentation': np.ones((rows, length), np.int32)}


# ---------------------------------------------------------------------------
# Generation.
# ---------------------------------------------------------------------------


def generation_prompts(config: Config, tokenizer, rng: np.random.Generator,
                       rows: int, width: int) -> tuple[np.ndarray, str]:
  """([rows, width] int32 prompts of exactly `width` tokens, what they are):
  the first `width` tokens of the first test documents that have as many
  (cycled if too few), else random ordinary ids."""
  note = ''
  if tokenizer is not None:
    try:
      documents = data_lib.load_documents(config, 'test')
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
    except measure.DATA_ERRORS as error:
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
  config = task.config
  params, params_note = measure.decode_params(task, workdir, mesh,
                                              train_params)
  rows, context = config.data.eval_batch_size, config.data.max_length
  width = min(generate_lib.PROMPT_BUCKET, context // 2)
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
    result.update(measure.time_decoder(name, run_once, lambda out: out, rows,
                                       repeats))
    # Every step of the loop (prompt or new token) is one cached step over
    # the whole buffer of `context` positions, until the longest row ends.
    steps = width + result[f'{name}_max_output_length']
    result[f'{name}_step_s'] = result[f'{name}_s'] / steps
    log(f'  {name} timed ({repeats} batches)')
  next_token = uncached_next_token(task)
  tokens = measure.random_ids(rng, rows, context, config.model.vocab_size)
  start = time.perf_counter()
  jax.block_until_ready(next_token(params, tokens))
  first_call_s = time.perf_counter() - start
  uncached = measure.summary(measure.time_calls(
      lambda: next_token(params, tokens), repeats))
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


def _generation_row(r: dict[str, Any], name: str) -> str:
  return (f'{r[name + "_s"]:.3f} s/batch '
          f'({r[name + "_min_s"]:.3f} - {r[name + "_max_s"]:.3f}), '
          f'{r[name + "_tokens_per_s"]:,.0f} new tokens/s, '
          f'{measure.ms(r[name + "_step_s"])} per step, mean '
          f'{r[name + "_mean_output_length"]:.1f} new tokens; first call '
          f'{r[name + "_first_call_s"]:.2f} s')


# ---------------------------------------------------------------------------
# The hooks.
# ---------------------------------------------------------------------------


class LanguageModelBenchmark(BenchmarkHooks):
  """task='language_model' (`LanguageModel`, decoder only): real batches
  when the data is there (the task's tokenizer and pipeline), else random
  full rows; rates in real tokens; the decoder-only model's FLOPs; and
  generation, cached (greedy and sampled) and uncached, measured too."""

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    return {'task': self.config.task, 'decode_repeats': decode_repeats}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> BenchmarkBatches:
    """Real ones if the data is there, else random (`measure.train_batches`
    with `random_lm_batch`); the eval step's add 'weights' (1 on real
    tokens)."""
    tokenizer, host_batches, what, note = measure.train_batches(
        self.task, workdir, count, rng, random=random_lm_batch)
    batches = [train_lib.global_batch(b, mesh) for b in host_batches]
    weights = [train_lib.global_batch(
        {'weights': (b['targets'] != PAD_ID).astype(np.float32)},
        mesh)['weights'] for b in host_batches]
    return BenchmarkBatches(
        batches, [{**b, 'weights': w} for b, w in zip(batches, weights)],
        {'tokens': measure.real_tokens(host_batches, 'targets')},
        what, note, tokenizer)

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    return random_lm_batch(self.config, rng, rows)

  def train_flops(self) -> float:
    return lm_train_flops(self.config)

  def eval_flops(self) -> float:
    return lm_eval_flops(self.config)

  def train_rates(self, data: BenchmarkBatches, step_s: float
                  ) -> dict[str, float]:
    tokens = data.timed_mean('tokens')
    return {'train_tokens_per_s': tokens / step_s,
            'train_tokens_per_step': tokens}

  def eval_rates(self, data: BenchmarkBatches, seconds: float
                 ) -> dict[str, float]:
    return {'eval_tokens_per_s': data.timed_mean('tokens') / seconds}

  def task_measurements(self, *, workdir: str, mesh, params,
                        data: BenchmarkBatches, rng: np.random.Generator,
                        step_s: float, decode_repeats: int,
                        input_batches: int, log: Callable[[str], None]
                        ) -> dict[str, Any]:
    """Cached generation (greedy, sampled) and the uncached next token."""
    del step_s, input_batches
    return measure_generation(self.task, workdir, mesh, params,
                              data.tokenizer, rng, decode_repeats, log)

  def task_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
    return [('task', f'{r["task"]}: decoder only (causal self-attention, '
                     'no encoder-decoder attention)')]

  def train_rate_row(self, r: dict[str, Any]) -> tuple[str, str]:
    return ('train tokens/s', f'{r["train_tokens_per_s"]:,.0f} '
                              f'({r["train_tokens_per_step"]:,.0f} real '
                              'tokens per step)')

  def eval_rate_text(self, r: dict[str, Any]) -> str:
    return f'{r["eval_tokens_per_s"]:,.0f} tokens/s'

  def extra_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
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
        ('no cache', f'{measure.ms(r["generate_uncached_token_s"])} per new '
                     f'token of {r["generate_rows"]} rows at '
                     f'{r["generate_context"]} tokens of context, '
                     f'{r["generate_uncached_tokens_per_s"]:,.0f} tokens/s'),
        ('cache speedup', f'{measure.ratio(r["generate_cached_speedup"])} per '
                          'new token (no cache / greedy cached step)'),
    ]
