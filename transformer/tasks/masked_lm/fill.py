"""--mode=predict for the masked LM: each `[MASK]` written in a line is
filled with the model's most likely ordinary token.

A line is encoded as a training document is, [BOS] pieces [EOS], the text
between the `[MASK]`s encoded piece by piece and each `[MASK]` becoming
MASK_ID (so any tokenizer works, characters included; with SentencePiece
the text on each side of a mask starts a new word, which is how a masked
word is usually written). Lines are batched by data.eval_batch_size, padded
to a power-of-two length (few compilations), at most data.eval_max_length
tokens (and model.max_length with learned positions): longer lines are cut,
with a warning, and masks past the cut stay unfilled.

Output, one JSON object per line: {"input": the line, "output": the line
with its masks filled, as the tokenizer decodes it, "fills": the pieces
chosen, in order}.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from transformer import sharding
from transformer.config import BOS_ID, EOS_ID, MASK_ID, PAD_ID, Config
from transformer.tasks.masked_lm.masking import FIRST_ORDINARY_ID

MASK_TEXT = '[MASK]'
MIN_LENGTH = 16  # the shortest padded row


def line_ids(tokenizer, line: str) -> list[int]:
  """[BOS] pieces [EOS] of `line`, each MASK_TEXT as MASK_ID."""
  ids = [BOS_ID]
  for i, part in enumerate(line.split(MASK_TEXT)):
    if i:
      ids.append(MASK_ID)
    if part:
      ids += tokenizer.encode(part)
  return ids + [EOS_ID]


def max_tokens(config: Config) -> int:
  """The longest input row."""
  cap = config.data.eval_max_length
  if config.model.positions == 'learned':
    cap = min(cap, config.model.max_length)
  return cap


def _rows(ids: list[list[int]], size: int, cap: int) -> np.ndarray:
  """[size, length] int32, PAD after each row's ids (and filler rows)."""
  longest = max(map(len, ids))
  length = min(cap, max(MIN_LENGTH, 1 << (longest - 1).bit_length()))
  rows = np.full((size, length), PAD_ID, np.int32)
  for r, row in enumerate(ids):
    rows[r, :len(row)] = row
  return rows


def best_ordinary(logits: jax.Array) -> jax.Array:
  """[..., vocab] -> [...] int32: the most likely ordinary token (never a
  special or MASK, which a filled text cannot hold)."""
  ordinary = jnp.arange(logits.shape[-1]) >= FIRST_ORDINARY_ID
  return jnp.argmax(jnp.where(ordinary, logits, -jnp.inf), axis=-1
                    ).astype(jnp.int32)


def fill_lines(task, params, tokenizer, lines: Iterable[str], mesh, *,
               warn: Callable[[str], None]) -> Iterator[str]:
  """One JSON line per input line, in order (module docstring)."""
  config = task.config
  cap = max_tokens(config)
  size = sharding.padded_batch_size(config.data.eval_batch_size, mesh)
  predict = jax.jit(lambda params, inputs: best_ordinary(
      task.logits(params, inputs)))
  chunk: list[str] = []
  number = 0
  for line in lines:
    chunk.append(line.rstrip('\n').rstrip('\r'))
    if len(chunk) == size:
      yield from _fill_chunk(predict, params, tokenizer, chunk, size, cap,
                             mesh, number, warn)
      number, chunk = number + len(chunk), []
  if chunk:
    yield from _fill_chunk(predict, params, tokenizer, chunk, size, cap,
                           mesh, number, warn)


def _fill_chunk(predict, params, tokenizer, chunk: list[str], size: int,
                cap: int, mesh, number: int, warn) -> Iterator[str]:
  ids = []
  for i, line in enumerate(chunk, number + 1):
    row = line_ids(tokenizer, line)
    if len(row) > cap:
      warn(f'line {i}: {len(row)} tokens, cut to {cap} (data.eval_max_length'
           '); masks past the cut are not filled')
      row = row[:cap - 1] + [EOS_ID]
    ids.append(row)
  rows = _rows(ids, size, cap)
  best = sharding.to_host(predict(params, sharding.to_mesh(rows, mesh)))
  for line, row, choice in zip(chunk, ids, best):
    filled = np.asarray(row)
    masks = filled == MASK_ID
    filled[masks] = choice[:len(row)][masks]
    yield json.dumps({
        'input': line, 'output': tokenizer.decode(filled),
        'fills': [tokenizer.id_to_piece(i) for i in filled[masks]]},
        ensure_ascii=False)
