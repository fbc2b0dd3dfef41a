"""The labelled evaluator: a split's loss and metrics (metrics.py), and the
predictions it writes (NAME.tsv, NAME.json)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np

from transformer import sharding
from transformer import train as train_lib
from transformer.tasks.labelled import metrics as metrics_lib
from transformer.tasks.labelled import pipeline


class Evaluator:
  """The task's loss and metrics (metrics.py) on a split, data loaded once."""

  def __init__(self, task, tokenizer, mesh, split: str,
               num_examples: int = 0):
    self.task, self.mesh, self.split = task, mesh, split
    examples = task.examples(split)
    task.check_labels(examples, split)
    self.batches = pipeline.eval_batches(task.config, tokenizer, examples,
                                         num_examples)
    self._step = jax.jit(lambda params, inputs, labels, weights: (
        task.scores(params, inputs), train_lib.eval_step(
            params, {'inputs': inputs, 'labels': labels, 'weights': weights},
            task=task)))

  def __call__(self, params) -> tuple[dict[str, Any], list[str]]:
    """Returns (metrics, one prediction line per example)."""
    start, loss, weight, scores, targets = time.time(), 0.0, 0.0, [], []
    for batch in self.batches:
      labels = np.stack([self.task.encode_label(label)
                         for _, label in batch.examples] +
                        [self.task.encode_label(batch.examples[0][1])] *
                        (len(batch.weights) - len(batch.examples)))
      out, sums = self._step(params, *(sharding.to_mesh(x, self.mesh) for x in
                                       (batch.inputs, labels, batch.weights)))
      sums = jax.device_get(sums)
      loss, weight = loss + float(sums['loss']), weight + float(sums['weight'])
      scores.append(sharding.to_host(out)[:len(batch.examples)])
      targets += [label for _, label in batch.examples]
    scores = np.concatenate(scores)
    # The metrics and predictions come from task.probabilities, which
    # applies eval.logit_adjust_tau (post-hoc logit adjustment); the loss is
    # the training objective on the raw scores.
    metrics = {'loss': loss / max(weight, 1e-30),
               **self.task.metrics(targets, scores),
               'seconds': time.time() - start}
    tau = self.task.config.eval.logit_adjust_tau
    if tau:  # recorded with the results it changed
      metrics['logit_adjust_tau'] = tau
    return metrics, [self.task.format_prediction(s) for s in scores]

  def summary(self, metrics: dict[str, Any]) -> str:
    adjusted = (f', logits - {metrics["logit_adjust_tau"]:g} log prior'
                if metrics.get('logit_adjust_tau') else '')
    return (f'loss {metrics["loss"]:.4f}  ' +
            metrics_lib.summary_line(metrics, self.task.config.task) +
            f'  ({metrics["examples"]} examples{adjusted}, '
            f'{metrics["seconds"]:.0f}s)')

  def file_name(self, steps: list[int]) -> str:
    return f'{self.split}_step{steps[-1]}' + (
        f'_avg{len(steps)}' if len(steps) > 1 else '')

  def report(self, metrics: dict[str, Any], predictions: list[str],
             base: str, *, samples: int = 0) -> str:
    steps = metrics['checkpoint_steps']
    lines = [f'\n{self.split} split, checkpoint {steps[-1]}, '
             f'{metrics["examples"]} examples:',
             '  ' + self.summary(metrics),
             f'Predictions: {base}.tsv (text, label, prediction), metrics '
             f'{base}.json']
    examples = [e for b in self.batches for e in b.examples]
    for (text, label), prediction in list(zip(examples, predictions))[:samples]:
      lines.append(f'  {self.task.format_label(label):>12}  ->  '
                   f'{prediction}   {text[:70]}')
    return '\n'.join(lines)

  def write(self, directory: str, name: str, predictions: list[str],
            metrics: dict[str, Any]) -> str:
    """NAME.tsv (text, label(s), prediction columns) and NAME.json (the
    metrics)."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, name)
    examples = [e for b in self.batches for e in b.examples]
    clean = lambda text: str(text).replace('\t', ' ').replace('\n', ' ')
    task = self.task
    with open(f'{base}.tsv', 'w', encoding='utf-8') as f:
      f.write('\t'.join(('text', *task.label_columns(),
                         *task.prediction_columns())) + '\n')
      for (text, label), prediction in zip(examples, predictions):
        f.write(f'{clean(text)}\t{task.format_label(label)}\t'
                f'{prediction}\n')
    with open(f'{base}.json', 'w') as f:
      json.dump(metrics, f, indent=2)
    return base
