"""--mode=export: a trained run as a Hugging Face model directory.

  DIR/config.json            transformers' config of the architecture the
                             task names (`Task.export_spec`):
                             GPT2LMHeadModel, BertForMaskedLM or
                             BertForSequenceClassification
  DIR/model.safetensors      the parameters under transformers' names,
                             float32, vocabulary rows in the tokenizer's order
  DIR/tokenizer.json         the run's tokenizer for the `tokenizers` library
  DIR/tokenizer_config.json  its special tokens, for PreTrainedTokenizerFast

so that `AutoModelFor*.from_pretrained(DIR)` computes the run's logits and
`AutoTokenizer.from_pretrained(DIR)` gives the run's token ids (the BOS /
EOS the task's pipeline puts around a text included). A model the
architecture cannot compute exactly (sinusoidal positions for GPT-2, pre-LN
for BERT, a scaled input embedding, ...) is refused before anything is
written, with every key at fault and what the architecture needs.

The tokenizer: tokenizer_json.py.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import numpy as np
import safetensors.numpy

from transformer.config import (BOS_ID, EOS_ID, PAD_ID, Config,
                                ConfigError, ModelConfig)
from transformer.huggingface import weights
from transformer.huggingface.tokenizer_json import Exported, hf_tokenizer
from transformer.huggingface.vocabulary import VocabularyMap
from transformer.tasks.base import ExportSpec, Task
from transformer.workdir import RunError

Params = dict[str, Any]
Tensors = dict[str, np.ndarray]

FILES = ('config.json', 'model.safetensors', 'tokenizer.json',
         'tokenizer_config.json')
GPT2 = 'GPT2LMHeadModel'
BERT_MLM = 'BertForMaskedLM'
BERT_CLASSIFIER = 'BertForSequenceClassification'
MODEL_TYPES = {GPT2: 'gpt2', BERT_MLM: 'bert', BERT_CLASSIFIER: 'bert'}
TOKEN_TYPES = 'bert.embeddings.token_type_embeddings.weight'
# model.activation -> transformers' name: 'gelu' is the tanh approximation
# (HF's 'gelu_new'), 'gelu_exact' the erf form (HF's 'gelu').
HF_ACTIVATIONS = {'gelu': 'gelu_new', 'gelu_exact': 'gelu', 'relu': 'relu'}


# ---------------------------------------------------------------------------
# What each architecture computes, checked before anything is written.
# ---------------------------------------------------------------------------


def _shared_needs(m: ModelConfig) -> list[str]:
  """What GPT-2 and BERT both need: each a 'key=value (why)' phrase."""
  needs = []
  if m.positions != 'learned':
    needs.append(f"model.positions={m.positions!r} (it adds learned "
                 "position embeddings: needs 'learned')")
  if m.init != 'gpt2':
    needs.append(f"model.init={m.init!r} (the token embedding is multiplied "
                 "by sqrt(d_model) on the way in but not in the tied output "
                 "layer, which it cannot express: needs 'gpt2', whose "
                 'embedding is not scaled)')
  if not m.tie_output_embedding:
    needs.append('model.tie_output_embedding=false (its output layer is the '
                 'token embedding, without a bias: needs true)')
  return needs


def _gpt2_needs(m: ModelConfig) -> list[str]:
  needs = []
  if m.norm_position != 'pre':
    needs.append(f"model.norm_position={m.norm_position!r} (GPT-2 is "
                 "pre-LN with a final LayerNorm: needs 'pre')")
  if m.token_types:
    needs.append(f'model.token_types={m.token_types} (GPT-2 has no segment '
                 'embedding: needs 0)')
  if m.embedding_norm:
    needs.append('model.embedding_norm=true (GPT-2 has no LayerNorm over '
                 'the embeddings: needs false)')
  return needs


def _bert_needs(m: ModelConfig) -> list[str]:
  needs = []
  if m.norm_position != 'post':
    needs.append(f"model.norm_position={m.norm_position!r} (BERT is post-LN: "
                 "needs 'post')")
  if not m.embedding_norm:
    needs.append('model.embedding_norm=false (BERT normalises the summed '
                 'embeddings: needs true)')
  return needs


def _classifier_needs(m: ModelConfig) -> list[str]:
  needs = []
  if m.pooling != 'first':
    needs.append(f"model.pooling={m.pooling!r} (BertForSequenceClassification "
                 "pools the first token, [CLS]: needs 'first')")
  if not m.pooler:
    needs.append('model.pooler=false (BertForSequenceClassification passes '
                 'the pooled vector through dense + tanh: needs true)')
  return needs


NEEDS: dict[str, tuple[Callable[[ModelConfig], list[str]], ...]] = {
    GPT2: (_shared_needs, _gpt2_needs),
    BERT_MLM: (_shared_needs, _bert_needs),
    BERT_CLASSIFIER: (_shared_needs, _bert_needs, _classifier_needs),
}


def needs(model: ModelConfig, architecture: str) -> list[str]:
  """What `architecture` needs that `model` is not, one 'key=value (why)'
  phrase each; [] if it computes the model exactly."""
  return [need for rule in NEEDS[architecture] for need in rule(model)]


def check(config: Config, task: Task) -> ExportSpec:
  """The task's ExportSpec; ConfigError naming every model key the
  architecture cannot compute exactly (or the task, if it has none)."""
  spec = task.export_spec()
  if spec is None:
    raise ConfigError(
        f'--mode=export: task={config.task} has no Hugging Face architecture '
        'to be written as. Export writes language models (GPT2LMHeadModel), '
        'masked language models (BertForMaskedLM) and classifiers and '
        'regressors (BertForSequenceClassification).')
  unmet = needs(config.model, spec.architecture)
  if unmet:
    raise ConfigError(
        f'--mode=export: this run cannot be written as Hugging Face\'s '
        f'{spec.architecture}, which computes its model differently: '
        f'{"; ".join(unmet)}. These settings are fixed when a run is '
        'trained; train one with them to export it.')
  return spec


def check_output(directory: str) -> None:
  """RunError unless --output is a new or empty directory, or one that
  holds only an earlier export's files (they are replaced)."""
  if not directory:
    raise RunError('--mode=export needs --output=DIR: the directory to write '
                   f'the Hugging Face model to ({", ".join(FILES)}).')
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise RunError(f'--output={directory} is a file; give a directory.')
  others = sorted(set(os.listdir(directory)) - set(FILES)) if (
      os.path.isdir(directory)) else []
  if others:
    raise RunError(
        f'--output={directory} holds other files ({", ".join(others[:5])}): '
        'export writes into a new or empty directory, or over an earlier '
        'export; choose another --output.')


