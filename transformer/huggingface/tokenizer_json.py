"""The run's own tokenizer as a Hugging Face tokenizer.json (--mode=export).

SentencePiece's pieces and scores become a `tokenizers` Unigram or BPE
model with SentencePiece's normalisation (its precompiled NFKC map, extra
spaces removed, '▁' for spaces and before the text: what transformers'
SpmConverter does from the model's normalizer spec); characters a WordLevel
vocabulary with a pre-tokenizer that isolates every character. The ids stay
the run's. A tokenizer that came from Hugging Face (data.tokenizer=
'huggingface') is written back as it came, its ids in its own order through
the vocabulary map (vocabulary.py). Texts holding a special token's name
literally ('<s>', '<mask>') differ: transformers reads it as that token,
the run's tokenizers as characters.
"""

from __future__ import annotations

from typing import NamedTuple

import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from transformer.config import (BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID,
                                ConfigError)
from transformer.data import tokenizer as tokenizer_lib
from transformer.huggingface.tokenizer import HuggingFaceTokenizer
from transformer.huggingface.vocabulary import VocabularyMap
from transformer.tasks.base import ExportSpec

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
