"""--mode=visualize for classification and regression.

The sentence is encoded as evaluation encodes a text
(`pipeline.encode_text`: BOS first with model.pooling='first', EOS last, cut
to data.eval_max_length) and run once through
`EncoderClassifier(sow_weights=True)` (attention_capture.capture), which
gives both the prediction (as --mode=predict prints it; in every title) and
the attention:

  encoder_self_layerL.png  encoder self-attention: token x token
  confusion_matrix.png     classification only: the confusion matrix of
                           the newest WORKDIR/eval/*.json (--mode=evaluate,
                           or the final evaluation of training): rows true,
                           columns predicted, counts in the cells, shaded by
                           the row-normalised fraction. Without an
                           evaluation a note says how to make one.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any, Sequence

import numpy as np

from transformer import attention_capture
from transformer.config import PAD_ID
from transformer.plots import (CONFUSION_FILENAME, EVAL_DIRNAME,
                               confusion_labels, draw_confusion_matrix,
                               draw_layers, latest_evaluation, resolve_heads,
                               resolve_layers)
from transformer.tasks.base import PictureRun
from transformer.tasks.labelled import pipeline


@dataclasses.dataclass
class EncoderMaps:
  """One text's encoder self-attention and the model's output for it.

  Attributes:
    ids: [n] the ids the model reads, as the labelled pipeline encodes the
      text (BOS first when model.pooling='first', EOS last), no padding.
    pieces: their pieces.
    scores: [num_outputs] the task's scores for the text (task.scores).
    prediction: task.format_prediction(scores), e.g. 'red<TAB>0.9812'.
    encoder_self: per encoder layer, [heads, n, n] (the padding the model
      was run with cropped off).
    dropped: how many of the text's pieces were cut off to fit
      data.eval_max_length (as evaluation cuts them).
  """
  ids: list[int]
  pieces: list[str]
  scores: np.ndarray
  prediction: str
  encoder_self: list[np.ndarray]
  dropped: int = 0


def capture_encoder_attention(task: Any, params: Any, ids: Sequence[int],
                              length: int | None = None
                              ) -> tuple[np.ndarray, list[np.ndarray]]:
  """One text through a classification or regression model, attention
  recorded (`EncoderClassifier(sow_weights=True)`).

  Args:
    task: a labelled task (Classification or Regression).
    params: its model's parameters.
    ids: [n] the text's ids (pipeline.encode_text), no padding.
    length: positions of the row the model is run on, PAD_ID after the
      text (default n), as in an evaluation batch.
  Returns:
    (scores: [num_outputs] float32, the task's output for the text;
     [heads, length, length] float32 per encoder layer: every query's
     distribution over the keys, 0 on the padding keys).
  """
  length = len(ids) if length is None else length
  if not 0 < len(ids) <= length:
    raise ValueError(f'{len(ids)} ids do not fit a row of {length}')
  row = np.full((1, length), PAD_ID, np.int32)
  row[0, :len(ids)] = ids
  model = task.model(sow_weights=True)
  scores, captured = attention_capture.capture(
      functools.partial(model.apply, deterministic=True), params, row)
  return np.asarray(scores[0], np.float32), captured['encoder_self']


def encoder_maps(task: Any, params: Any, tokenizer, sentence: str
                 ) -> EncoderMaps:
  """Encodes `sentence` as evaluation does (cut to data.eval_max_length,
  padded to a multiple of 8) and records the encoder's attention."""
  config = task.config
  if not sentence or not sentence.strip():
    raise ValueError(f'the sentence is empty: give the text '
                     f'{task.SENTENCE_PURPOSE}, e.g. --sentence="..."')
  text = sentence.strip()
  pieces = tokenizer.encode(text)
  if not pieces:
    raise ValueError(f'the sentence {sentence!r} has no tokens')
  max_length = config.data.eval_max_length
  cls = pipeline.starts_with_bos(config)
  ids = [int(i) for i in pipeline.encode_text(tokenizer, text, max_length,
                                              cls=cls)]
  dropped = len(pieces) + int(cls) + 1 - len(ids)
  length = min(max_length, -(-len(ids) // 8) * 8)  # as eval_batches pads
  scores, weights = capture_encoder_attention(task, params, ids, length)
  n = len(ids)
  return EncoderMaps(
      ids=ids, pieces=[tokenizer.id_to_piece(i) for i in ids], scores=scores,
      prediction=task.format_prediction(scores),
      encoder_self=[w[:, :n, :n] for w in weights], dropped=dropped)


def encoder_pictures(run: PictureRun) -> list[str]:
  """The text's encoder self-attention, the prediction in the titles."""
  maps = encoder_maps(run.task, run.params, run.tokenizer, run.sentence)
  if not run.lead:
    return []
  shown = '   '.join(maps.prediction.split('\t'))
  print(f'{run.checkpoint()}\n'
        f'  text:       {run.sentence.strip()}\n'
        f'  pieces:     {" ".join(maps.pieces)}\n'
        f'  prediction: {shown}', flush=True)
  if maps.dropped:
    print(f'Note: the last {maps.dropped} pieces are cut off to fit '
          f'data.eval_max_length={run.config.data.eval_max_length}, as '
          'evaluation cuts them; the model saw what is drawn.',
          file=sys.stderr)
  fields = maps.prediction.split('\t')  # classification: label, probability
  note = f'prediction: {fields[0]}' + (
      f' (probability {fields[1]})' if len(fields) > 1 else '')
  m = run.config.model
  chosen = resolve_layers(run.layers, m.num_encoder_layers, 0)['encoder']
  return draw_layers('encoder_self', maps.encoder_self, chosen,
                     resolve_heads(run.heads, m.num_heads), maps.pieces,
                     maps.pieces, run.out_dir, row_label='token (query)',
                     column_label='token (key)', note=note)


def confusion_matrix_picture(workdir: str, out_dir: str,
                             labels: Sequence[str] = (), *,
                             command: str | None = None) -> str | None:
  """Draws the newest evaluation's confusion matrix as CONFUSION_FILENAME
  in out_dir and returns the path; without an evaluation, prints how to
  make one and returns None.

  Args:
    labels: the class names (labels.json) if the evaluation lacks them.
    command: the launch.py command line of this run, for that message.
  """
  found = latest_evaluation(workdir)
  if found is None:
    command = command or (f'python launch.py --experiment=NAME '
                          f'--workdir={workdir}')
    print(f'Note: no confusion matrix: {os.path.join(workdir, EVAL_DIRNAME)}'
          f' holds no evaluation yet. Make one with\n  {command} '
          '--mode=evaluate [--split=test]\n'
          'then run --mode=visualize again.', file=sys.stderr, flush=True)
    return None
  path, metrics = found
  names = confusion_labels(metrics, labels)
  summary = ', '.join(
      f'{shown} {metrics[key]:.3f}' for key, shown in
      (('accuracy', 'accuracy'), ('macro_f1', 'macro-F1'))
      if isinstance(metrics.get(key), (int, float)))
  steps = metrics.get('checkpoint_steps')
  where = os.path.join(EVAL_DIRNAME, os.path.basename(path))
  details = ([f'{metrics["examples"]} examples'] if 'examples' in metrics
             else []) + ([summary] if summary else [])
  title = (f'Confusion matrix of {where}' +
           (f', checkpoint {steps[-1]}' if steps else '') +
           (f'\n{", ".join(details)}' if details else ''))
  try:
    return draw_confusion_matrix(
        metrics['confusion_matrix'], names,
        os.path.join(out_dir, CONFUSION_FILENAME), title=title).path
  except ValueError as error:
    print(f'Note: no confusion matrix from {path}: {error}', file=sys.stderr)
    return None


def classification_pictures(run: PictureRun) -> list[str]:
  """encoder_pictures, then the newest evaluation's confusion matrix."""
  written = encoder_pictures(run)
  if run.lead:
    path = confusion_matrix_picture(run.workdir, run.out_dir,
                                    run.task.labels, command=run.command)
    written += [path] if path else []
  return written
