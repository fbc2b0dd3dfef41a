"""Measuring helpers that the benchmark driver and every family's benchmark
hooks (transformer/tasks/*/benchmark.py) share: timing of calls and of
decoders (translation's beam search, a language model's generation), random
and real batches, the parameters decoding is timed with, the FLOPs of an
encoder layer, and the number formats of the results table.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import jax
import numpy as np

from transformer import checkpoint
from transformer.config import EOS_ID, PAD_ID, ModelConfig
from transformer.data import tokenizer as tokenizer_lib
from transformer.data.bible import CorpusUnavailableError
from transformer.data.corpus import DataError

# What a benchmark falls back to random batches on: the data is missing.
DATA_ERRORS = (OSError, DataError, CorpusUnavailableError, ImportError)


def encoder_layer_flops(model_config: ModelConfig, batch: int,
                        length: int) -> float:
  """Matmul FLOPs of one encoder layer's forward pass over [batch, length]."""
  b, s = float(batch), float(length)
  d, f = float(model_config.d_model), float(model_config.d_ff)
  return (4 * 2 * b * s * d * d  # Q, K, V, O projections
          + 2 * 2 * b * s * s * d  # Q K^T and A V over all heads
          + 2 * 2 * b * s * d * f)  # feed-forward


def summary(times: list[float]) -> dict[str, float]:
  # 'inclusive': quartiles within [min, max]. The default ('exclusive')
  # extrapolates from few samples, and a slow outlier once gave a negative
  # first quartile of step times.
  q1, _, q3 = statistics.quantiles(
      times, n=4, method='inclusive') if len(times) > 1 else (times[0],) * 3
  return {'median': statistics.median(times), 'min': min(times),
          'max': max(times), 'p25': q1, 'p75': q3}


def time_calls(call: Callable[[], Any], repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return times


def random_ids(rng: np.random.Generator, rows: int, length: int,
                vocab_size: int) -> np.ndarray:
  """[rows, length] int32 ids, none of them special, the last one EOS."""
  if vocab_size <= EOS_ID + 1:
    raise ValueError(f'model.vocab_size={vocab_size} leaves no ordinary '
                     'token for random batches')
  ids = rng.integers(EOS_ID + 1, vocab_size, (rows, length), dtype=np.int32)
  ids[:, -1] = EOS_ID
  return ids


def real_tokens(host_batches: list[dict[str, np.ndarray]], key: str
                ) -> list[int]:
  """Real (non-PAD) ids of `key` per global batch: this host's, times the
  hosts (they see similar batches)."""
  return [int(np.count_nonzero(b[key] != PAD_ID)) * jax.process_count()
          for b in host_batches]


def train_batches(task, workdir: str, count: int, rng: np.random.Generator,
                  random: Callable[..., dict[str, np.ndarray]]):
  """`count` host batches: real ones if the data is there, else random.

  task: whose tokenizer corpus and training pipeline give the real batches;
    random(config, rng, rows) the random ones.
  Returns (tokenizer or None, batches, what they are, why not real or '').
  """
  config = task.config
  try:
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
  except DATA_ERRORS as error:
    rows = config.data.batch_size // jax.process_count()
    return (None, [random(config, rng, rows) for _ in range(count)],
            'random', f'random token batches [{rows}, '
            f'{config.data.max_length}], no padding: the data is not '
            f'available ({error})')


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
  times = summary(time_calls(decode, repeats))
  seconds = times['median']
  return {
      f'{name}_first_call_s': first_call_s,
      f'{name}_s': seconds,
      f'{name}_min_s': times['min'],
      f'{name}_max_s': times['max'],
      f'{name}_sentences_per_s': sentences / seconds,
      f'{name}_tokens_per_s': generated / seconds,
      f'{name}_mean_output_length': generated / max(sentences, 1),
      f'{name}_max_output_length': int(lengths.max(initial=0)),
  }


UNTRAINED = ('random initialisation (no checkpoint in the workdir), EOS '
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


def decode_params(task, workdir: str, mesh, params):
  """The workdir's latest checkpoint's params (of `task`'s model) if any,
  else `params` with EOS suppressed (`never_eos`)."""
  config = task.config
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return never_eos(params, config.model), UNTRAINED
  try:
    restored, steps = checkpoint.restore_params(task, workdir, mesh)
    return restored, f'checkpoint at step {steps[-1]}'
  except Exception as error:  # pylint: disable=broad-except
    return (never_eos(params, config.model),
            f'{UNTRAINED}; the checkpoint could not be used: {error}')


def local_rows(rows: np.ndarray) -> np.ndarray:
  """This process's share of a global batch that every process holds."""
  per_process = rows.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  return rows[start:start + per_process]


def si(value: float | None, unit: str = '') -> str:
  if value is None:
    return 'n/a'
  for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(value) >= factor:
      return f'{value / factor:.3g} {prefix}{unit}'
  return f'{value:.3g} {unit}'.rstrip()


def ms(seconds: float | None) -> str:
  return 'n/a' if seconds is None else f'{seconds * 1e3:.1f} ms'


def ratio(value: float | None) -> str:
  return 'n/a' if value is None else f'{value:.2f}x'
