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

The tokenizers are rebuilt from the run's own: SentencePiece's pieces and
scores as a `tokenizers` Unigram or BPE model with SentencePiece's
normalisation (its precompiled NFKC map, extra spaces removed, '▁' for
spaces and before the text: what transformers' SpmConverter does from the
model's normalizer spec); characters as a WordLevel vocabulary with a
pre-tokenizer that isolates every character. A run whose tokenizer came
from Hugging Face (data.tokenizer='huggingface') gets its tokenizer.json
back, and its vocabulary rows in that tokenizer's order (vocabulary.py).
Texts holding a special token's name literally ('<s>', '<mask>') differ:
transformers reads it as that token, the run's tokenizers as characters.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import safetensors.numpy
import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from transformer.config import (BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID,
                                Config, ConfigError, ModelConfig)
from transformer.data import tokenizer as tokenizer_lib
from transformer.huggingface import weights
from transformer.huggingface.tokenizer import HuggingFaceTokenizer
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

# SentencePiece's piece types (sentencepiece_model.proto): UNKNOWN, CONTROL
# (<pad>, <s>, </s>) and USER_DEFINED (the reserved '<mask>') are whole
# tokens, never pieces of a text's segmentation.
SPECIAL_PIECE_TYPES = (2, 3, 4)
UNIGRAM, BPE = 1, 2  # TrainerSpec.model_type


def _bpe_merges(proto) -> list[tuple[str, str]]:
  """SentencePiece BPE merges, ranked by the merged piece's score (its
  merge order; transformers' SpmConverter does the same)."""
  normal = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces)
            if p.type == 1}
  ranked = sorted((-score, i, piece[:k], piece[k:])
                  for piece, (score, i) in normal.items()
                  for k in range(1, len(piece))
                  if piece[:k] in normal and piece[k:] in normal)
  return [(left, right) for _, _, left, right in ranked]


def _sentencepiece_model(proto) -> models.Model:
  kind = proto.trainer_spec.model_type
  if kind == UNIGRAM:
    return models.Unigram([(p.piece, p.score) for p in proto.pieces],
                          unk_id=UNK_ID, byte_fallback=False)
  if kind == BPE:
    return models.BPE({p.piece: i for i, p in enumerate(proto.pieces)},
                      _bpe_merges(proto), unk_token=proto.pieces[UNK_ID].piece,
                      fuse_unk=True)
  raise ConfigError(f'--mode=export: the SentencePiece model_type {kind} is '
                    "not 'unigram' or 'bpe' (data.tokenizer)")


def _sentencepiece_normalizer(spec) -> normalizers.Normalizer:
  """SentencePiece's normalisation in its order: the precompiled map (NFKC,
  line breaks as spaces), spaces stripped and collapsed, spaces as '▁',
  and '▁' before the text (the dummy prefix; Metaspace adds it unless the
  text starts with '▁', SentencePiece always does, hence one more)."""
  steps = []
  if spec.precompiled_charsmap:
    steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
  if spec.remove_extra_whitespaces:
    steps += [normalizers.Replace(tokenizers.Regex(r'\A +| +\z'), ''),
              normalizers.Replace(tokenizers.Regex(' {2,}'), ' ')]
  if spec.escape_whitespaces:
    steps.append(normalizers.Replace(' ', '▁'))
  if spec.add_dummy_prefix:
    steps.append(normalizers.Replace(tokenizers.Regex(r'\A▁'), '▁▁'))
  return normalizers.Sequence(steps)


def sentencepiece_tokenizer(model: bytes) -> tuple[tokenizers.Tokenizer,
                                                   dict[int, str]]:
  """A SentencePiece model (the file's bytes) as a `tokenizers` Tokenizer
  giving SentencePiece's ids, and its special pieces {id: piece}."""
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(model)
  spec = proto.normalizer_spec
  tok = tokenizers.Tokenizer(_sentencepiece_model(proto))
  tok.normalizer = _sentencepiece_normalizer(spec)
  if spec.add_dummy_prefix:
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement='▁', prepend_scheme='always', split=False)
  tok.decoder = decoders.Sequence(
      [decoders.Replace('▁', ' '), decoders.Fuse()] +
      ([decoders.Strip(content=' ', left=1)] if spec.add_dummy_prefix
       else []))
  specials = {i: p.piece for i, p in enumerate(proto.pieces)
              if p.type in SPECIAL_PIECE_TYPES}
  return tok, specials


