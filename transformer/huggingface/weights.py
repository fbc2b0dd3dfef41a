"""Hugging Face tensors <-> the project's parameters, two pure functions.

`to_project(tensors, arch, vocab_map, num_heads=)` takes the arrays of a
`model.safetensors` (BertModel, BertForMaskedLM, BertForPreTraining,
BertForSequenceClassification; GPT2Model, GPT2LMHeadModel) and returns the
nested params of the project's modules:

  BERT:  {'encoder': Transformer.encode's params, 'transform',
          'transform_norm', 'output_bias' (BertForMaskedLM's
          cls.predictions), 'pooler' (BertModel's pooler), 'head'
          (BertForSequenceClassification's classifier)}: MaskedLanguageModel
          and EncoderClassifier read the keys they have.
  GPT-2: {'decoder': Transformer.decode's params} (LanguageModel).

`to_hf(params, arch, vocab_map)` is its inverse, with the names
`transformers` saves (tied output layers left out, as it does).

Layouts: torch's nn.Linear (BERT) stores [out, in], flax's Dense [in, out];
GPT-2's Conv1D already stores [in, out]. Attention projections are
[d_model, heads, head_dim] here ([heads, head_dim, d_model] for W^O); HF
splits a projection's outputs into heads in the same order, so a reshape
suffices. GPT-2 fuses Q, K, V into one c_attn of [d, 3d]. Vocabulary rows
(token embedding, MLM output bias) go through the vocabulary map
(`vocabulary.py`). Layers are unrolled ('encoder_0', ...), the
model.scan_layers=false layout.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Mapping, NamedTuple

import numpy as np

from transformer.data.corpus import DataError
from transformer.huggingface.vocabulary import VocabularyMap

Tensors = dict[str, np.ndarray]


class Convert(NamedTuple):
  """HF array -> project array (given the heads), and back."""
  forward: Callable[[np.ndarray, int], np.ndarray]
  backward: Callable[[np.ndarray], np.ndarray]


COPY = Convert(lambda a, n: a, lambda a: a)
TRANSPOSE = Convert(lambda a, n: a.T, lambda a: a.T)  # nn.Linear [out, in]
# Projections into heads, [in, out] -> [in, heads, head_dim]; nn.Linear's
# transposed first.
HEADS_IN = Convert(lambda a, n: a.reshape(a.shape[0], n, -1),
                   lambda a: a.reshape(a.shape[0], -1))
HEADS_IN_T = Convert(lambda a, n: a.T.reshape(a.shape[1], n, -1),
                     lambda a: a.reshape(a.shape[0], -1).T)
HEAD_BIAS = Convert(lambda a, n: a.reshape(n, -1), lambda a: a.reshape(-1))
# W^O, [in, out] -> [heads, head_dim, out].
HEADS_OUT = Convert(lambda a, n: a.reshape(n, -1, a.shape[1]),
                    lambda a: a.reshape(-1, a.shape[-1]))
HEADS_OUT_T = Convert(lambda a, n: a.T.reshape(n, -1, a.shape[0]),
                      lambda a: a.reshape(-1, a.shape[-1]).T)
ROWS = None  # vocabulary rows: through the VocabularyMap


class Rule(NamedTuple):
  hf: str  # HF name without the model prefix; '{i}' = layer index
  project: str  # '/'-joined params path; '{i}' = layer index
  convert: Convert | None
  head: bool = False  # a task head: may be absent


def _norm(hf: str, project: str, head: bool = False) -> list[Rule]:
  return [Rule(f'{hf}.weight', f'{project}/scale', COPY, head),
          Rule(f'{hf}.bias', f'{project}/bias', COPY, head)]


def _dense(hf: str, project: str, kernel: Convert, bias: Convert = COPY,
           head: bool = False) -> list[Rule]:
  return [Rule(f'{hf}.weight', f'{project}/kernel', kernel, head),
          Rule(f'{hf}.bias', f'{project}/bias', bias, head)]


def _bert_rules() -> list[Rule]:
  layer, ours = 'encoder.layer.{i}', 'encoder/encoder_{i}'
  attention = f'{ours}/self_attention'
  rules = [
      Rule('embeddings.word_embeddings.weight', 'encoder/embedding/embedding',
           ROWS),
      Rule('embeddings.position_embeddings.weight',
           'encoder/position_embedding/embedding', COPY),
      Rule('embeddings.token_type_embeddings.weight',
           'encoder/token_type_embedding/embedding', COPY),
      *_norm('embeddings.LayerNorm', 'encoder/embedding_norm')]
  for hf, project in (('query', 'query'), ('key', 'key'), ('value', 'value')):
    rules += _dense(f'{layer}.attention.self.{hf}', f'{attention}/{project}',
                    HEADS_IN_T, HEAD_BIAS)
  rules += [
      *_dense(f'{layer}.attention.output.dense', f'{attention}/out',
              HEADS_OUT_T),
      *_norm(f'{layer}.attention.output.LayerNorm',
             f'{ours}/self_attention_norm'),
      *_dense(f'{layer}.intermediate.dense', f'{ours}/ffn/wi', TRANSPOSE),
      *_dense(f'{layer}.output.dense', f'{ours}/ffn/wo', TRANSPOSE),
      *_norm(f'{layer}.output.LayerNorm', f'{ours}/ffn_norm'),
      # Heads: BertModel's pooler, BertForMaskedLM's cls.predictions,
      # BertForSequenceClassification's classifier.
      *_dense('pooler.dense', 'pooler', TRANSPOSE, head=True),
      *_dense('cls.predictions.transform.dense', 'transform', TRANSPOSE,
              head=True),
      *_norm('cls.predictions.transform.LayerNorm', 'transform_norm',
             head=True),
      Rule('cls.predictions.bias', 'output_bias', ROWS, head=True),
      *_dense('classifier', 'head', TRANSPOSE, head=True)]
  return rules


def _gpt2_rules() -> list[Rule]:
  layer, ours = 'h.{i}', 'decoder/decoder_{i}'
  attention = f'{ours}/self_attention'
  rules = [
      Rule('wte.weight', 'decoder/embedding/embedding', ROWS),
      Rule('wpe.weight', 'decoder/position_embedding/embedding', COPY),
      *_norm(f'{layer}.ln_1', f'{ours}/self_attention_norm')]
  # c_attn split into its thirds (`_split_qkv`).
  for part in ('query', 'key', 'value'):
    rules += _dense(f'{layer}.attn.c_attn.{part}', f'{attention}/{part}',
                    HEADS_IN, HEAD_BIAS)
  return rules + [
      *_dense(f'{layer}.attn.c_proj', f'{attention}/out', HEADS_OUT),
      *_norm(f'{layer}.ln_2', f'{ours}/ffn_norm'),
      *_dense(f'{layer}.mlp.c_fc', f'{ours}/ffn/wi', COPY),
      *_dense(f'{layer}.mlp.c_proj', f'{ours}/ffn/wo', COPY),
      *_norm('ln_f', 'decoder/decoder_norm')]


RULES = {'bert': _bert_rules(), 'gpt2': _gpt2_rules()}
# The model prefix `transformers` saves the body under, and which names it
# covers (BERT's heads sit beside 'bert.'; all of GPT2LMHeadModel's body is
# under 'transformer.').
PREFIX = {'bert': 'bert.', 'gpt2': 'transformer.'}
BODY = {'bert': ('embeddings.', 'encoder.', 'pooler.'), 'gpt2': ('',)}
# Names read and dropped: buffers (causal masks, position ids), output layers
# tied to the token embedding (HF ties them on loading too), BERT's
# next-sentence head.
IGNORED = re.compile(r'(.*\.attn\.(masked_)?bias|embeddings\.position_ids|'
                     r'lm_head\.weight|cls\.predictions\.decoder\.(weight|bias)|'
                     r'cls\.seq_relationship\..*)$')
QKV = ('query', 'key', 'value')


@functools.lru_cache(maxsize=None)
def _pattern(template: str) -> re.Pattern:
  """A rule's name template as a regex, '{i}' capturing the layer."""
  return re.compile(re.escape(template).replace(re.escape('{i}'), r'(\d+)')
                    + '$')


