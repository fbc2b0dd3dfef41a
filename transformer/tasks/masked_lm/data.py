"""Documents and batches of the masked LM (task=masked_lm).

The text is the language model's (transformer/tasks/language_model/data.py):
data.source 'bible' (chapters of data.language's Bible, split by chapter as
every Bible corpus here), 'text' (data.text_dir/train.txt, optional
valid.txt and test.txt, with data.documents), 'tfds' (lm1b) or 'toy'; and
one more: when data.text_dir holds no train.txt but a labelled train file
(train.tsv, .csv or .jsonl, as classification reads it:
transformer/tasks/labelled/files.py), the texts of its data.text_column,
one document each, labels ignored (no label column needed).

Rows are the language model's too: documents packed into rows of
data.max_length tokens, kept apart by the segmentation, positions restarting
at each (batch keys 'targets', 'targets_positions', 'targets_segmentation':
the original tokens, which the masked inputs are made from). Each document
is [BOS] pieces [EOS], BERT's [CLS] ... [SEP]; a 'stream' text (data.documents
='stream') is cut into rows with no specials at all, as for the language
model.

Training batches carry no masking: the train step draws it from its own key
(masking.py), so a resumed run masks exactly as an uninterrupted one.
Evaluation batches are masked once, when the evaluator is built, with a
fixed key per row of the split (`EVAL_SEED`, the row's index): every
evaluation of a run, and of any run with the same tokenizer and rows,
scores the same positions. They add 'inputs' (the masked tokens) and
replace 'weights' by the chosen positions.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from transformer.config import Config
from transformer.tasks.labelled import files
from transformer.tasks.language_model import data as lm_data
from transformer.tasks.masked_lm import masking

# Evaluation's masking: row r of a split is masked with fold_in(key(EVAL_SEED),
# r), whatever the run's seed and data.eval_batch_size.
EVAL_SEED = 20_190_524  # BERT's final arXiv version, 24 May 2019


@dataclasses.dataclass(frozen=True)
class Text:
  """One split's documents, and whether they are one running text."""
  documents: Sequence[str]
  stream: bool


class _ExampleTexts(Sequence[str]):
  """The texts of (text, label) examples."""

  def __init__(self, examples):
    self.examples = examples

  def __len__(self) -> int:
    return len(self.examples)

  def __getitem__(self, index: int) -> str:
    return self.examples[index][0]


def reads_labelled_files(config: Config) -> bool:
  """Whether the text is the text column of users' labelled files:
  data.source='text' and data.text_dir holds a labelled train file and no
  train.txt."""
  data = config.data
  if data.source != 'text' or not data.text_dir:
    return False
  directory = os.path.expanduser(data.text_dir)
  if os.path.isfile(os.path.join(directory, 'train.txt')):
    return False
  return any(os.path.isfile(os.path.join(directory, f'train.{fmt}'))
             for fmt in files.TEXT_FORMATS)


def load_text(config: Config, split: str) -> Text:
  """The split's documents (module docstring); DataError naming the file or
  setting at fault."""
  if reads_labelled_files(config):
    examples = files.text_examples(config, split, files.TEXT_ONLY)
    return Text(_ExampleTexts(examples), stream=False)
  return Text(lm_data.load_documents(config, split),
              lm_data.is_stream(config))


def missing_split(config: Config, split: str) -> str | None:
  """Why users' files lack an optional split (test), or None."""
  if reads_labelled_files(config):
    return files.missing_split(config, split)
  return lm_data.missing_split(config, split)


def tokenizer_corpus(config: Config) -> Sequence[tuple[str, ...]]:
  return lm_data.tokenizer_corpus(config, load_text(config, 'train').documents)


def train_dataset(config: Config, tokenizer, *, process_index: int = 0,
                  process_count: int = 1, num_epochs: int | None = None):
  """The language model's packed, checkpointable rows of the training
  split, each document starting with BOS ([CLS])."""
  text = load_text(config, 'train')
  return lm_data.train_dataset(
      config, tokenizer, process_index=process_index,
      process_count=process_count, num_epochs=num_epochs,
      documents=text.documents, stream=text.stream, bos=True)


@functools.partial(jax.jit, static_argnames=('vocab_size', 'rates'))
def _mask_rows(tokens: jax.Array, rows: jax.Array, *, vocab_size: int,
               rates: tuple[float, float, float]
               ) -> tuple[jax.Array, jax.Array]:
  """mask_tokens on each row [L] with the key of its index in the split."""
  base = jax.random.key(EVAL_SEED)
  rate, mask_share, random_share = rates

  def one(row_tokens, row):
    inputs, weights = masking.mask_tokens(
        row_tokens[None], jax.random.fold_in(base, row), vocab_size,
        rate=rate, mask_share=mask_share, random_share=random_share)
    return inputs[0], weights[0]
  return jax.vmap(one)(tokens, rows)


def mask_eval_batch(config: Config, batch: dict[str, np.ndarray],
                    first_row: int) -> dict[str, np.ndarray]:
  """`batch` (the language model's evaluation keys) masked with the fixed
  keys of its rows, first_row.. of the split: adds 'inputs' [B, L] int32,
  and 'weights' [B, L] float32 becomes 1.0 at the chosen positions only."""
  t = config.train
  tokens = batch['targets']
  inputs, weights = _mask_rows(
      jnp.asarray(tokens), jnp.arange(first_row, first_row + len(tokens)),
      vocab_size=config.model.vocab_size,
      rates=(t.mask_rate, t.mask_token_rate, t.random_token_rate))
  return {**batch, 'inputs': np.asarray(inputs),
          'weights': np.asarray(weights)}


def eval_batches(config: Config, tokenizer, split: str,
                 max_documents: int = 0) -> list[dict[str, np.ndarray]]:
  """Every document of `split` (or its first max_documents) once, packed as
  in training, masked with the fixed keys (`mask_eval_batch`)."""
  text = load_text(config, split)
  batches = lm_data.eval_batches(config, tokenizer, split, max_documents,
                                 documents=text.documents, stream=text.stream,
                                 bos=True)
  masked, row = [], 0
  for batch in batches:
    masked.append(mask_eval_batch(config, batch, row))
    row += len(batch['targets'])
  return masked


__all__ = ['EVAL_SEED', 'Text', 'eval_batches', 'load_text',
           'mask_eval_batch', 'missing_split', 'reads_labelled_files',
           'tokenizer_corpus', 'train_dataset']
