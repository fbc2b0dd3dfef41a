"""Translation's pictures (--mode=visualize): the attention of one sentence.

`draw_run` tokenizes the sentence (EOS appended), decodes its translation
greedily, then runs one teacher-forced forward pass on (source,
translation) with `Transformer(sow_weights=True)`, which records every
layer's attention probabilities (`attention_capture.capture`). For each
chosen layer it draws one figure per kind of attention, one subplot per
chosen head:

  encoder_self_layerL.png  encoder self-attention: source x source
  decoder_self_layerL.png  decoder self-attention: target x target (causal:
                           nothing above the diagonal)
  cross_layerL.png         encoder-decoder attention: target (y) x source (x)

Decoder positions. Position t of the decoder is fed the previous token
(BOS, y_1, ..., y_{T-1}) and predicts y_t (the last one is EOS). Rows
(queries) are labelled with the token the position predicts, keys of the
decoder self-attention with the token the position is fed: row y_t sees
exactly BOS, y_1, ..., y_{t-1}, the tokens before it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol, Sequence

import numpy as np

from transformer import attention_capture
from transformer.config import BOS_ID, EOS_ID, PAD_ID, ModelConfig
from transformer.model import Transformer
from transformer.plots import KINDS, draw_layers, resolve_heads, resolve_layers
from transformer.tasks import base
from transformer.tasks.translation import decode as decode_lib


class TokenizerLike(Protocol):
  def encode(self, text: str) -> list[int]: ...
  def decode(self, ids: Sequence[int]) -> str: ...
  def id_to_piece(self, i: int) -> str: ...


@dataclasses.dataclass
class AttentionMaps:
  """One sentence's attention probabilities, every layer and head.

  Attributes:
    source_ids: [S] source token ids, EOS last.
    target_ids: [T] the translation's ids, EOS last (what the decoder
      predicts at each position).
    decoder_input_ids: [T] what the decoder is fed: BOS, target_ids[:-1].
    source_pieces, target_pieces, decoder_input_pieces: their pieces.
    translation: the decoded translation text.
    encoder_self: per encoder layer, [heads, S, S].
    decoder_self: per decoder layer, [heads, T, T].
    cross: per decoder layer, [heads, T, S].
  """
  source_ids: list[int]
  target_ids: list[int]
  decoder_input_ids: list[int]
  source_pieces: list[str]
  target_pieces: list[str]
  decoder_input_pieces: list[str]
  translation: str
  encoder_self: list[np.ndarray]
  decoder_self: list[np.ndarray]
  cross: list[np.ndarray]

  def maps(self, kind: str) -> list[np.ndarray]:
    return {'encoder_self': self.encoder_self,
            'decoder_self': self.decoder_self, 'cross': self.cross}[kind]

  def axis_pieces(self, kind: str) -> tuple[list[str], list[str]]:
    """(row labels, column labels) of `kind`'s matrices."""
    if kind == 'encoder_self':
      return self.source_pieces, self.source_pieces
    if kind == 'decoder_self':
      return self.target_pieces, self.decoder_input_pieces
    return self.target_pieces, self.source_pieces


def capture_attention(params: Any, config: ModelConfig,
                      source_ids: Sequence[int], target_ids: Sequence[int]
                      ) -> dict[str, list[np.ndarray]]:
  """Teacher-forced forward pass of one sentence pair, attention recorded.

  Args:
    params: the Transformer's parameters.
    config: its ModelConfig.
    source_ids: [S] ids, EOS last, no padding.
    target_ids: [T] ids, EOS last, no BOS, no padding.
  Returns:
    {'encoder_self': [heads, S, S] per encoder layer,
     'decoder_self': [heads, T, T] per decoder layer,
     'cross': [heads, T, S] per decoder layer}, float32 NumPy arrays.
  """
  model = Transformer(config, sow_weights=True)
  inputs = np.asarray([list(source_ids)], np.int32)
  targets = np.asarray([list(target_ids)], np.int32)
  _, captured = attention_capture.capture(
      functools.partial(model.apply, deterministic=True), params, inputs,
      targets)
  return {kind: captured.get(kind, []) for kind in KINDS}