def _canonical(tensors: Tensors, arch: str) -> Tensors:
  """Names without the model prefix, TF-era LayerNorm names as torch's, the
  ignored ones dropped; GPT-2's c_attn split into query, key, value."""
  out = {}
  for name, array in tensors.items():
    if name.startswith(PREFIX[arch]):
      name = name[len(PREFIX[arch]):]
    name = re.sub(r'LayerNorm\.gamma$', 'LayerNorm.weight', name)
    name = re.sub(r'LayerNorm\.beta$', 'LayerNorm.bias', name)
    if IGNORED.match(name):
      continue
    fused = re.match(r'(h\.\d+\.attn\.c_attn)\.(weight|bias)$', name)
    if arch == 'gpt2' and fused:
      for part, third in zip(QKV, np.split(array, 3, axis=-1)):
        out[f'{fused.group(1)}.{part}.{fused.group(2)}'] = third
    else:
      out[name] = array
  return out


def _set(tree: dict, path: str, value: np.ndarray) -> None:
  *parents, leaf = path.split('/')
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


def _flatten(tree: Mapping, prefix: str = '') -> dict[str, np.ndarray]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):  # dicts, flax's FrozenDict
      flat.update(_flatten(value, f'{prefix}{key}/'))
    else:
      flat[prefix + key] = np.asarray(value)
  return flat