# ---------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------


def hf_config(config: Config, spec: ExportSpec, vocab_size: int,
              special_ids: dict[str, int]) -> dict[str, Any]:
  """transformers' config.json of `spec.architecture` for `config`.

  vocab_size: rows of the exported embedding; special_ids: 'pad', 'bos',
  'eos' -> their ids in the exported vocabulary.
  """
  m = config.model
  common = {'architectures': [spec.architecture],
            'model_type': MODEL_TYPES[spec.architecture],
            'vocab_size': vocab_size, 'tie_word_embeddings': True,
            'initializer_range': 0.02, 'dtype': 'float32',
            **{f'{name}_token_id': i for name, i in special_ids.items()}}
  if spec.architecture == GPT2:
    return {**common, 'n_positions': m.max_length, 'n_embd': m.d_model,
            'n_layer': m.num_decoder_layers, 'n_head': m.num_heads,
            'n_inner': m.d_ff,
            'activation_function': HF_ACTIVATIONS[m.activation],
            'resid_pdrop': m.dropout_rate, 'embd_pdrop': m.dropout_rate,
            'attn_pdrop': m.attention_dropout_rate,
            'layer_norm_epsilon': m.layer_norm_epsilon,
            'scale_attn_weights': True, **spec.config}
  return {**common, 'hidden_size': m.d_model,
          'num_hidden_layers': m.num_encoder_layers,
          'num_attention_heads': m.num_heads, 'intermediate_size': m.d_ff,
          'hidden_act': HF_ACTIVATIONS[m.activation],
          'hidden_dropout_prob': m.dropout_rate,
          'attention_probs_dropout_prob': m.attention_dropout_rate,
          'max_position_embeddings': m.max_length,
          # No segment table (model.token_types=0): one zero row, exact.
          'type_vocab_size': max(m.token_types, 1),
          'layer_norm_eps': m.layer_norm_epsilon,
          'position_embedding_type': 'absolute', **spec.config}


# ---------------------------------------------------------------------------
# The parameters under transformers' names.
# ---------------------------------------------------------------------------


def unstack_layers(params: Params) -> Params:
  """model.scan_layers' stacks ('encoder_layers', 'decoder_layers': every
  leaf [layers, ...]) as the unrolled layers 'encoder_0', ... that
  weights.to_hf reads."""
  out = {}
  for name, value in params.items():
    if name in ('encoder_layers', 'decoder_layers'):
      kind = name[:-len('_layers')]
      for i in range(len(jax.tree.leaves(value)[0])):
        out[f'{kind}_{i}'] = jax.tree.map(lambda x, i=i: x[i], value)
    else:
      out[name] = unstack_layers(value) if isinstance(value, dict) else value
  return out


