"""Experiments by name: `experiments/NAME.py`'s `get_config()`, overridden.

The one config loader of every command line (launch.py, the baselines, the
n-gram models). It imports only the config, so that launch.py can restart
itself under TCMalloc before anything loads JAX.
"""

from __future__ import annotations

import importlib
import pkgutil

from transformer import config as config_lib

PACKAGE = 'experiments'  # at the repository root, beside launch.py


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
  for assignment in overrides:
    config = config_lib.override(config, assignment)
  return config
