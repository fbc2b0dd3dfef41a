"""Pure matplotlib: attention maps, training curves, confusion matrices.

Everything here draws on the Agg canvas with matplotlib's object API (no
pyplot, no display, no global backend change), from NumPy arrays and the
files a run writes (metrics.jsonl, eval/*.json); nothing loads a model.
Which layers and heads to draw (`resolve_layers`, `resolve_heads`) is
checked here too, before anything expensive runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

KINDS = ('encoder_self', 'decoder_self', 'cross')
TITLES = {'encoder_self': 'Encoder self-attention',
          'decoder_self': 'Decoder self-attention (causal)',
          'cross': 'Encoder-decoder attention'}
METRICS_FILENAME = 'metrics.jsonl'
CURVES_FILENAME = 'training_curves.png'
CONFUSION_FILENAME = 'confusion_matrix.png'
EVAL_DIRNAME = 'eval'  # where --mode=evaluate writes SPLIT_stepN.json

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
# Drawing.
# ---------------------------------------------------------------------------


def _tick_fontsize(count: int) -> float:
  """Readable labels: 10 pt for short sentences, down to 5 pt for long ones."""
  return float(np.clip(11.0 - count / 6.0, 5.0, 10.0))


def _new_figure(width: float, height: float):
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
