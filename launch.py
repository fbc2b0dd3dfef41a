"""The one entry point: python launch.py --experiment=NAME [--mode=...] [--set=KEY=VALUE ...]

Modes: train (default; resumes from the workdir's latest checkpoint),
evaluate, translate, visualize, benchmark. See the README.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

from absl import app, flags

import experiments

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', 'bible_es_en',
                    'Experiment: a file in experiments/ (without .py).')
flags.DEFINE_string('workdir', None,
                    'Directory for checkpoints, logs and the tokenizer; '
                    'default workdirs/EXPERIMENT.')
flags.DEFINE_enum('mode', 'train',
                  ['train', 'evaluate', 'translate', 'visualize', 'benchmark'],
                  'What to do.')
flags.DEFINE_multi_string('set', [], 'Config override KEY=VALUE, e.g. '
                          '--set=train.steps=100; may repeat.')
flags.DEFINE_integer('step', None, 'evaluate/translate/visualize: use this '
                     'checkpoint step instead of the latest.')
flags.DEFINE_string('split', 'test', 'evaluate: the split to decode.')
flags.DEFINE_string('input', None, 'translate: read sentences from this file '
                    'instead of stdin.')
flags.DEFINE_string('sentence', None, 'visualize: the source sentence.')
flags.DEFINE_string('coordinator_address', None, 'Multi-process runs: '
                    'host:port of process 0 (see README, "Many hosts").')
flags.DEFINE_integer('num_processes', None, 'Multi-process runs: how many.')
flags.DEFINE_integer('process_id', None, 'Multi-process runs: this one.')


def available_experiments() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))


def load_config(name: str, overrides: list[str]):
  from transformer import config as config_lib  # pylint: disable=g-import-not-at-top
  if name not in available_experiments():
    raise config_lib.ConfigError(
        f'--experiment={name}: no such experiment. Available: '
        f'{", ".join(available_experiments())} (files in experiments/).')
  config = importlib.import_module(f'experiments.{name}').get_config()
  for assignment in overrides:
    config = config_lib.override(config, assignment)
  return config


def user_errors() -> tuple[type[BaseException], ...]:
  """Exceptions whose message is meant for the user, shown without traceback."""
  from transformer.config import ConfigError  # pylint: disable=g-import-not-at-top
  from transformer.loop import RunError  # pylint: disable=g-import-not-at-top
  errors = [ConfigError, RunError]
  try:
    from transformer.data.sources import DataError  # pylint: disable=g-import-not-at-top
    from transformer.data.bible import CorpusUnavailableError  # pylint: disable=g-import-not-at-top
    errors += [DataError, CorpusUnavailableError]
  except ImportError:
    pass
  return tuple(errors)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.num_processes and FLAGS.num_processes > 1:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  elif os.environ.get('JAX_COORDINATOR_ADDRESS') or os.environ.get(
      'TPU_WORKER_HOSTNAMES', '').count(','):
    jax.distributed.initialize()  # cluster environments configure themselves

  workdir = FLAGS.workdir or os.path.join('workdirs', FLAGS.experiment)
  try:
    config = load_config(FLAGS.experiment, FLAGS.set)
    if FLAGS.mode == 'train':
      from transformer import loop  # pylint: disable=g-import-not-at-top
      summary = loop.train(config, workdir)
      if summary['stop_reason'] != 'done':
        sys.exit(128 + {'SIGTERM': 15, 'SIGINT': 2}[summary['stop_reason']])
    else:
      from transformer import loop  # pylint: disable=g-import-not-at-top
      raise loop.RunError(f'--mode={FLAGS.mode} is not available yet.')
  except user_errors() as error:
    print(f'\nError: {error}', file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
