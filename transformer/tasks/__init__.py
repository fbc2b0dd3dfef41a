"""Task families behind one interface; `config.task` picks one.

A task is a small frozen (hashable) object holding the config and what the
run learnt from its training data (class names, target statistics). The
generic code calls only these:

  pure, inside jit (train.train_step, the eval step):
    init_params(rng) -> params
    loss_sums(params, batch, rng) -> (loss_sum, (weight_sum, metric_sums))
    eval_sums(params, batch) -> {name: sum over the batch}
  the outer loop's side:
    tokenizer_corpus() -> the training texts, as tuples of strings
    train_dataset(tokenizer, process_index=, process_count=) -> grain data
    evaluator(tokenizer, mesh, split, num_examples) -> a callable
      params -> (metrics, outputs), with .write(directory, name, outputs,
      metrics) and .summary(metrics) -> one line for logs
    predict_lines(params, tokenizer, lines, mesh, warn=) -> one line out per
      line in, for --mode=predict

Losses are sums, never means (transformer/losses.py), so the train step
divides once by the total weight, exactly across devices, hosts and
micro-batches, whatever the task.
"""

from __future__ import annotations

from transformer.config import Config
from transformer.tasks import labelled, language_model, translation

# config.task -> prepare(config, workdir, create=) -> task.
_PREPARE = {'translation': translation.prepare,
            'classification': labelled.prepare_classification,
            'regression': labelled.prepare_regression,
            'language_model': language_model.prepare}


def for_run(config: Config, workdir: str, *, create: bool = False):
  """The task of `config` for the run in `workdir`.

  Args:
    create: training: compute what the task learns from the training data
      (e.g. class names) if the workdir does not hold it yet, and save it
      there (process 0). Otherwise it must be there already.
  """
  if config.task not in _PREPARE:
    from transformer.config import ConfigError  # pylint: disable=g-import-not-at-top
    raise ConfigError(f'task={config.task!r}: expected one of '
                      f'{", ".join(_PREPARE)}')
  return _PREPARE[config.task](config, workdir, create=create)


def for_config(config: Config):
  """A task that needs no run (translation; tests and benchmarks)."""
  return for_run(config, '', create=False)
