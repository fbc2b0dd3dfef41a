"""Experiments by name: `experiments/NAME.py`'s `get_config()`, overridden.

The one config loader of every command line (launch.py, the baselines, the
n-gram models). It imports only the config, so that launch.py can restart
itself under TCMalloc before anything loads JAX.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from typing import Any, Callable

from transformer import config as config_lib
from transformer.data.bible import CorpusUnavailableError
from transformer.data.corpus import DataError

PACKAGE = 'experiments'  # at the repository root, beside launch.py
# Config and data problems: a command line shows them without a traceback.
CONFIG_AND_DATA_ERRORS = (config_lib.ConfigError, DataError,
                          CorpusUnavailableError)


def available() -> list[str]:
  """The experiment names: the modules of the experiments package."""
  package = importlib.import_module(PACKAGE)
  return sorted(m.name for m in pkgutil.iter_modules(package.__path__))


def load_config(name: str, overrides: list[str]) -> config_lib.Config:
  """experiments/NAME.py's config with each 'KEY=VALUE' of `overrides`."""
  names = available()
  if name not in names:
    raise config_lib.ConfigError(
        f'--experiment={name}: no such experiment. Available: '
        f'{", ".join(names)} (files in {PACKAGE}/).')
  config = importlib.import_module(f'{PACKAGE}.{name}').get_config()
  return config_lib.override_all(config, list(overrides))


def run_command(name: str, overrides: list[str],
                measure: Callable[[config_lib.Config], dict[str, Any]],
                table: Callable[[dict[str, Any]], str],
                output: str | None) -> None:
  """The baselines' command lines: `measure` the experiment's config; the
  table on stdout and the JSON in `output`, or the table on stderr and the
  JSON on stdout. Config and data errors end the command with their
  message, no traceback."""
  try:
    result = {'experiment': name, 'overrides': overrides,
              **measure(load_config(name, overrides))}
  except CONFIG_AND_DATA_ERRORS as error:
    sys.exit(f'error: {error}')
  text = json.dumps(result, indent=2)
  print(table(result), file=sys.stdout if output else sys.stderr)
  if output:
    with open(output, 'w', encoding='utf-8') as f:
      f.write(text + '\n')
  else:
    print(text)
