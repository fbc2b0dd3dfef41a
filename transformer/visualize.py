"""Pictures: attention maps of one sentence, training curves, and for
classification the confusion matrix.

  python launch.py --experiment=NAME --mode=visualize --sentence="..."

What is drawn depends on the task family (`family(task)`, by the type of
the task object of transformer/tasks/).

Translation. `run` restores the parameters, tokenizes the sentence (EOS
appended), decodes its translation greedily, then runs one teacher-forced
forward pass on (source, translation) with `Transformer(sow_weights=True)`,
which records every layer's attention probabilities. For each chosen layer
it draws one figure per kind of attention, one subplot per chosen head:

  encoder_self_layerL.png  encoder self-attention: source x source
  decoder_self_layerL.png  decoder self-attention: target x target (causal:
                           nothing above the diagonal)
  cross_layerL.png         encoder-decoder attention: target (y) x source (x)

Decoder positions. Position t of the decoder is fed the previous token
(BOS, y_1, ..., y_{T-1}) and predicts y_t (the last one is EOS). Rows
(queries) are labelled with the token the position predicts, keys of the
decoder self-attention with the token the position is fed: row y_t sees
exactly BOS, y_1, ..., y_{t-1}, the tokens before it.

Classification and regression. The sentence is encoded as evaluation
encodes a text (`labelled_pipeline.encode_text`: BOS first with
model.pooling='first', EOS last, cut to data.eval_max_length) and run once
through `EncoderClassifier(sow_weights=True)`, which gives both the
prediction (as --mode=predict prints it; in every title) and the attention:

  encoder_self_layerL.png  encoder self-attention: token x token
  confusion_matrix.png     classification only: the confusion matrix of
                           the newest WORKDIR/eval/*.json (--mode=evaluate,
                           or the final evaluation of training): rows true,
                           columns predicted, counts in the cells, shaded by
                           the row-normalised fraction. Without an
                           evaluation a note says how to make one.

Language models. The text is run once through `LanguageModel(
sow_weights=True)` (no BOS/EOS added beyond the BOS it reads first):

  decoder_self_layerL.png  causal self-attention, rows the token each
                           position predicts, columns the token it is fed

Layers are 0-based; negative indices count from the end, resolved in each
stack (encoder, decoder) separately. Default: the first and the last layer,
every head.

`training_curves(workdir, path, scores)` plots `metrics.jsonl`: training
loss, eval loss, and on a second panel the eval scores (translation: BLEU;
classification: accuracy and macro-F1; regression: Pearson and Spearman)
against the step; `run` writes it as training_curves.png.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot,
no display, no global backend change).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Protocol, Sequence

import numpy as np

from transformer.config import BOS_ID, EOS_ID, PAD_ID, Config, ModelConfig

# Until the families own their pictures, the drawing lives in plots.py.
from transformer.plots import (CONFUSION_FILENAME, CURVES_FILENAME, EVAL_DIRNAME, KINDS, METRICS_FILENAME, SCORE_NAMES, TITLES, ConfusionPicture, confusion_figsize, confusion_labels, curve_series, draw_attention, draw_confusion_matrix, draw_layers, latest_evaluation, read_metrics, resolve_heads, resolve_layers, training_curves, _new_figure, _tick_fontsize, _heads_shown)  # pylint: disable=unused-import


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


# ---------------------------------------------------------------------------
# Capturing the attention probabilities.
# ---------------------------------------------------------------------------


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
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from transformer.model import Transformer  # pylint: disable=g-import-not-at-top

  model = Transformer(config, sow_weights=True)
  inputs = jnp.asarray([list(source_ids)], jnp.int32)
  targets = jnp.asarray([list(target_ids)], jnp.int32)

  @jax.jit
  def forward(params, inputs, targets):
    _, state = model.apply({'params': params}, inputs, targets,
                           deterministic=True, mutable=['intermediates'])
    return state['intermediates']

  found = jax.device_get(forward(params, inputs, targets))

  def get(layer: str, module: str) -> np.ndarray:
    (weights,) = found[layer][module]['attention_weights']  # sown once
    return np.asarray(weights[0], np.float32)  # [heads, T, S]

  return {
      'encoder_self': [get(f'encoder_{i}', 'self_attention')
                       for i in range(config.num_encoder_layers)],
      'decoder_self': [get(f'decoder_{i}', 'self_attention')
                       for i in range(config.num_decoder_layers)],
      'cross': [get(f'decoder_{i}', 'cross_attention')
                for i in range(config.num_decoder_layers)],
  }


def check_sentence(sentence: str | None, purpose: str = 'to translate'
                   ) -> None:
  if not sentence or not sentence.strip():
    raise ValueError(f'the sentence is empty: give the text {purpose}, '
                     'e.g. --sentence="..."')


def source_ids_of(tokenizer: TokenizerLike, sentence: str,
                  max_length: int | None = None) -> list[int]:
  """The sentence's ids with EOS appended; ValueError if it is empty/long."""
  check_sentence(sentence)
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
  from transformer import decode as decode_lib  # pylint: disable=g-import-not-at-top

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