def source_ids_of(tokenizer: TokenizerLike, sentence: str,
                  max_length: int | None = None) -> list[int]:
  """The sentence's ids with EOS appended; ValueError if it is empty/long."""
  if not sentence or not sentence.strip():
    raise ValueError('the sentence is empty: give the text to translate, '
                     'e.g. --sentence="..."')
  ids = [int(i) for i in tokenizer.encode(sentence.strip())]
  if not ids:
    raise ValueError(f'the sentence {sentence!r} has no tokens')
  ids.append(EOS_ID)
  if max_length is not None and len(ids) > max_length:
    raise ValueError(f'the sentence has {len(ids)} tokens (EOS included); '
                     f'pictures take at most {max_length} '
                     '(data.eval_max_length)')
  return ids


def attention_maps(params: Any, config: ModelConfig,
                   tokenizer: TokenizerLike, sentence: str, *,
                   max_extra_length: int = 50,
                   max_length: int | None = None) -> AttentionMaps:
  """Translates `sentence` greedily and records the attention of every layer.

  Args:
    params, config: the model.
    tokenizer: encode / decode / id_to_piece, with the fixed special ids.
    sentence: source text.
    max_extra_length: the translation holds at most (source length + this)
      tokens, EOS included.
    max_length: longest source accepted, in tokens with EOS.
  """
  source_ids = source_ids_of(tokenizer, sentence, max_length)
  output = np.asarray(decode_lib.greedy_decode(
      params, config, np.asarray([source_ids], np.int32),
      max_extra_length=max_extra_length))[0].tolist()
  # Outputs end with EOS (forced at the last allowed position), then PAD.
  target_ids = output[:output.index(EOS_ID) + 1] if EOS_ID in output else [
      t for t in output if t != PAD_ID] + [EOS_ID]
  decoder_input_ids = [BOS_ID] + target_ids[:-1]
  captured = capture_attention(params, config, source_ids, target_ids)
  pieces = lambda ids: [tokenizer.id_to_piece(i) for i in ids]
  return AttentionMaps(
      source_ids=source_ids, target_ids=target_ids,
      decoder_input_ids=decoder_input_ids,
      source_pieces=pieces(source_ids), target_pieces=pieces(target_ids),
      decoder_input_pieces=pieces(decoder_input_ids),
      translation=tokenizer.decode(target_ids), **captured)


def draw(maps: AttentionMaps, out_dir: str, *,
         layers: Sequence[int] | None = None,
         heads: Sequence[int] | None = None) -> list[str]:
  """Writes the three kinds of attention of the chosen layers and heads.

  Returns the PNG paths written: encoder_self_layerL.png for each chosen
  encoder layer, decoder_self_layerL.png and cross_layerL.png for each
  chosen decoder layer (L 0-based).
  """
  num_heads = maps.encoder_self[0].shape[0] if maps.encoder_self else (
      maps.cross[0].shape[0])
  chosen = resolve_layers(layers, len(maps.encoder_self), len(maps.cross))
  head_list = resolve_heads(heads, num_heads)
  labels = {'encoder_self': ('source token (query)', 'source token (key)'),
            'decoder_self': ('predicted token (query)',
                             'decoder input token (key)'),
            'cross': ('predicted token (query)', 'source token (key)')}
  stack = {'encoder_self': 'encoder', 'decoder_self': 'decoder',
           'cross': 'decoder'}
  written = []
  for kind in KINDS:
    if not chosen[stack[kind]]:
      continue
    row_pieces, column_pieces = maps.axis_pieces(kind)
    written += draw_layers(kind, maps.maps(kind), chosen[stack[kind]],
                           head_list, row_pieces, column_pieces, out_dir,
                           row_label=labels[kind][0],
                           column_label=labels[kind][1])
  return written


def draw_run(run: base.PictureRun) -> list[str]:
  """The sentence's greedy translation; encoder, decoder, cross attention
  (`Translation.pictures`)."""
  maps = attention_maps(run.params, run.config.model, run.tokenizer,
                        run.sentence,
                        max_extra_length=run.config.eval.max_extra_length,
                        max_length=run.config.data.eval_max_length)
  if not run.lead:  # every process computes; one draws
    return []
  print(f'{run.checkpoint()}\n'
        f'  source:      {run.sentence.strip()}\n'
        f'  pieces:      {" ".join(maps.source_pieces)}\n'
        f'  translation: {maps.translation}   (greedy)\n'
        f'  pieces:      {" ".join(maps.target_pieces)}', flush=True)
  return draw(maps, run.out_dir, layers=run.layers, heads=run.heads)


__all__ = ['AttentionMaps', 'attention_maps', 'capture_attention', 'draw',
           'draw_run', 'source_ids_of']
