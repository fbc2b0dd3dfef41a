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
import json
import math
import os
import sys
from typing import Any, Protocol, Sequence

import numpy as np

from transformer.config import BOS_ID, EOS_ID, PAD_ID, Config, ModelConfig

KINDS = ('encoder_self', 'decoder_self', 'cross')
TITLES = {'encoder_self': 'Encoder self-attention',
          'decoder_self': 'Decoder self-attention (causal)',
          'cross': 'Encoder-decoder attention'}
METRICS_FILENAME = 'metrics.jsonl'
CURVES_FILENAME = 'training_curves.png'
CONFUSION_FILENAME = 'confusion_matrix.png'
EVAL_DIRNAME = 'eval'  # where --mode=evaluate writes SPLIT_stepN.json


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
# Choosing layers and heads (checked before anything expensive runs).
# ---------------------------------------------------------------------------


def _resolve(index: int, count: int) -> int | None:
  """`index` (negative from the end) in 0..count-1, or None if outside."""
  if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
    raise ValueError(f'layer and head indices must be integers, got '
                     f'{index!r}')
  index = int(index)
  if -count <= index < count:
    return index % count
  return None


def resolve_layers(layers: Sequence[int] | None, num_encoder_layers: int,
                   num_decoder_layers: int, *,
                   notes: bool = True) -> dict[str, list[int]]:
  """Layer indices per stack: {'encoder': [...], 'decoder': [...]}.

  Default: first and last layer. An index is resolved in each stack on its
  own; a stack without that layer is skipped with a note on stderr. An index
  that neither stack has raises ValueError naming the valid range. A stack
  of 0 layers (the decoder of an encoder-only model) gets no layers and no
  notes.
  """
  counts = {'encoder': num_encoder_layers, 'decoder': num_decoder_layers}
  # An encoder-only model (classification, regression): no decoder to skip
  # layers of or to name.
  present = {name: n for name, n in counts.items() if n > 0}
  if layers is None:
    layers = [0, -1]
  if not layers:
    raise ValueError('no layers chosen: give at least one layer index, or '
                     'none for the first and last layer')
  chosen: dict[str, list[int]] = {'encoder': [], 'decoder': []}
  for index in layers:
    resolved = {name: _resolve(index, n) for name, n in present.items()}
    if all(r is None for r in resolved.values()):
      deepest = max(counts.values())
      stacks = (f'the encoder has {num_encoder_layers} layers and the '
                f'decoder {num_decoder_layers}' if len(present) == 2 else
                f'the {next(iter(present))} has {deepest} layers')
      raise ValueError(
          f'layer {index} does not exist: {stacks}; valid layer indices are '
          f'{-deepest}..{deepest - 1} (negative ones count from the end)')
    for name, r in resolved.items():
      if r is None and notes:
        print(f'Note: layer {index}: the {name} has only {counts[name]} '
              f'layers; its pictures are skipped.', file=sys.stderr)
      elif r not in chosen[name]:
        chosen[name].append(r)
  return chosen


def resolve_heads(heads: Sequence[int] | None, num_heads: int) -> list[int]:
  """Head indices in 0..num_heads-1 (negative from the end); default all."""
  if heads is None:
    return list(range(num_heads))
  if not heads:
    raise ValueError('no heads chosen: give at least one head index, or none '
                     'for all heads')
  chosen = []
  for index in heads:
    r = _resolve(index, num_heads)
    if r is None:
      raise ValueError(f'head {index} does not exist: the model has '
                       f'{num_heads} heads; valid head indices are '
                       f'{-num_heads}..{num_heads - 1}')
    if r not in chosen:
      chosen.append(r)
  return chosen


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


# ---------------------------------------------------------------------------
# Drawing.
# ---------------------------------------------------------------------------


def _tick_fontsize(count: int) -> float:
  """Readable labels: 10 pt for short sentences, down to 5 pt for long ones."""
  return float(np.clip(11.0 - count / 6.0, 5.0, 10.0))


def _new_figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height), dpi=100, layout='constrained')
  FigureCanvasAgg(figure)
  return figure