# ---------------------------------------------------------------------------
# Classification and regression: one text through the encoder and the head.
# ---------------------------------------------------------------------------


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
    task: a labelled task (transformer/tasks/labelled.py).
    params: its model's parameters.
    ids: [n] the text's ids (labelled_pipeline.encode_text), no padding.
    length: positions of the row the model is run on, PAD_ID after the
      text (default n), as in an evaluation batch.
  Returns:
    (scores: [num_outputs] float32, the task's output for the text;
     [heads, length, length] float32 per encoder layer: every query's
     distribution over the keys, 0 on the padding keys).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  length = len(ids) if length is None else length
  if not 0 < len(ids) <= length:
    raise ValueError(f'{len(ids)} ids do not fit a row of {length}')
  row = np.full((1, length), PAD_ID, np.int32)
  row[0, :len(ids)] = ids
  model = task.model(sow_weights=True)

  @jax.jit
  def forward(params, inputs):
    scores, state = model.apply({'params': params}, inputs,
                                deterministic=True, mutable=['intermediates'])
    return scores.astype(jnp.float32), state['intermediates']['encoder']

  scores, found = jax.device_get(forward(params, jnp.asarray(row)))

  def get(layer: str) -> np.ndarray:
    (weights,) = found[layer]['self_attention']['attention_weights']
    return np.asarray(weights[0], np.float32)  # [heads, L, L]

  return (np.asarray(scores[0], np.float32),
          [get(f'encoder_{i}')
           for i in range(task.config.model.num_encoder_layers)])