def fold_head(params: Params, spec: ExportSpec) -> Params:
  """The head with spec.head folded in: outputs ours @ M + c, i.e. kernel
  K M and bias b M + c."""
  if spec.head is None:
    return params
  matrix, offset = (np.asarray(x, np.float64) for x in spec.head)
  head = params['head']
  kernel = (head['kernel'].astype(np.float64) @ matrix).astype(np.float32)
  bias = (head['bias'].astype(np.float64) @ matrix + offset)
  return {**params, 'head': {'kernel': kernel, 'bias': bias.astype(np.float32)}}


def shared_embedding_name(params: Params) -> Params:
  """The stack's token embedding named 'embedding' (weights.py's name)
  whether or not model.share_embeddings: an encoder-only or decoder-only
  model has one ('source_embedding' or 'target_embedding' when unshared)."""
  out = {}
  for name, value in params.items():
    if name in ('source_embedding', 'target_embedding'):
      name = 'embedding'
    out[name] = shared_embedding_name(value) if isinstance(
        value, dict) else value
  return out


def hf_tensors(params: Params, spec: ExportSpec, vocab_map: VocabularyMap
               ) -> Tensors:
  """Host (NumPy) params of the task's model -> {transformers' name:
  float32 array} (weights.to_hf), layers unstacked and the head folded
  (`fold_head`). Without a segment table (model.token_types=0) BERT gets
  one zero row, which adds nothing: exact."""
  params = fold_head(shared_embedding_name(unstack_layers(params)), spec)
  arch = MODEL_TYPES[spec.architecture]
  tensors = weights.to_hf(params, arch, vocab_map)
  if arch == 'bert' and TOKEN_TYPES not in tensors:
    width = tensors['bert.embeddings.word_embeddings.weight'].shape[1]
    tensors[TOKEN_TYPES] = np.zeros((1, width), np.float32)
  return {name: np.ascontiguousarray(value, np.float32)
          for name, value in tensors.items()}


# ---------------------------------------------------------------------------
# tokenizer.json: the run's tokenizer for the `tokenizers` library.
# ---------------------------------------------------------------------------

def tokenizer_config(exported: Exported, spec: ExportSpec, max_length: int
                     ) -> dict[str, Any]:
  """tokenizer_config.json: PreTrainedTokenizerFast with its special
  tokens by role; for BERT BOS and EOS are also [CLS] and [SEP]."""
  roles = dict(exported.roles)
  if MODEL_TYPES[spec.architecture] == 'bert':
    roles.update({cls: roles[own] for cls, own in (
        ('cls_token', 'bos_token'), ('sep_token', 'eos_token'))
                  if own in roles})
  return {'tokenizer_class': 'PreTrainedTokenizerFast',
          'model_max_length': max_length,
          'clean_up_tokenization_spaces': False, **roles}


# ---------------------------------------------------------------------------
# The export.
# ---------------------------------------------------------------------------


def export(task: Task, params: Params, tokenizer, directory: str
           ) -> list[str]:
  """Writes the run's model (`task`, its host NumPy `params`) and its
  `tokenizer` into `directory` as FILES; returns their paths. Refuses (see
  `check`, `check_output`) before writing anything."""
  spec = check(task.config, task)
  check_output(directory)
  return write(task.config, spec, params, tokenizer, directory)


def write(config: Config, spec: ExportSpec, params: Params, tokenizer,
          directory: str) -> list[str]:
  """FILES of the model `spec` describes (checked), into `directory`."""
  exported = hf_tokenizer(tokenizer, spec)
  vocab_map = exported.vocab_map
  tensors = hf_tensors(params, spec, vocab_map)
  ids = dict(zip(('pad', 'bos', 'eos'),
                 vocab_map.ids_to_hf([PAD_ID, BOS_ID, EOS_ID])))
  hf = hf_config(config, spec, vocab_map.hf_size,
                 {name: i for name, i in ids.items() if i >= 0})
  return write_files(directory, {
      'config.json': json.dumps(hf, indent=2).encode(),
      # transformers reads only files marked as PyTorch's layout.
      'model.safetensors': safetensors.numpy.save(
          tensors, metadata={'format': 'pt'}),
      'tokenizer.json': exported.json.encode(),
      'tokenizer_config.json': json.dumps(tokenizer_config(
          exported, spec, config.model.max_length), indent=2).encode()})


def write_files(directory: str, files: dict[str, bytes]) -> list[str]:
  """Each file written whole (a temporary file renamed), so that a crash
  leaves no half-written one."""
  os.makedirs(directory, exist_ok=True)
  paths = []
  for name, data in files.items():
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, f'.{name}.tmp-{os.getpid()}')
    try:
      with open(tmp, 'wb') as f:
        f.write(data)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    paths.append(path)
  return paths