def draw_attention(weights: np.ndarray, heads: Sequence[int],
                   row_pieces: Sequence[str], column_pieces: Sequence[str],
                   path: str, *, title: str, row_label: str,
                   column_label: str) -> str:
  """One figure: a heat map per head in a grid, a shared colour bar.

  Args:
    weights: [num_heads, rows, columns] probabilities of one layer.
    heads: which heads to draw (indices into weights).
    row_pieces, column_pieces: tick labels (queries on y, keys on x).
    path: the PNG to write.
  Returns:
    path.
  """
  rows, columns = weights.shape[1:]
  if (rows, columns) != (len(row_pieces), len(column_pieces)):
    raise ValueError(f'weights are {rows}x{columns} but there are '
                     f'{len(row_pieces)}x{len(column_pieces)} labels')
  count = len(heads)
  # Each cell big enough for its labels: ~0.25 inch per token, at least 3.
  cell = max(3.0, 0.25 * max(rows, columns) + 1.2)
  cell_w = max(cell * max(columns, 1) / max(rows, columns, 1), 2.5)
  cell_h = max(cell * max(rows, 1) / max(rows, columns, 1), 2.0)
  # At most 4 columns and about 24 inches across; rows filled evenly.
  max_columns = max(1, min(4, int(24 // cell_w)))
  grid_rows = math.ceil(count / max_columns)
  grid_columns = math.ceil(count / grid_rows)
  figure = _new_figure(grid_columns * cell_w + 1.2, grid_rows * cell_h + 0.8)
  axes = figure.subplots(grid_rows, grid_columns, squeeze=False)
  vmax = float(max(np.max(weights[h]) for h in heads)) or 1.0
  x_size, y_size = _tick_fontsize(columns), _tick_fontsize(rows)
  image = None
  for n, ax in enumerate(axes.ravel()):
    if n >= count:
      ax.set_visible(False)
      continue
    head = heads[n]
    image = ax.imshow(weights[head], cmap='viridis', vmin=0.0, vmax=vmax,
                      aspect='auto', interpolation='nearest')
    ax.set_title(f'head {head}', fontsize=10)
    ax.set_xticks(range(columns))
    ax.set_xticklabels(column_pieces, rotation=90, fontsize=x_size)
    ax.set_yticks(range(rows))
    ax.set_yticklabels(row_pieces, fontsize=y_size)
    ax.tick_params(length=0)
    if n % grid_columns == 0:
      ax.set_ylabel(row_label, fontsize=9)
    if n + grid_columns >= count:  # nothing drawn below it
      ax.set_xlabel(column_label, fontsize=9)
  colorbar = figure.colorbar(image, ax=list(axes.ravel()[:count]),
                             shrink=0.8)
  colorbar.set_label('attention probability')
  figure.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path)
  return path


def _heads_shown(head_list: Sequence[int], num_heads: int) -> str:
  return ('all heads' if len(head_list) == num_heads else
          ('head ' if len(head_list) == 1 else 'heads ') +
          ', '.join(map(str, head_list)))


def draw_layers(kind: str, layer_maps: Sequence[np.ndarray],
                layers: Sequence[int], head_list: Sequence[int],
                row_pieces: Sequence[str], column_pieces: Sequence[str],
                out_dir: str, *, row_label: str, column_label: str,
                note: str = '') -> list[str]:
  """One KIND_layerL.png per layer of `layers` (resolved, 0-based).

  Args:
    kind: one of KINDS (the file name and title).
    layer_maps: [heads, rows, columns] per layer of the stack.
    note: a second title line (e.g. the model's prediction).
  """
  num_heads, total = layer_maps[0].shape[0], len(layer_maps)
  shown = _heads_shown(head_list, num_heads)
  written = []
  for layer in layers:
    title = f'{TITLES[kind]}, layer {layer} (of 0..{total - 1}), {shown}'
    if note:
      title += f'\n{note}'
    path = os.path.join(out_dir, f'{kind}_layer{layer}.png')
    written.append(draw_attention(
        layer_maps[layer], head_list, row_pieces, column_pieces, path,
        title=title, row_label=row_label, column_label=column_label))
  return written


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
# Training curves.
# ---------------------------------------------------------------------------


def read_metrics(path: str) -> dict[str, list[dict[str, Any]]]:
  """metrics.jsonl -> {kind: records sorted by step}, the last record of each
  (kind, step) kept (a resumed run writes its steps again). Lines that are
  not JSON objects with a step and a kind (e.g. cut off by a crash) are
  skipped."""
  latest: dict[tuple[str, int], dict[str, Any]] = {}
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if not isinstance(record, dict) or 'kind' not in record or not (
          isinstance(record.get('step'), int)):
        continue
      latest[(str(record['kind']), record['step'])] = record
  by_kind: dict[str, list[dict[str, Any]]] = {}
  for (kind, step), record in sorted(latest.items(), key=lambda kv: kv[0][1]):
    by_kind.setdefault(kind, []).append(record)
  return by_kind


def _series(records: list[dict[str, Any]], key: str
            ) -> tuple[list[int], list[float]]:
  pairs = [(int(r['step']), float(r[key])) for r in records
           if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
  return [s for s, _ in pairs], [v for _, v in pairs]


# Eval metrics a second panel of the training curves can show: their names.
SCORE_NAMES = {'bleu': 'BLEU', 'accuracy': 'accuracy', 'macro_f1': 'macro-F1',
               'pearson': 'Pearson r', 'spearman': 'Spearman rho'}
_SCORE_COLOURS = ('tab:green', 'tab:purple', 'tab:red', 'tab:brown')


def curve_series(metrics_path: str, scores: Sequence[str] = ('bleu',)
                 ) -> dict[str, tuple[list[int], list[float]]]:
  """What `training_curves` plots: {'train_loss', 'eval_loss', *scores} ->
  (steps, values), one value per step (the last logged), steps ascending.
  `scores` are eval metrics (translation: BLEU; classification: accuracy,
  macro_f1; regression: pearson, spearman); a step where one is missing or
  undefined (None) is left out of its series."""
  by_kind = read_metrics(metrics_path)
  evals = by_kind.get('eval', [])
  return {'train_loss': _series(by_kind.get('train', []), 'loss'),
          'eval_loss': _series(evals, 'loss'),
          **{name: _series(evals, name) for name in scores}}


def training_curves(workdir: str, path: str,
                    scores: Sequence[str] = ('bleu',)) -> str:
  """Plots workdir/metrics.jsonl: training and eval loss, and the eval
  `scores` (own subplot; default BLEU) when evaluations logged them.
  Returns `path`.

  Raises FileNotFoundError without metrics.jsonl, ValueError when it holds
  no loss to plot.
  """
  metrics_path = os.path.join(workdir, METRICS_FILENAME)
  if not os.path.exists(metrics_path):
    raise FileNotFoundError(f'{metrics_path} does not exist: train first')
  series = curve_series(metrics_path, scores)
  train, evals = series['train_loss'], series['eval_loss']
  if not train[0] and not evals[0]:
    raise ValueError(f'{metrics_path} holds no loss to plot')
  logged = [name for name in scores if series[name][0]]
  panels = 2 if logged else 1
  figure = _new_figure(6.5 * panels, 4.2)
  axes = figure.subplots(1, panels, squeeze=False)[0]
  loss_ax = axes[0]
  if train[0]:
    loss_ax.plot(*train, label='training loss', color='tab:blue',
                 marker='o' if len(train[0]) < 30 else None, markersize=3)
  if evals[0]:
    loss_ax.plot(*evals, label='eval loss', color='tab:orange', marker='o',
                 markersize=3)
  loss_ax.set_xlabel('step')
  loss_ax.set_ylabel('loss')
  loss_ax.set_title('Loss')
  loss_ax.grid(alpha=0.3)
  loss_ax.legend()
  if logged:
    score_ax = axes[1]
    names = [SCORE_NAMES.get(name, name) for name in logged]
    for name, shown, colour in zip(logged, names, _SCORE_COLOURS * 4):
      score_ax.plot(*series[name], color=colour, marker='o', markersize=3,
                    label=shown)
    score_ax.set_xlabel('step')
    score_ax.set_ylabel(names[0] if len(logged) == 1 else 'score')
    score_ax.set_title('Eval ' + ' and '.join(names))
    score_ax.grid(alpha=0.3)
    if len(logged) > 1:
      score_ax.legend()
  figure.suptitle(f'Training curves: {os.path.basename(os.path.abspath(workdir))}')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path)
  return path


# ---------------------------------------------------------------------------
# Classification: the confusion matrix of the newest evaluation.
# ---------------------------------------------------------------------------


def latest_evaluation(workdir: str) -> tuple[str, dict[str, Any]] | None:
  """(path, metrics) of the newest WORKDIR/eval/*.json holding a
  'confusion_matrix' (newest by modification time, then by name), or None.
  Files that are not such JSON objects are passed over."""
  directory = os.path.join(workdir, EVAL_DIRNAME)
  if not os.path.isdir(directory):
    return None
  paths = [os.path.join(directory, name) for name in os.listdir(directory)
           if name.endswith('.json')]
  for path in sorted(paths, key=lambda p: (os.path.getmtime(p), p),
                     reverse=True):
    try:
      with open(path, encoding='utf-8') as f:
        metrics = json.load(f)
    except (OSError, ValueError):
      continue
    if isinstance(metrics, dict) and isinstance(
        metrics.get('confusion_matrix'), list):
      return path, metrics
  return None


def confusion_labels(metrics: dict[str, Any],
                     fallback: Sequence[str] = ()) -> list[str]:
  """The class names of an evaluation's confusion matrix, in its order: the
  keys of 'per_class' (written in the matrix's order), else `fallback`
  (WORKDIR/labels.json's 'labels'), else 0, 1, ..."""
  size = len(metrics['confusion_matrix'])
  per_class = metrics.get('per_class')
  if isinstance(per_class, dict) and len(per_class) == size:
    return [str(name) for name in per_class]
  if len(fallback) == size:
    return [str(name) for name in fallback]
  return [str(i) for i in range(size)]


@dataclasses.dataclass
class ConfusionPicture:
  """What `draw_confusion_matrix` drew.

  Attributes:
    path: the PNG.
    counts: [K, K] the numbers written in the cells (rows true, columns
      predicted), read back from the figure.
    shading: [K, K] the values the cells are coloured by (read back from
      the image): each row divided by its total, 0 for a class with no
      examples.
    size: (width, height) in pixels.
  """
  path: str
  counts: np.ndarray
  shading: np.ndarray
  size: tuple[int, int]


def confusion_figsize(labels: Sequence[str]) -> tuple[float, float]:
  """(width, height) in inches: ~0.6 inch per class, room for the names."""
  count = len(labels)
  font = _tick_fontsize(count)
  side = max(3.0, 0.6 * count)
  # The longest name (the y labels add ' (n=...)'), ~0.6 em per character.
  name = min(3.5, 0.6 * font / 72 * max(map(len, labels), default=1))
  return (round(side + name + 0.75 + 1.4, 2),  # y label, colour bar
          round(side + 0.75 * name + 1.3, 2))  # slanted x labels, titles


def draw_confusion_matrix(matrix: Sequence[Sequence[int]],
                          labels: Sequence[str], path: str, *,
                          title: str = 'Confusion matrix') -> ConfusionPicture:
  """Rows true, columns predicted: the count in each cell, shaded by the
  row-normalised fraction (each true class's share predicted as each class).

  Raises ValueError unless `matrix` is K x K for K = len(labels).
  """
  counts = np.asarray(matrix)
  count = len(labels)
  if counts.shape != (count, count) or count == 0:
    raise ValueError(f'the confusion matrix is {counts.shape}, not '
                     f'{count}x{count} for the classes {list(labels)}')
  counts = counts.astype(np.int64)
  totals = counts.sum(axis=1, keepdims=True)
  fractions = counts / np.maximum(totals, 1)
  width, height = confusion_figsize(labels)
  figure = _new_figure(width, height)
  ax = figure.subplots()
  image = ax.imshow(fractions, cmap='Blues', vmin=0.0, vmax=1.0,
                    interpolation='nearest')
  font = _tick_fontsize(count)
  slant = max(map(len, labels)) > 3 or count > 8
  ax.set_xticks(range(count))
  ax.set_xticklabels(labels, fontsize=font, rotation=45 if slant else 0,
                     ha='right' if slant else 'center',
                     rotation_mode='anchor')
  ax.set_yticks(range(count))
  ax.set_yticklabels([f'{name} (n={int(n)})'
                      for name, n in zip(labels, totals[:, 0])],
                     fontsize=font)
  ax.tick_params(length=0)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  texts = [[ax.text(j, i, str(counts[i, j]), ha='center', va='center',
                    fontsize=font,
                    color='white' if fractions[i, j] > 0.5 else 'black')
            for j in range(count)] for i in range(count)]
  colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
  colorbar.set_label('fraction of the true class (row)')
  figure.suptitle(title, fontsize=11)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path)
  return ConfusionPicture(
      path=path,
      counts=np.asarray([[int(t.get_text()) for t in row] for row in texts]),
      shading=np.asarray(image.get_array(), np.float64),
      size=tuple(int(v) for v in figure.canvas.get_width_height()))


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