def encoder_maps(task: Any, params: Any, tokenizer: TokenizerLike,
                 sentence: str) -> EncoderMaps:
  """Encodes `sentence` as evaluation does (cut to data.eval_max_length,
  padded to a multiple of 8) and records the encoder's attention."""
  from transformer.data import labelled_pipeline  # pylint: disable=g-import-not-at-top

  config = task.config
  check_sentence(sentence, 'to label')
  text = sentence.strip()
  pieces = tokenizer.encode(text)
  if not pieces:
    raise ValueError(f'the sentence {sentence!r} has no tokens')
  max_length = config.data.eval_max_length
  cls = config.model.pooling == 'first'
  ids = [int(i) for i in labelled_pipeline.encode_text(tokenizer, text,
                                                       max_length, cls=cls)]
  dropped = len(pieces) + int(cls) + 1 - len(ids)
  length = min(max_length, -(-len(ids) // 8) * 8)  # as eval_batches pads
  scores, weights = capture_encoder_attention(task, params, ids, length)
  n = len(ids)
  return EncoderMaps(
      ids=ids, pieces=[tokenizer.id_to_piece(i) for i in ids], scores=scores,
      prediction=task.format_prediction(scores),
      encoder_self=[w[:, :n, :n] for w in weights], dropped=dropped)


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


# ---------------------------------------------------------------------------
# Classification: the confusion matrix picture of the newest evaluation.
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# The --mode=visualize entry point.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Run:
  """One --mode=visualize call, once the model is restored."""
  config: Config
  workdir: str
  task: Any
  params: Any
  steps: list[int]
  tokenizer: TokenizerLike
  sentence: str
  layers: list[int] | None
  heads: list[int] | None
  out_dir: str
  lead: bool  # process 0: the one that draws and prints
  command: str | None  # launch.py --experiment=... --workdir=..., for hints

  def checkpoint(self) -> str:
    averaged = (f' (mean of checkpoints {self.steps})' if len(self.steps) > 1
                else '')
    return f'checkpoint {self.steps[-1]}{averaged}'


def _translation_pictures(run: _Run) -> list[str]:
  """The sentence's greedy translation; encoder, decoder, cross attention."""
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


def _encoder_pictures(run: _Run) -> list[str]:
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


def decoder_only_attention(task: Any, params: Any, ids: Sequence[int]
                           ) -> list[np.ndarray]:
  """A language model's self-attention of one text: [heads, n, n] per
  layer, position t fed BOS, s_0 .. s_{t-1} and predicting s_t."""
  import jax  # pylint: disable=g-import-not-at-top
  model = task.model(sow_weights=True)
  row = np.asarray([ids], np.int32)
  _, state = jax.jit(lambda p, r: model.apply(
      {'params': p}, r, mutable=['intermediates']))(params, row)
  found = jax.device_get(state['intermediates']['decoder'])
  return [np.asarray(found[f'decoder_{i}']['self_attention'][
      'attention_weights'][0][0], np.float32)
          for i in range(task.config.model.num_decoder_layers)]


def _language_model_pictures(run: _Run) -> list[str]:
  """The text's causal self-attention, rows the tokens predicted, columns
  the tokens fed (as for the translation decoder)."""
  ids = [int(i) for i in run.tokenizer.encode(run.sentence.strip())]
  if not ids:
    raise ValueError(f'the sentence {run.sentence!r} has no tokens')
  ids = ids[:run.config.model.max_length]
  weights = decoder_only_attention(run.task, run.params, ids)
  if not run.lead:
    return []
  pieces = [run.tokenizer.id_to_piece(i) for i in ids]
  fed = [run.tokenizer.id_to_piece(BOS_ID)] + pieces[:-1]
  print(f'{run.checkpoint()}\n  text:   {run.sentence.strip()}\n'
        f'  pieces: {" ".join(pieces)}', flush=True)
  m = run.config.model
  chosen = resolve_layers(run.layers, 0, m.num_decoder_layers)['decoder']
  return draw_layers('decoder_self', weights, chosen,
                     resolve_heads(run.heads, m.num_heads), pieces, fed,
                     run.out_dir, row_label='token predicted (query)',
                     column_label='token fed (key)')


def _classification_pictures(run: _Run) -> list[str]:
  written = _encoder_pictures(run)
  if run.lead:
    path = confusion_matrix_picture(run.workdir, run.out_dir,
                                    run.task.labels, command=run.command)
    written += [path] if path else []
  return written


@dataclasses.dataclass(frozen=True)
class _Family:
  """What --mode=visualize draws for one task family.

  Attributes:
    decoder: the model has a decoder (whose layers --layers also picks).
    pictures: restored run -> the PNGs written (process 0; [] elsewhere).
    scores: eval metrics on the training curves' second panel.
    purpose: what --sentence is for, in the message when it is empty.
  """
  decoder: bool
  pictures: Any
  scores: tuple[str, ...]
  purpose: str = 'to label'


def family(task: Any) -> _Family:
  """The pictures of `task` (transformer/tasks/), by its type."""
  from transformer.tasks import labelled, language_model, translation  # pylint: disable=g-import-not-at-top
  families = ((translation.Translation,
               _Family(True, _translation_pictures, ('bleu',),
                       'to translate')),
              (labelled.Classification,
               _Family(False, _classification_pictures,
                       ('accuracy', 'macro_f1'))),
              (labelled.Regression,
               _Family(False, _encoder_pictures, ('pearson', 'spearman'))),
              (language_model.LanguageModelTask,
               _Family(True, _language_model_pictures,
                       ('bits_per_character',), 'to continue')))
  for kind, chosen in families:
    if isinstance(task, kind):
      return chosen
  raise TypeError(f'--mode=visualize has no pictures for {type(task)}')


def run(config: Config, workdir: str, *, sentence: str,
        layers: list[int] | None, heads: list[int] | None,
        step: int | None = None, out_dir: str | None = None,
        command: str | None = None) -> list[str]:
  """Attention pictures of `sentence` and what the model makes of it;
  returns the paths.

  Translation: the sentence's translation and the three kinds of attention.
  Classification and regression: the encoder self-attention of the text,
  the prediction in the titles; classification adds the confusion matrix
  of the newest WORKDIR/eval/*.json (or says how to make one).

  Writes into `out_dir` (default workdir/pictures) the files listed in the
  module docstring, and training_curves.png when workdir/metrics.jsonl
  exists. In a multi-process run only process 0 draws (the others return
  []). Raises ValueError for an empty sentence or a layer/head that does
  not exist, NoCheckpointError when the workdir has nothing to restore
  (ConfigError, a ValueError, for a labelled run without its labels.json or
  targets.json). `command` ('python launch.py --experiment=X --workdir=W')
  completes the hints printed.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from transformer import checkpoint  # pylint: disable=g-import-not-at-top
  from transformer import tasks  # pylint: disable=g-import-not-at-top
  from transformer import train as train_lib  # pylint: disable=g-import-not-at-top
  from transformer.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  m = config.model
  # The user's mistakes first, before anything slow.
  task = tasks.for_run(config, workdir)  # reads no checkpoint
  chosen = family(task)
  check_sentence(sentence, chosen.purpose)
  resolve_layers(layers, m.num_encoder_layers,
                 m.num_decoder_layers if chosen.decoder else 0, notes=False)
  resolve_heads(heads, m.num_heads)
  out_dir = out_dir or os.path.join(workdir, 'pictures')

  if not os.path.exists(os.path.join(workdir, tokenizer_lib.filename(config))):
    raise checkpoint.NoCheckpointError(
        f'{workdir} has no {tokenizer_lib.filename(config)}. Train first: '
        f'python launch.py --experiment=NAME --workdir={workdir}')
  mesh = train_lib.make_mesh(config=config)
  # Averaged as for --mode=translate / predict, so that all show one model.
  params, steps = checkpoint.restore_params(
      task, workdir, mesh, step=step,
      average=config.eval.average_checkpoints)
  tokenizer = tokenizer_lib.load_or_train(config, workdir)
  written = chosen.pictures(_Run(
      config=config, workdir=workdir, task=task, params=params, steps=steps,
      tokenizer=tokenizer, sentence=sentence, layers=layers, heads=heads,
      out_dir=out_dir, lead=jax.process_index() == 0, command=command))
  if jax.process_index() != 0:
    return []
  if os.path.exists(os.path.join(workdir, METRICS_FILENAME)):
    try:
      written.append(training_curves(
          workdir, os.path.join(out_dir, CURVES_FILENAME), chosen.scores))
    except ValueError as error:
      print(f'Note: no training curves: {error}', file=sys.stderr)
  for path in written:
    print(f'wrote {path}', flush=True)
  return written
