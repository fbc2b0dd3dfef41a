"""The masked LM's evaluation: masked-token loss, accuracy and perplexity
over a split, its masking fixed (data.eval_batches), with a few filled
samples.

  loss        mean NLL (nats) of the original token at the chosen
              positions (no label smoothing)
  accuracy    share of chosen positions whose argmax is the original token
  perplexity  exp(loss)
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import numpy as np

from transformer import sharding
from transformer import train as train_lib
from transformer.config import MASK_ID, PAD_ID
from transformer.tasks.masked_lm import data

EVAL_SAMPLES = 3  # rows shown with their masks and the model's fills
SAMPLE_TOKENS = 48  # of each, the first this many tokens


class Evaluator:
  """One split, its masked batches built once."""

  def __init__(self, task, tokenizer, mesh, split: str,
               num_examples: int = 0):
    self.task, self.tokenizer, self.mesh, self.split = (task, tokenizer, mesh,
                                                        split)
    self.batches = data.eval_batches(task.config, tokenizer, split,
                                     max_documents=num_examples)
    self._step = jax.jit(lambda params, batch: train_lib.eval_step(
        params, batch, task=task))
    self._best = jax.jit(task.predictions)

  def __call__(self, params) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(metrics, a few masked rows with the model's fills)."""
    start, totals = time.time(), {'nll': 0.0, 'correct': 0.0, 'tokens': 0.0}
    for batch in self.batches:
      sums = jax.device_get(self._step(params, self._on_mesh(batch)))
      totals = {k: v + float(sums[k]) for k, v in totals.items()}
    tokens = max(totals['tokens'], 1.0)
    loss = totals['nll'] / tokens
    metrics = {'loss': loss, 'accuracy': totals['correct'] / tokens,
               'perplexity': math.exp(min(loss, 700.0)),
               'tokens': int(totals['tokens'])}
    samples = self._samples(params)
    metrics['seconds'] = time.time() - start
    return metrics, samples

  def _on_mesh(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: sharding.to_mesh(v, self.mesh) for k, v in batch.items()}

  def _samples(self, params) -> list[dict[str, str]]:
    """The first rows of the first batch: the masked input, the same with
    the model's choices at the chosen positions, and the original."""
    batch = self.batches[0]
    best = sharding.to_host(self._best(params, self._on_mesh(batch)))
    samples = []
    for r in range(min(EVAL_SAMPLES, len(batch['targets']))):
      chosen = batch['weights'][r, :SAMPLE_TOKENS] > 0
      inputs = batch['inputs'][r, :SAMPLE_TOKENS]
      if chosen.any():
        samples.append({
            'input': self._text(inputs),
            'filled': self._text(np.where(chosen, best[r, :SAMPLE_TOKENS],
                                          inputs)),
            'original': self._text(batch['targets'][r, :SAMPLE_TOKENS])})
    return samples

  def _text(self, ids: np.ndarray) -> str:
    """ids as text: their pieces joined (SentencePiece's word boundary as
    a space), MASK as [MASK], PAD left out."""
    piece = self.tokenizer.id_to_piece
    return ''.join('[MASK]' if i == MASK_ID else piece(i) for i in ids
                   if i != PAD_ID).replace('\u2581', ' ')

  def summary(self, metrics: dict[str, Any]) -> str:
    return (f'loss {metrics["loss"]:.4f}  accuracy {metrics["accuracy"]:.4f}'
            f'  perplexity {metrics["perplexity"]:.3f}  ({metrics["tokens"]:,}'
            f' masked tokens, {metrics["seconds"]:.0f}s)')

  def file_name(self, steps: list[int]) -> str:
    return f'{self.split}_step{steps[-1]}' + (
        f'_avg{len(steps)}' if len(steps) > 1 else '')

  def report(self, metrics: dict[str, Any], outputs: list[dict[str, str]],
             base: str, *, samples: int = 0) -> str:
    """The summary and the samples (all of them: `samples` does not
    apply)."""
    del samples
    steps = metrics['checkpoint_steps']
    lines = [f'\n{self.split} split, checkpoint {steps[-1]}:',
             '  ' + self.summary(metrics), f'Metrics and samples: {base}.json']
    for sample in outputs:
      lines += [f'  input:    {sample["input"]!r}',
                f'  filled:   {sample["filled"]!r}',
                f'  original: {sample["original"]!r}']
    return '\n'.join(lines)

  def write(self, directory: str, name: str, samples: list[dict[str, str]],
            metrics: dict[str, Any]) -> str:
    """NAME.json: the metrics, with the samples."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, name)
    with open(f'{base}.json', 'w', encoding='utf-8') as f:
      json.dump({**metrics, 'samples': samples}, f, indent=2,
                ensure_ascii=False)
    return base
