"""A smoothed n-gram language model baseline on the language model's splits.

  python -m transformer.ngram --experiment=NAME [--set=KEY=VALUE]
      [--order=N] [--level=char|token|both] [--tokenizer_dir=DIR]
      [--output=FILE]

Run from the repository root (experiments/ is found there); transformer/
ngram.py is that command, this module the models. The documents come from
`data.load_documents(config, split)` and are encoded as the Transformer sees
them (`data.document_ids`: the tokens, then EOS, none in 'stream' mode), so
the numbers compare one to one:

  perplexity          exp(total NLL / predicted tokens), EOS included;
  bits_per_character  total NLL / ln 2 / data.eval_text_size's characters
                      (each document's characters plus one for its end).

Levels: 'char' is a character model over every character of the training
split (plus UNK for characters it lacks, and EOS): one token per character,
so its tokens are exactly eval_text_size's characters. 'token' uses the
experiment's own tokenizer (data.tokenizer, model.vocab_size), loaded from
--tokenizer_dir if it holds one (e.g. a run's workdir), else trained there as
the run would train it (a temporary directory by default).

The model is interpolated Kneser-Ney (Chen & Goodman 1998, sec. 3.6) with
one absolute discount per order, D = n1 / (n1 + 2 n2) from the counts of
counts, and the uniform distribution over the vocabulary below order 1:

  P_k(w | h) = (max(c_k(h w) - D_k, 0) + D_k N1+(h .) P_{k-1}(w | h')) / c_k(h)

where h' drops the oldest token of h, c_k are raw counts at the highest
order and continuation counts N1+(. h w) below it, and P_k(w | h) =
P_{k-1}(w | h') when the context h was never seen. Each document's history
starts with order-1 BOS tokens, as the Transformer starts from BOS. Fitted on
train; the order (1..--order) is chosen by the lowest valid perplexity, and
that model is reported on test. N-grams are numbered in base V (the
vocabulary size), so V^order must stay below 2^63 (order 9 for 100
characters, 4 for 8,000 pieces): higher orders are cut with a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from transformer import experiment
from transformer.config import BOS_ID, Config
from transformer.data import tokenizer as tokenizer_lib
from transformer.tasks.language_model import data


SPLITS = ('train', 'valid', 'test')
DEFAULT_ORDERS = {'char': 8, 'token': 4}
# Ney's estimate is clipped into this range: D > 0 leaves mass for unseen
# tokens, D <= 1 keeps max(c - D, 0) = c - D on every seen n-gram (c >= 1).
DISCOUNT_RANGE = (0.05, 1.0)


# ---------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------


def ngram_codes(documents: Sequence[np.ndarray], order: int, vocab_size: int,
                bos: int = BOS_ID) -> list[np.ndarray]:
  """codes[k][i] (k = 1..order): the k-gram that ends at the i-th token of
  the documents, as a number in base vocab_size; histories are padded with
  BOS, so no n-gram spans two documents. codes[0] is unused."""
  if vocab_size ** order >= 2 ** 63:
    raise ValueError(f'order {order} is too high for a vocabulary of '
                     f'{vocab_size}: vocab_size**order must be below 2**63')
  pad = np.full(order - 1, bos, np.int64)
  parts = [np.concatenate([pad, np.asarray(d, np.int64)]) for d in documents]
  sequence = np.concatenate(parts) if parts else np.zeros(0, np.int64)
  real = np.concatenate([np.arange(len(p)) >= order - 1 for p in parts]
                        ) if parts else np.zeros(0, bool)
  codes, gram = [np.zeros(0, np.int64)], sequence.copy()
  codes.append(gram[real])
  for k in range(2, order + 1):
    gram = gram.copy()
    gram[k - 1:] += sequence[:-(k - 1)] * vocab_size ** (k - 1)
    codes.append(gram[real])
  return codes


@dataclasses.dataclass
class Level:
  """The counts of one order: n-grams (sorted codes) and their counts, and
  per context (the code without the last token) the total and the number of
  distinct next tokens."""
  grams: np.ndarray
  counts: np.ndarray
  contexts: np.ndarray
  context_total: np.ndarray
  context_types: np.ndarray
  discount: float

  @classmethod
  def of(cls, grams: np.ndarray, counts: np.ndarray, vocab_size: int,
         discount: float | None) -> 'Level':
    contexts, which = np.unique(grams // vocab_size, return_inverse=True)
    if discount is None:  # Ney et al.'s estimate from the counts of counts
      n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
      discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
      discount = float(np.clip(discount, *DISCOUNT_RANGE))
    return cls(grams, counts.astype(np.float64), contexts,
               np.bincount(which, counts).astype(np.float64),
               np.bincount(which).astype(np.float64), discount)


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray
            ) -> np.ndarray:
  """values[keys == query] for each query (0 where it is absent)."""
  at = np.minimum(np.searchsorted(keys, queries), max(len(keys) - 1, 0))
  found = keys[at] == queries if len(keys) else np.zeros(len(queries), bool)
  return np.where(found, values[at] if len(keys) else 0.0, 0.0)


class KneserNey:
  """Interpolated Kneser-Ney over token ids 0..vocab_size-1 (module
  docstring). discount: None = Ney's estimate per order, or one value for
  all orders (0 with order 1 is the unsmoothed unigram model)."""

  def __init__(self, documents: Sequence[np.ndarray], order: int,
               vocab_size: int, discount: float | None = None,
               bos: int = BOS_ID):
    self.order, self.vocab_size, self.bos = order, vocab_size, bos
    codes = ngram_codes(documents, order, vocab_size, bos)
    self.tokens = len(codes[1])
    self.levels = []
    for k in range(1, order + 1):
      if k == order:  # raw counts
        grams, counts = np.unique(codes[k], return_counts=True)
      else:  # continuation counts: distinct tokens before the k-gram
        longer = np.unique(codes[k + 1])
        grams, counts = np.unique(longer % vocab_size ** k,
                                  return_counts=True)
      self.levels.append(Level.of(grams, counts, vocab_size, discount))

  def _probabilities(self, codes: list[np.ndarray]) -> np.ndarray:
    p = np.full(len(codes[1]), 1.0 / self.vocab_size)
    for k, level in enumerate(self.levels, 1):
      grams = codes[k]
      total = _lookup(level.contexts, level.context_total,
                      grams // self.vocab_size)
      types = _lookup(level.contexts, level.context_types,
                      grams // self.vocab_size)
      count = _lookup(level.grams, level.counts, grams)
      d = level.discount
      smoothed = (np.maximum(count - d, 0) + d * types * p) / np.maximum(
          total, 1)
      p = np.where(total > 0, smoothed, p)
    return p

  def log_probs(self, documents: Sequence[np.ndarray]) -> np.ndarray:
    """ln P of every token of the documents, in order."""
    return np.log(self._probabilities(
        ngram_codes(documents, self.order, self.vocab_size, self.bos)))

  def distribution(self, history: Sequence[int]) -> np.ndarray:
    """P(w | history) for every w of the vocabulary (float64 [V]); the
    history is the document so far (BOS-padded on the left)."""
    padded = [self.bos] * (self.order - 1) + [int(t) for t in history]
    n = self.vocab_size
    codes = [np.zeros(0, np.int64)]
    for k in range(1, self.order + 1):
      context = 0
      for token in padded[len(padded) - (k - 1):]:
        context = context * n + token
      codes.append(context * n + np.arange(n, dtype=np.int64))
    return self._probabilities(codes)


# ---------------------------------------------------------------------------
# On the language model's splits.
# ---------------------------------------------------------------------------


def char_tokenizer(texts: Sequence[str]) -> tokenizer_lib.CharTokenizer:
  """Every character of `texts`, after the special ids."""
  chars = tokenizer_lib.char_vocabulary(texts, sys.maxunicode)
  return tokenizer_lib.CharTokenizer(
      chars, len(chars) + len(tokenizer_lib.SPECIAL_PIECES))


def max_order(vocab_size: int) -> int:
  return int(math.floor(63 * math.log(2) / math.log(vocab_size) - 1e-9))


def evaluate(model: KneserNey, documents: Sequence[np.ndarray],
             characters: int) -> dict:
  nll = -float(model.log_probs(documents).sum())
  tokens = sum(len(d) for d in documents)
  return {'tokens': tokens, 'characters': characters, 'nll': nll,
          'perplexity': math.exp(nll / tokens),
          'bits_per_token': nll / math.log(2) / tokens,
          'bits_per_character': nll / math.log(2) / characters}


def run_level(config: Config, texts: dict[str, list[str]],
              characters: dict[str, int], tokenizer, order: int) -> dict:
  """Fits orders 1..order on train, picks the best on valid, reports test."""
  stream = data.is_stream(config)
  start = time.perf_counter()
  ids = {s: [data.document_ids(tokenizer, t, stream) for t in texts[s]]
         for s in SPLITS}
  if stream:  # one running text: the history crosses chunk boundaries
    ids = {s: [np.concatenate(d)] for s, d in ids.items()}
  result = {'vocab_size': tokenizer.vocab_size,
            'encode_seconds': round(time.perf_counter() - start, 2)}
  if order > max_order(tokenizer.vocab_size):
    result['note'] = (f'order {order} cut to {max_order(tokenizer.vocab_size)}'
                      f' (vocab_size**order < 2**63)')
    order = max_order(tokenizer.vocab_size)
  valid, best = {}, None
  for n in range(1, order + 1):
    model = KneserNey(ids['train'], n, tokenizer.vocab_size)
    valid[n] = evaluate(model, ids['valid'], characters['valid'])
    if best is None or valid[n]['perplexity'] < valid[best[0]]['perplexity']:
      best = (n, model)
  n, model = best
  result.update({
      'order': n, 'selected_by': 'valid perplexity',
      'discounts': [round(level.discount, 4) for level in model.levels],
      'valid_perplexity': {k: round(v['perplexity'], 4)
                           for k, v in valid.items()},
      'valid': valid[n],
      'test': evaluate(model, ids['test'], characters['test']),
      'seconds': round(time.perf_counter() - start, 2)})
  return result


def run(config: Config, levels: Sequence[str] = ('char', 'token'),
        order: int | None = None, tokenizer_dir: str | None = None) -> dict:
  """The baseline at each level; a JSON-serialisable dict."""
  start = time.perf_counter()
  texts = {}
  for split in SPLITS:
    documents = data.load_documents(config, split)
    texts[split] = [documents[i] for i in range(len(documents))]
  characters = {s: data.eval_text_size(config, s)['characters']
                for s in SPLITS}
  result = {'data': data.describe(config),
            'documents': {s: len(t) for s, t in texts.items()},
            'characters': characters, 'levels': {}}
  for level in levels:
    if level == 'char':
      tokenizer = char_tokenizer(texts['train'])
    else:
      with tempfile.TemporaryDirectory() as tmp:
        tokenizer = tokenizer_lib.load_or_train(
            config, tokenizer_dir or tmp,
            lambda: data.tokenizer_corpus(config))
    result['levels'][level] = run_level(
        config, texts, characters, tokenizer, order or DEFAULT_ORDERS[level])
    if level == 'token':
      result['levels'][level]['tokenizer'] = (
          f'{config.data.tokenizer}, model.vocab_size='
          f'{config.model.vocab_size}')
  result['seconds'] = round(time.perf_counter() - start, 2)
  return result


def table(result: dict) -> str:
  lines = [result['data'], 'characters ' + '  '.join(
      f'{s} {n:,}' for s, n in result['characters'].items())]
  for name, r in result['levels'].items():
    lines.append(f'{name}: order {r["order"]} (of {len(r["valid_perplexity"])}'
                 f', by valid perplexity), vocab {r["vocab_size"]}, '
                 f'{r["seconds"]} s' + (f'  [{r["note"]}]' if 'note' in r
                                        else ''))
    for split in ('valid', 'test'):
      m = r[split]
      lines.append(f'  {split:5}  perplexity {m["perplexity"]:.3f}  '
                   f'bits/token {m["bits_per_token"]:.4f}  '
                   f'bits/char {m["bits_per_character"]:.4f}  '
                   f'({m["tokens"]:,} tokens)')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--experiment', required=True)
  parser.add_argument('--set', action='append', default=[],
                      help='config override KEY=VALUE; may repeat')
  parser.add_argument('--order', type=int, help='the highest order tried '
                      f'(default: {DEFAULT_ORDERS})')
  parser.add_argument('--level', choices=('char', 'token', 'both'),
                      default='both')
  parser.add_argument('--tokenizer_dir', help="the 'token' level's tokenizer "
                      '(e.g. a workdir); default: trained in a temporary '
                      'directory')
  parser.add_argument('--output', help='JSON file (default: stdout, with the '
                      'table on stderr)')
  args = parser.parse_args(argv)
  if args.order is not None and args.order < 1:
    parser.error('--order must be at least 1')
  levels = ('char', 'token') if args.level == 'both' else (args.level,)
  experiment.run_command(
      args.experiment, args.set,
      lambda config: run(config, levels, args.order, args.tokenizer_dir),
      table, args.output)


if __name__ == '__main__':
  main()
