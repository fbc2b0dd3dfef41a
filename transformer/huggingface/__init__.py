"""Hugging Face BERT and GPT-2 checkpoints, from a local directory.

A model directory holds `config.json`, `model.safetensors` and
`tokenizer.json` (what `save_pretrained` of a model and its fast tokenizer
write). No PyTorch or TensorFlow: safetensors reads the weights as NumPy
arrays and the `tokenizers` library the tokenizer.

  is_model_dir(path)            config.json and model.safetensors present
  read_model_config(directory)  the settings and task families (HFModel)
  load_params(directory)        the parameters, in the project's layout
  install_tokenizer(directory, workdir)
                                tokenizer.json and the vocabulary map into a
                                run's workdir (data.tokenizer='huggingface')
  to_hf(params, arch, vocab_map)
                                the inverse of the weight mapping (export)

BERT (BertModel and its descendants) serves task=classification,
regression (model.pooling 'first' for [CLS], or 'mean') and masked_lm;
GPT-2 serves language_model. Token ids are renumbered once, by the
vocabulary map (`vocabulary.py`), so that the project's PAD/UNK/BOS/EOS/
MASK ids hold and no model code or pipeline changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, NamedTuple

import numpy as np
import safetensors
import safetensors.numpy
import tokenizers

from transformer.data.corpus import DataError
from transformer.huggingface import configs, vocabulary
from transformer.huggingface.tokenizer import FILENAME as TOKENIZER_FILE
from transformer.huggingface.tokenizer import HuggingFaceTokenizer
from transformer.huggingface.vocabulary import VocabularyMap
from transformer.huggingface.weights import to_hf, to_project

__all__ = ['HFModel', 'HuggingFaceTokenizer', 'VocabularyMap',
           'install_tokenizer', 'is_model_dir', 'load_params',
           'read_model_config', 'to_hf', 'to_project', 'vocabulary_map']

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
MAP_FILE = vocabulary.FILENAME


class HFModel(NamedTuple):
  """What a Hugging Face model directory holds, in the project's terms."""
  arch: str  # 'bert' | 'gpt2'
  # Dotted config keys -> values: every model.* key of the architecture,
  # model.vocab_size (the vocabulary map's size) and data.tokenizer.
  overrides: dict[str, Any]
  families: tuple[str, ...]  # config.task values it can initialise


def is_model_dir(path: str) -> bool:
  """Whether `path` is a Hugging Face model directory (config.json and
  model.safetensors), rather than a run's workdir."""
  return all(os.path.isfile(os.path.join(path, name))
             for name in (CONFIG_FILE, WEIGHTS_FILE))


def _file(directory: str, name: str) -> str:
  path = os.path.join(directory, name)
  if not os.path.isfile(path):
    raise DataError(
        f'{directory} has no {name}: a Hugging Face model directory needs '
        f'{CONFIG_FILE}, {WEIGHTS_FILE} (safetensors; sharded or PyTorch '
        f'.bin weights are not read) and {TOKENIZER_FILE} (a fast '
        "tokenizer's save_pretrained writes it)")
  return path


def _architecture(directory: str) -> configs.Architecture:
  path = _file(directory, CONFIG_FILE)
  try:
    with open(path, encoding='utf-8') as f:
      hf = json.load(f)
  except (OSError, ValueError) as error:
    raise DataError(f'{path} is not a JSON file ({error})') from None
  if not isinstance(hf, dict):
    raise DataError(f'{path} must hold a JSON object')
  return configs.read(hf, path)


def _tokenizer(directory: str) -> tokenizers.Tokenizer:
  path = _file(directory, TOKENIZER_FILE)
  try:
    return tokenizers.Tokenizer.from_file(path)
  except Exception as error:  # tokenizers raises plain Exception
    raise DataError(f'{path} is not a tokenizer.json the `tokenizers` '
                    f'library can read ({error})') from None


def vocabulary_map(directory: str) -> VocabularyMap:
  """The map from the directory's token ids to the project's (config.json's
  vocab_size, tokenizer.json's special tokens)."""
  arch = _architecture(directory)
  path = os.path.join(directory, TOKENIZER_FILE)
  return vocabulary.BUILDERS[arch.arch](
      arch.hf_vocab_size, _tokenizer(directory).token_to_id, path)


def read_model_config(directory: str) -> HFModel:
  """The settings that rebuild the directory's model exactly.

  model.pooler is true when the weights hold BertModel's pooler (set
  model.pooling='first' to use it as BertForSequenceClassification does).
  """
  arch = _architecture(directory)
  overrides = dict(arch.overrides)
  overrides['model.vocab_size'] = vocabulary_map(directory).size
  overrides['data.tokenizer'] = 'huggingface'
  if arch.arch == 'bert':
    path = _file(directory, WEIGHTS_FILE)
    with safetensors.safe_open(path, framework='numpy') as f:
      names = list(f.keys())
    overrides['model.pooler'] = any(
        name.removeprefix('bert.').startswith('pooler.') for name in names)
  return HFModel(arch.arch, overrides, arch.families)


def load_params(directory: str) -> dict:
  """The directory's weights as nested float32 NumPy arrays in the
  project's layout (`weights.to_project`), vocabulary rows in project order.
  """
  arch = _architecture(directory)
  vocab_map = vocabulary_map(directory)
  path = _file(directory, WEIGHTS_FILE)
  try:
    tensors = safetensors.numpy.load_file(path)
  except Exception as error:  # safetensors raises its own and OSError
    raise DataError(f'{path} is not a safetensors file this code can read '
                    f'({error})') from None
  tensors = {name: np.asarray(array, np.float32)
             for name, array in tensors.items()}
  return to_project(tensors, arch.arch, vocab_map,
                    num_heads=arch.overrides['model.num_heads'], where=path)


def install_tokenizer(directory: str, workdir: str) -> None:
  """Copies the directory's tokenizer.json into `workdir` and writes the
  vocabulary map beside it (tokenizer.vocabulary.json), each atomically:
  what `transformer.data.tokenizer.load_or_train` reads for
  data.tokenizer='huggingface'."""
  vocab_map = vocabulary_map(directory)
  HuggingFaceTokenizer(_tokenizer(directory), vocab_map)  # checks the sizes
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(directory, TOKENIZER_FILE), 'rb') as f:
    _write_atomically(os.path.join(workdir, TOKENIZER_FILE), f.read())
  _write_atomically(os.path.join(workdir, MAP_FILE),
                    vocab_map.to_json().encode('utf-8'))


def _write_atomically(path: str, data: bytes) -> None:
  """`data` into a temporary file beside `path`, then renamed: a crash
  never leaves half a file."""
  fd, tmp = tempfile.mkstemp(prefix='.tokenizer-tmp-',
                             dir=os.path.dirname(os.path.abspath(path)))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    os.remove(tmp)
    raise