def _match(rules: list[Rule], name: str, field: str
           ) -> tuple[Rule, str] | None:
  """The rule whose `field` template matches `name`, and the layer index."""
  for rule in rules:
    found = _pattern(getattr(rule, field)).match(name)
    if found:
      return rule, (found.group(1) if found.groups() else '')
  return None


def to_project(tensors: Tensors, arch: str, vocab_map: VocabularyMap, *,
               num_heads: int, where: str = 'model.safetensors') -> dict:
  """HF tensors -> nested params in the project's layout (see the module
  docstring); DataError naming `where` for a tensor it does not know or a
  missing one of the body."""
  rules = RULES[arch]
  params, found, layers = {}, set(), set()
  for name, array in _canonical(tensors, arch).items():
    matched = _match(rules, name, 'hf')
    if matched is None:
      raise DataError(
          f'{where}: tensor {name!r} is not part of a {arch} model this '
          'import knows (BertModel, BertForMaskedLM, BertForPreTraining, '
          'BertForSequenceClassification; GPT2Model, GPT2LMHeadModel)')
    rule, i = matched
    array = np.asarray(array)
    value = (vocab_map.to_project(array) if rule.convert is ROWS else
             rule.convert.forward(array, num_heads))
    _set(params, rule.project.replace('{i}', i), value)
    found.add(name)
    layers |= {int(i)} if i else set()
  # The body: everything outside the layers, and every layer up to the last.
  last = max(layers, default=-1)
  needed = {rule.hf.replace('{i}', str(i)) for rule in rules if not rule.head
            for i in (range(last + 1) if '{i}' in rule.hf else [0])}
  missing = sorted(needed - found)
  if missing:
    raise DataError(f'{where} lacks {len(missing)} tensors of the {arch} '
                    f'body, e.g. {missing[:3]}: the checkpoint is incomplete')
  return params


def to_hf(params: Mapping, arch: str, vocab_map: VocabularyMap) -> Tensors:
  """Project params -> HF tensors under the names `transformers` saves for
  BertForMaskedLM / BertForSequenceClassification (a 'bert.' body plus the
  heads present) or GPT2LMHeadModel; the inverse of `to_project` (new
  vocabulary rows are dropped). Keys of `params` that no HF model has
  (another family's head) raise ValueError."""
  rules = RULES[arch]
  out = {}
  for path, array in _flatten(params).items():
    matched = _match(rules, path, 'project')
    if matched is None:
      raise ValueError(f'parameter {path!r} has no place in a Hugging Face '
                       f'{arch} model')
    rule, i = matched
    value = (vocab_map.to_hf(array) if rule.convert is ROWS else
             rule.convert.backward(array))
    name = rule.hf.replace('{i}', i)
    if name.startswith(BODY[arch]):
      name = PREFIX[arch] + name
    out[name] = np.ascontiguousarray(value)
  return _fuse_qkv(out)


def _fuse_qkv(tensors: Tensors) -> Tensors:
  """GPT-2: the split query/key/value back into one c_attn."""
  out = {}
  for name, array in tensors.items():
    split = re.match(r'(.*\.attn\.c_attn)\.query\.(weight|bias)$', name)
    if split:
      base, kind = split.groups()
      out[f'{base}.{kind}'] = np.concatenate(
          [tensors[f'{base}.{part}.{kind}'] for part in QKV], axis=-1)
    elif not re.search(r'\.attn\.c_attn\.(key|value)\.', name):
      out[name] = array
  return out
