"""Config overrides, serialisation, and the README's list of every key."""

import os
import re

import pytest

from transformer import config as config_lib
from transformer.config import Config, ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_overrides_parse_each_type():
  config = Config()
  for assignment, path, want in [
      ('train.steps=7', ('train', 'steps'), 7),
      ('train.label_smoothing=0.2', ('train', 'label_smoothing'), 0.2),
      ('train.fsdp=true', ('train', 'fsdp'), True),
      ('model.dtype=bfloat16', ('model', 'dtype'), 'bfloat16'),
      ('data.text_dir=/tmp/x', ('data', 'text_dir'), '/tmp/x'),
      ('seed=3', ('seed',), 3)]:
    value = config_lib.override(config, assignment)
    for part in path:
      value = getattr(value, part)
    assert value == want and type(value) is type(want)


@pytest.mark.parametrize('assignment,message', [
    ('train.step=5', 'Did you mean train.steps'),
    ('modle.d_model=5', 'Did you mean model.d_model'),
    ('train.steps=1.5', 'expected int'),
    ('train.fsdp=maybe', 'expected true or false'),
    ('model.positions=rotary', 'must be one of sinusoidal, learned'),
    ('model.num_heads=7', 'must be divisible'),
    ('train.steps', 'expected KEY=VALUE'),
])
def test_bad_overrides_name_the_key_and_what_is_accepted(assignment, message):
  with pytest.raises(ConfigError, match=re.escape(message)):
    config_lib.override(Config(), assignment)


def test_json_round_trip():
  config = config_lib.override(Config(), 'model.d_model=256')
  import json  # pylint: disable=g-import-not-at-top
  assert config_lib.from_dict(json.loads(config_lib.to_json(config))) == config


def test_readme_documents_every_config_key():
  readme = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
  missing = [key for key in config_lib.field_paths(Config())
             if f'`{key}`' not in readme]
  assert not missing, f'README.md does not document: {missing}'
