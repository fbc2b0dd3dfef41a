"""Translation's evaluation and --mode=translate: decode (beam search,
sec. 6.1), score with sacreBLEU and chrF."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterable, Iterator

import jax
import numpy as np
import sacrebleu

from transformer import losses
from transformer import sharding
from transformer import train as train_lib
from transformer.config import EOS_ID, PAD_ID, Config
from transformer.tasks.translation import decode as decode_lib
from transformer.tasks.translation import pipeline


# ---------------------------------------------------------------------------
# Decoding batches spread over the mesh.
# ---------------------------------------------------------------------------


def decode_rows(params, config: Config, inputs: np.ndarray, mesh, *,
                beam_size: int | None = None) -> np.ndarray:
  """[B, S] source ids -> [B, L] best output ids (greedy when beam_size=1)."""
  beam_size = config.eval.beam_size if beam_size is None else beam_size
  ways = train_lib.data_parallel_size(mesh)
  if inputs.shape[0] % ways:
    raise ValueError(f'data.eval_batch_size={inputs.shape[0]} must be a '
                     f'multiple of the data axis\' {ways} devices')
  sharded = sharding.to_mesh(inputs, mesh)
  if beam_size == 1:
    tokens = decode_lib.greedy_decode(
        params, config.model, sharded,
        max_extra_length=config.eval.max_extra_length)
  else:
    sequences, _ = decode_lib.beam_search(
        params, config.model, sharded, beam_size=beam_size,
        length_penalty=config.eval.length_penalty,
        max_extra_length=config.eval.max_extra_length)
    tokens = sequences[:, 0]
  return sharding.to_host(tokens)


def score(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
  """sacreBLEU BLEU and chrF on detokenized text, with their signatures."""
  bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
  return {
      'bleu': bleu.corpus_score(hypotheses, [references]).score,
      'chrf': chrf.corpus_score(hypotheses, [references]).score,
      'bleu_signature': str(bleu.get_signature()),
      'chrf_signature': str(chrf.get_signature()),
  }


class Evaluator:
  """Translation: loss, perplexity, accuracy, BLEU and chrF of one split,
  data loaded once. `task` is a `Translation`."""

  def __init__(self, task, tokenizer, mesh, split: str,
               num_examples: int = 0):
    config = task.config
    self.config, self.tokenizer, self.mesh = config, tokenizer, mesh
    self.split = split
    self.data = pipeline.eval_dataset(config, tokenizer, split, num_examples)
    self._eval_step = jax.jit(
        lambda params, batch: train_lib.eval_step(params, batch, task=task))

  def __call__(self, params, *, beam_size: int | None = None
               ) -> tuple[dict[str, Any], list[str]]:
    """Returns (metrics, hypotheses in corpus order)."""
    start = time.time()
    sums: dict[str, float] = {}
    hypotheses: list[str] = []
    for item in self.data:
      batch = dict(item.batch, weights=item.valid.astype(np.float32))
      sharded = {k: sharding.to_mesh(v, self.mesh) for k, v in batch.items()}
      step_sums = jax.device_get(self._eval_step(params, sharded))
      for key, value in step_sums.items():
        sums[key] = sums.get(key, 0.0) + float(value)
      tokens = decode_rows(params, self.config, item.batch['inputs'],
                           self.mesh, beam_size=beam_size)
      hypotheses += [self.tokenizer.decode(row) for row, ok in
                     zip(tokens.tolist(), item.valid) if ok]
    nll = losses.mean(sums['nll'], sums['tokens'])
    metrics = {
        'loss': float(losses.mean(sums['loss'], sums['tokens'])),
        'nll': float(nll),
        'perplexity': float(math.exp(nll)),
        'accuracy': float(losses.mean(sums['correct'], sums['tokens'])),
        **score(hypotheses, self.data.references),
        'examples': len(hypotheses),
        'seconds': time.time() - start,
    }
    return metrics, hypotheses

  def summary(self, metrics: dict[str, Any]) -> str:
    """One line for the training log."""
    return (f'nll {metrics["nll"]:.4f}  ppl {metrics["perplexity"]:.2f}  '
            f'loss {metrics["loss"]:.4f}  acc {metrics["accuracy"]:.3f}  '
            f'BLEU {metrics["bleu"]:.2f}  chrF {metrics["chrf"]:.2f}  '
            f'({metrics["examples"]} sentences, beam '
            f'{self.config.eval.beam_size}, {metrics["seconds"]:.0f}s)')

  def file_name(self, steps: list[int]) -> str:
    """SPLIT_stepN[_avgK]_beamB: greedy and beam results do not collide."""
    return (f'{self.split}_step{steps[-1]}' +
            (f'_avg{len(steps)}' if len(steps) > 1 else '') +
            f'_beam{self.config.eval.beam_size}')

  def report(self, metrics: dict[str, Any], hypotheses: list[str], base: str,
             *, samples: int = 0) -> str:
    """What --mode=evaluate prints: the scores, then `samples` examples."""
    steps = metrics['checkpoint_steps']
    averaged = f' (mean of checkpoints {steps})' if len(steps) > 1 else ''
    lines = [
        f'\n{self.split} split, checkpoint {steps[-1]}{averaged}, beam '
        f'{self.config.eval.beam_size}, {metrics["examples"]} sentences:',
        f'  BLEU {metrics["bleu"]:.2f}   {metrics["bleu_signature"]}',
        f'  chrF {metrics["chrf"]:.2f}   {metrics["chrf_signature"]}',
        f'  nll {metrics["nll"]:.4f}  perplexity {metrics["perplexity"]:.2f}'
        f'  label-smoothed loss {metrics["loss"]:.4f}'
        f'  token accuracy {metrics["accuracy"]:.3f}',
        f'Translations: {base}.hyp (sources .src, references .ref, '
        'metrics .json)']
    for source, reference, hypothesis in list(zip(
        self.data.sources, self.data.references, hypotheses))[:samples]:
      lines.append(f'\n  source:      {source}\n  reference:   {reference}\n'
                   f'  translation: {hypothesis}')
    return '\n'.join(lines)

  def write(self, directory: str, name: str, hypotheses: list[str],
            metrics: dict[str, Any]) -> str:
    """Writes NAME.{src,ref,hyp} (one sentence per line) and NAME.json."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, name)
    for suffix, lines in (('src', self.data.sources),
                          ('ref', self.data.references), ('hyp', hypotheses)):
      with open(f'{base}.{suffix}', 'w', encoding='utf-8') as f:
        f.writelines(line.replace('\n', ' ') + '\n' for line in lines)
    with open(f'{base}.json', 'w') as f:
      json.dump(metrics, f, indent=2)
    return base


