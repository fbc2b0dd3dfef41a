"""The language model's evaluation: perplexity and bits per character over
every token of a split, with a few sample continuations (the package
docstring defines the numbers)."""

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
from transformer.tasks.language_model import data

# Sample continuations in every evaluation's JSON and the final report.
EVAL_SAMPLES, EVAL_SAMPLE_WORDS, EVAL_SAMPLE_TOKENS = 3, 6, 64


def _pad_rows(batch: dict[str, np.ndarray], multiple: int
              ) -> dict[str, np.ndarray]:
  """Rows of weight 0 up to a multiple of the data axis' devices."""
  rows = len(batch['targets'])
  extra = -rows % multiple
  if not extra:
    return batch
  return {k: np.concatenate([v, np.zeros((extra,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


class Evaluator:
  """Perplexity and bits per character over every token of a split."""

  def __init__(self, task, tokenizer, mesh, split: str,
               num_examples: int = 0):
    self.task, self.tokenizer, self.mesh, self.split = (task, tokenizer, mesh,
                                                        split)
    config = task.config
    ways = train_lib.data_parallel_size(mesh)
    self.batches = [_pad_rows(b, ways) for b in data.eval_batches(
        config, tokenizer, split, max_documents=num_examples)]
    self.size = data.eval_text_size(config, split,
                                    max_documents=num_examples)
    documents = data.load_documents(config, split)
    self.prompts = [' '.join(documents[i].split()[:EVAL_SAMPLE_WORDS])
                    for i in range(min(EVAL_SAMPLES, len(documents)))]
    self._step = jax.jit(lambda params, batch: train_lib.eval_step(
        params, batch, task=task))
    # Learned positions end at model.max_length: leave room for a prompt.
    self.sample_tokens = (min(EVAL_SAMPLE_TOKENS, config.model.max_length // 2)
                          if config.model.positions == 'learned' else
                          EVAL_SAMPLE_TOKENS)

  def __call__(self, params) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(metrics, a few sample continuations of the split's first words)."""
    start, nll, tokens = time.time(), 0.0, 0.0
    for batch in self.batches:
      sums = jax.device_get(self._step(params, {
          k: sharding.to_mesh(v, self.mesh) for k, v in batch.items()}))
      nll, tokens = nll + float(sums['nll']), tokens + float(sums['tokens'])
    bits = nll / math.log(2)
    metrics = {
        'loss': nll / max(tokens, 1.0),
        'perplexity': math.exp(min(nll / max(tokens, 1.0), 700.0)),
        'bits_per_character': bits / max(self.size['characters'], 1),
        'bits_per_byte': bits / max(self.size['bytes'], 1),
        'tokens': int(tokens), 'characters': int(self.size['characters']),
        'bytes': int(self.size['bytes']),
    }
    samples = [{'prompt': p, 'continuation': c} for p, c in
               self.task.generate_texts(params, self.tokenizer, self.prompts,
                                        self.mesh, warn=lambda _: None,
                                        max_new_tokens=self.sample_tokens)]
    metrics['seconds'] = time.time() - start
    return metrics, samples

  def summary(self, metrics: dict[str, Any]) -> str:
    return (f'loss {metrics["loss"]:.4f}  perplexity '
            f'{metrics["perplexity"]:.3f}  bits_per_character '
            f'{metrics["bits_per_character"]:.4f}  ({metrics["tokens"]:,} '
            f'tokens, {metrics["seconds"]:.0f}s)')

  def file_name(self, steps: list[int]) -> str:
    return f'{self.split}_step{steps[-1]}' + (
        f'_avg{len(steps)}' if len(steps) > 1 else '')

  def report(self, metrics: dict[str, Any], outputs: list[dict[str, str]],
             base: str, *, samples: int = 0) -> str:
    """The summary and the sample continuations (all of them: `samples`,
    the examples other tasks print, does not apply)."""
    del samples
    steps = metrics['checkpoint_steps']
    lines = [f'\n{self.split} split, checkpoint {steps[-1]}:',
             '  ' + self.summary(metrics), f'Metrics and samples: {base}.json']
    for sample in outputs:
      lines.append(f'  {sample["prompt"]!r} -> {sample["continuation"]!r}')
    return '\n'.join(lines)

  def write(self, directory: str, name: str, samples: list[dict[str, str]],
            metrics: dict[str, Any]) -> str:
    """NAME.json: the metrics, with the sample continuations."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, name)
    with open(f'{base}.json', 'w', encoding='utf-8') as f:
      json.dump({**metrics, 'samples': samples}, f, indent=2,
                ensure_ascii=False)
    return base
