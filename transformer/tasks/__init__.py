"""Task families behind one interface (`base.Task`); `config.task` picks one.

This is the one place that maps `config.task` to a family: each family is a
package here (translation/, labelled/, language_model/, masked_lm/)
holding its model glue, loss, data, evaluation, prediction, benchmark hooks,
pictures and baselines. Generic code gets a task from `for_run` (or `for_config`,
`for_benchmark`) and asks it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from transformer.best import BestMetric
from transformer.config import Config, ConfigError
from transformer.tasks import labelled, language_model, masked_lm, translation
from transformer.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class Family:
  """How to build one config.task's task.

  Attributes:
    task_class: its class (its modes, run files).
    prepare: (config, workdir, create=) -> the task of a run; with create,
      computes what it learns from the training data (class names) if the
      workdir lacks it and saves it there (process 0).
    benchmark_task: config -> a task from the config alone (no workdir, no
      data), the one --mode=benchmark measures.
  """
  task_class: type[Task]
  prepare: Callable[..., Task]
  benchmark_task: Callable[[Config], Task]


FAMILIES = {
    'translation': Family(translation.Translation, translation.prepare,
                          translation.benchmark_task),
    'classification': Family(labelled.Classification,
                             labelled.prepare_classification,
                             labelled.benchmark_task),
    'regression': Family(labelled.Regression, labelled.prepare_regression,
                         labelled.benchmark_task),
    'language_model': Family(language_model.LanguageModelTask,
                             language_model.prepare,
                             language_model.benchmark_task),
    'masked_lm': Family(masked_lm.MaskedLMTask, masked_lm.prepare,
                        masked_lm.benchmark_task),
}


def family(config: Config) -> Family:
  if config.task not in FAMILIES:
    raise ConfigError(f'task={config.task!r}: expected one of '
                      f'{", ".join(FAMILIES)}')
  return FAMILIES[config.task]


def for_run(config: Config, workdir: str, *, create: bool = False) -> Task:
  """The task of `config` for the run in `workdir`.

  Args:
    create: training: compute what the task learns from the training data
      (e.g. class names) if the workdir does not hold it yet, and save it
      there (process 0). Otherwise it must be there already.
  """
  return family(config).prepare(config, workdir, create=create)


def for_config(config: Config) -> Task:
  """A task that needs no run (translation; tests and benchmarks)."""
  return for_run(config, '', create=False)


def for_benchmark(config: Config) -> Task:
  """The task --mode=benchmark measures: from the config alone."""
  return family(config).benchmark_task(config)


def check_mode(config: Config, mode: str) -> None:
  """A ConfigError unless `config.task` serves launch.py's --mode=mode."""
  if mode in family(config).task_class.modes():
    return
  serving = [name for name, f in FAMILIES.items()
             if mode in f.task_class.modes()]
  raise ConfigError(f'--mode={mode} is for task={" or ".join(serving)}; '
                    f'this experiment is task={config.task}: use '
                    '--mode=predict')


def best_metric(config: Config) -> BestMetric | None:
  """eval.best_metric with its direction, from the task's BEST_METRICS;
  None if unset; a ConfigError naming the accepted metrics if unknown."""
  name = config.eval.best_metric
  if not name:
    return None
  directions = family(config).task_class.BEST_METRICS
  if name not in directions:
    raise ConfigError(
        f'eval.best_metric={name!r} is not a metric of task={config.task}\'s '
        f'evaluation; choose one of {", ".join(sorted(directions))}')
  return BestMetric(name, directions[name] == 'max', config.eval.split)


def missing_split(config: Config, split: str) -> str | None:
  """Why an optional `split` is absent from config's data, or None."""
  return family(config).task_class.missing_split(config, split)


def run_files() -> tuple[str, ...]:
  """Every family's files a run keeps in its workdir (labels.json, ...)."""
  return tuple(dict.fromkeys(name for f in FAMILIES.values()
                             for name in f.task_class.RUN_FILES))