# ---------------------------------------------------------------------------
# Translating arbitrary lines.
# ---------------------------------------------------------------------------


def _bucket(length: int, cap: int) -> int:
  """Pads lengths to powers of two (>= 16): few shapes, few compilations."""
  return min(cap, max(16, 1 << max(length - 1, 0).bit_length()))


def translate_lines(params, config: Config, tokenizer, lines: Iterable[str],
                    mesh, *, warn=None) -> Iterator[str]:
  """One translation per input line, in order; empty lines stay empty.

  Lines are read and decoded in batches of data.eval_batch_size. A line
  longer than data.eval_max_length tokens is truncated, with `warn(message)`.
  """
  size, cap = config.data.eval_batch_size, config.data.eval_max_length
  ways = train_lib.data_parallel_size(mesh)
  size = math.ceil(size / ways) * ways
  batch: list[tuple[int, str]] = []

  def flush(batch):
    ids = []
    for number, line in batch:
      tokens = tokenizer.encode(line)
      if len(tokens) + 1 > cap:
        if warn:
          warn(f'line {number}: {len(tokens) + 1} tokens, truncated to '
               f'data.eval_max_length={cap}')
        tokens = tokens[:cap - 1]
      ids.append(tokens + [EOS_ID])
    length = _bucket(max((len(x) for x in ids), default=1), cap)
    rows = np.full((size, length), PAD_ID, np.int32)
    for r, x in enumerate(ids):
      rows[r, :len(x)] = x
    rows[len(ids):, 0] = EOS_ID  # filler rows: a lone EOS, decoded and dropped
    tokens = decode_rows(params, config, rows, mesh)
    return [tokenizer.decode(row) for row in tokens[:len(ids)].tolist()]

  pending: list[str | None] = []  # None: a slot for a non-empty line
  for number, line in enumerate(lines, 1):
    line = line.rstrip('\n')
    if line.strip():
      batch.append((number, line))
      pending.append(None)
    else:
      pending.append('')
    if len(batch) == size:
      yield from _fill(pending, flush(batch))
      batch, pending = [], []
  if pending:
    yield from _fill(pending, flush(batch) if batch else [])


def _fill(pending: list[str | None], translations: list[str]) -> Iterator[str]:
  it = iter(translations)
  for slot in pending:
    yield next(it) if slot is None else slot
