"""A Hugging Face `config.json` (BERT, GPT-2) -> the project's settings.

`overrides(hf, path)` reads the dict of a config.json and returns the
dotted ModelConfig keys that reproduce the architecture exactly, and the
task families the checkpoint can initialise. What the project's model
cannot compute the same way (relative position embeddings, cross-attention,
an untied output layer, ...) is refused with a DataError naming the file and
the key, before anything is loaded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from transformer.data.corpus import DataError

# Hugging Face's activation names -> model.activation ('gelu' is the erf
# form in HF, 'gelu_new' the tanh approximation GPT-2 uses).
ACTIVATIONS = {'gelu': 'gelu_exact', 'gelu_new': 'gelu',
               'gelu_pytorch_tanh': 'gelu', 'relu': 'relu'}
FAMILIES = {'bert': ('classification', 'regression', 'masked_lm'),
            'gpt2': ('language_model',)}


class Architecture(NamedTuple):
  """What a config.json describes, in the project's terms."""
  arch: str  # 'bert' | 'gpt2'
  overrides: dict[str, Any]  # dotted model.* keys -> values
  families: tuple[str, ...]  # config.task values it can initialise
  hf_vocab_size: int  # rows of HF's embedding (before the vocabulary map)


class _Reader:
  """Reads keys of one config.json, each refusal naming the file and key."""

  def __init__(self, hf: dict[str, Any], path: str):
    self.hf, self.path = hf, path

  def get(self, key: str, default: Any = None, *, kind: type = int) -> Any:
    value = self.hf.get(key, default)
    if value is None or (kind is int and (isinstance(value, bool) or
                                          not isinstance(value, int))) or (
        kind is float and not isinstance(value, (int, float))):
      raise DataError(f'{self.path}: {key}={value!r} must be a '
                      f'{kind.__name__}')
    return value

  def require(self, key: str, accepted: tuple, default: Any) -> Any:
    value = self.hf.get(key, default)
    if value not in accepted:
      raise DataError(
          f'{self.path}: {key}={value!r} is not supported; the import '
          f'accepts {" or ".join(map(repr, accepted))} (the project\'s model '
          'computes only those exactly)')
    return value

  def activation(self, key: str, default: str) -> str:
    return ACTIVATIONS[self.require(key, tuple(ACTIVATIONS), default)]


def _bert(r: _Reader) -> dict[str, Any]:
  """BertModel: post-LN, learned absolute positions, segment embeddings,
  LayerNorm over the summed embeddings (Devlin et al. 2019, sec. 3)."""
  r.require('position_embedding_type', ('absolute',), 'absolute')
  r.require('is_decoder', (False,), False)
  r.require('add_cross_attention', (False,), False)
  r.require('tie_word_embeddings', (True,), True)
  return {
      'model.d_model': r.get('hidden_size'),
      'model.d_ff': r.get('intermediate_size'),
      'model.num_heads': r.get('num_attention_heads'),
      'model.num_encoder_layers': r.get('num_hidden_layers'),
      'model.num_decoder_layers': 0,
      'model.activation': r.activation('hidden_act', 'gelu'),
      'model.norm_position': 'post',
      'model.layer_norm_epsilon': float(r.get('layer_norm_eps', 1e-12,
                                              kind=float)),
      'model.positions': 'learned',
      'model.max_length': r.get('max_position_embeddings'),
      'model.token_types': r.get('type_vocab_size', 2),
      'model.embedding_norm': True,
      'model.dropout_rate': float(r.get('hidden_dropout_prob', 0.1,
                                        kind=float)),
      'model.attention_dropout_rate': float(
          r.get('attention_probs_dropout_prob', 0.1, kind=float)),
  }


def _gpt2(r: _Reader) -> dict[str, Any]:
  """GPT2LMHeadModel: pre-LN with a final LayerNorm, learned positions,
  tanh GELU, the output layer tied to the token embedding (Radford et al.
  2019, sec. 2.3)."""
  r.require('add_cross_attention', (False,), False)
  r.require('scale_attn_weights', (True,), True)
  r.require('scale_attn_by_inverse_layer_idx', (False,), False)
  r.require('tie_word_embeddings', (True,), True)
  d_model = r.get('n_embd')
  d_ff = r.hf.get('n_inner')
  return {
      'model.d_model': d_model,
      'model.d_ff': 4 * d_model if d_ff is None else r.get('n_inner'),
      'model.num_heads': r.get('n_head'),
      'model.num_encoder_layers': 0,
      'model.num_decoder_layers': r.get('n_layer'),
      'model.activation': r.activation('activation_function', 'gelu_new'),
      'model.norm_position': 'pre',
      'model.layer_norm_epsilon': float(r.get('layer_norm_epsilon', 1e-5,
                                              kind=float)),
      'model.positions': 'learned',
      'model.max_length': r.get('n_positions'),
      'model.token_types': 0,
      'model.embedding_norm': False,
      # One rate for embeddings and residuals (embd_pdrop = resid_pdrop in
      # every GPT-2 release).
      'model.dropout_rate': float(r.get('resid_pdrop', 0.1, kind=float)),
      'model.attention_dropout_rate': float(r.get('attn_pdrop', 0.1,
                                                  kind=float)),
  }


READERS = {'bert': _bert, 'gpt2': _gpt2}


def read(hf: dict[str, Any], path: str = 'config.json') -> Architecture:
  """The project's settings for the model a config.json describes.

  Args:
    hf: the parsed config.json; path: its path, for messages.
  Returns:
    Architecture; `overrides` holds every model.* key that differs between
    the families, plus the switches both share (model.init='gpt2': no
    sqrt(d_model) embedding scale; tied embeddings). model.vocab_size is
    left to the caller: it is the vocabulary map's size.
  """
  r = _Reader(hf, path)
  arch = r.require('model_type', tuple(READERS), None)
  overrides = READERS[arch](r)
  overrides.update({'model.init': 'gpt2', 'model.share_embeddings': True,
                    'model.tie_output_embedding': True})
  if overrides['model.d_model'] % overrides['model.num_heads']:
    raise DataError(f'{path}: the width {overrides["model.d_model"]} is not '
                    f'divisible by the {overrides["model.num_heads"]} heads')
  return Architecture(arch, overrides, FAMILIES[arch], r.get('vocab_size'))