def char_tokenizer(chars: tokenizer_lib.CharTokenizer
                   ) -> tuple[tokenizers.Tokenizer, dict[int, str]]:
  """A CharTokenizer as a WordLevel vocabulary over single characters
  (every character its own pre-token; no normalisation), and its special
  pieces {id: piece}. The ids no character has get the names
  '<unusedN>'."""
  specials = {i: chars.id_to_piece(i) for i in range(
      len(tokenizer_lib.SPECIAL_PIECES) + len(chars.reserved))}
  vocab = {piece: i for i, piece in specials.items()}
  vocab.update({c: i for i, c in enumerate(chars.chars, len(specials))})
  vocab.update({f'<unused{i}>': i for i in range(len(vocab),
                                                 chars.vocab_size)})
  tok = tokenizers.Tokenizer(models.WordLevel(
      vocab, unk_token=specials[UNK_ID]))
  tok.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex(r'[\s\S]'),
                                           behavior='isolated')
  tok.decoder = decoders.Fuse()
  return tok, specials


def finish_tokenizer(tok: tokenizers.Tokenizer, specials: dict[int, str],
                     spec: ExportSpec) -> str:
  """tokenizer.json: the special pieces as special tokens (matched in the
  raw text, left out of decoded text), and BOS / EOS around a text as the
  task's pipeline puts them (spec.bos, spec.eos)."""
  tok.add_special_tokens([tokenizers.AddedToken(piece, special=True,
                                                normalized=False)
                          for _, piece in sorted(specials.items())])
  around = [(specials[BOS_ID], BOS_ID)] if spec.bos else []
  template = ' '.join([t for t, _ in around] + ['$A'] + (
      [specials[EOS_ID]] if spec.eos else []))
  around += [(specials[EOS_ID], EOS_ID)] if spec.eos else []
  tok.post_processor = processors.TemplateProcessing(
      single=template, special_tokens=around)
  return tok.to_str(pretty=True)


class Exported(NamedTuple):
  """The run's tokenizer as written."""
  json: str  # tokenizer.json
  roles: dict[str, str]  # 'pad_token', ... -> the special token's text
  vocab_map: VocabularyMap  # the run's ids -> the exported ones


ROLES = {'pad_token': PAD_ID, 'unk_token': UNK_ID, 'bos_token': BOS_ID,
         'eos_token': EOS_ID, 'mask_token': MASK_ID}


def hf_tokenizer(tokenizer, spec: ExportSpec) -> Exported:
  """The run's tokenizer: SentencePiece and characters rebuilt for
  `tokenizers` (ids unchanged), a Hugging Face one as it came (ids back in
  its order through the vocabulary map; its own template)."""
  if isinstance(tokenizer, HuggingFaceTokenizer):
    return _as_it_came(tokenizer)
  if isinstance(tokenizer, tokenizer_lib.CharTokenizer):
    tok, specials = char_tokenizer(tokenizer)
  else:
    with open(tokenizer.path, 'rb') as f:
      tok, specials = sentencepiece_tokenizer(f.read())
  return Exported(finish_tokenizer(tok, specials, spec),
                  {role: specials[i] for role, i in ROLES.items()
                   if i in specials},
                  VocabularyMap(tokenizer.vocab_size, {}, {}))


def _as_it_came(tokenizer: HuggingFaceTokenizer) -> Exported:
  """The workdir's tokenizer.json; a role only where the run's special id
  is one of its special tokens (GPT-2 has none for PAD, UNK, BOS)."""
  with open(tokenizer.path, encoding='utf-8') as f:
    text = f.read()
  vocab_map = tokenizer.vocabulary_map
  special = {i for i, token in tokenizers.Tokenizer.from_str(
      text).get_added_tokens_decoder().items() if token.special}
  return Exported(text, {role: tokenizer.id_to_piece(i)
                         for role, i in ROLES.items()
                         if vocab_map.ids_to_hf([i])[0] in special},
                  vocab_map)


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
