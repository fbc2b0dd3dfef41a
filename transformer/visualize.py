"""Pictures: attention maps of one translated sentence, and training curves.

  python launch.py --experiment=NAME --mode=visualize --sentence="..."

`run` restores the parameters, tokenizes the sentence (EOS appended), decodes
its translation greedily, then runs one teacher-forced forward pass on
(source, translation) with `Transformer(sow_weights=True)`, which records
every layer's attention probabilities. For each chosen layer it draws one
figure per kind of attention, one subplot per chosen head:

  encoder_self_layerL.png  encoder self-attention: source x source
  decoder_self_layerL.png  decoder self-attention: target x target (causal:
                           nothing above the diagonal)
  cross_layerL.png         encoder-decoder attention: target (y) x source (x)

Decoder positions. Position t of the decoder is fed the previous token
(BOS, y_1, ..., y_{T-1}) and predicts y_t (the last one is EOS). Rows
(queries) are labelled with the token the position predicts, keys of the
decoder self-attention with the token the position is fed: row y_t sees
exactly BOS, y_1, ..., y_{t-1}, the tokens before it.

Layers are 0-based; negative indices count from the end, resolved in each
stack (encoder, decoder) separately. Default: the first and the last layer,
every head.

`training_curves(workdir, path)` plots `metrics.jsonl`: training loss, eval
loss and BLEU against the step; `run` writes it as training_curves.png.

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
  that neither stack has raises ValueError naming the valid range.
  """
  counts = {'encoder': num_encoder_layers, 'decoder': num_decoder_layers}
  if layers is None:
    layers = [0, -1]
  if not layers:
    raise ValueError('no layers chosen: give at least one layer index, or '
                     'none for the first and last layer')
  chosen: dict[str, list[int]] = {'encoder': [], 'decoder': []}
  for index in layers:
    resolved = {name: _resolve(index, n) for name, n in counts.items()}
    if all(r is None for r in resolved.values()):
      deepest = max(counts.values())
      raise ValueError(
          f'layer {index} does not exist: the encoder has '
          f'{num_encoder_layers} layers and the decoder '
          f'{num_decoder_layers}; valid layer indices are '
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


def check_sentence(sentence: str | None) -> None:
  if not sentence or not sentence.strip():
    raise ValueError('the sentence is empty: give the text to translate, '
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
    total = len(maps.maps(kind))
    for layer in chosen[stack[kind]]:
      row_pieces, column_pieces = maps.axis_pieces(kind)
      shown = ('all heads' if len(head_list) == num_heads else
               ('head ' if len(head_list) == 1 else 'heads ') +
               ', '.join(map(str, head_list)))
      title = f'{TITLES[kind]}, layer {layer} (of 0..{total - 1}), {shown}'
      path = os.path.join(out_dir, f'{kind}_layer{layer}.png')
      written.append(draw_attention(
          maps.maps(kind)[layer], head_list, row_pieces, column_pieces, path,
          title=title, row_label=labels[kind][0],
          column_label=labels[kind][1]))
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


def curve_series(metrics_path: str
                 ) -> dict[str, tuple[list[int], list[float]]]:
  """What `training_curves` plots: {'train_loss', 'eval_loss', 'bleu'} ->
  (steps, values), one value per step (the last logged), steps ascending."""
  by_kind = read_metrics(metrics_path)
  return {'train_loss': _series(by_kind.get('train', []), 'loss'),
          'eval_loss': _series(by_kind.get('eval', []), 'loss'),
          'bleu': _series(by_kind.get('eval', []), 'bleu')}


def training_curves(workdir: str, path: str) -> str:
  """Plots workdir/metrics.jsonl: training and eval loss, and BLEU (own
  subplot) when evaluations logged it. Returns `path`.

  Raises FileNotFoundError without metrics.jsonl, ValueError when it holds
  no loss to plot.
  """
  metrics_path = os.path.join(workdir, METRICS_FILENAME)
  if not os.path.exists(metrics_path):
    raise FileNotFoundError(f'{metrics_path} does not exist: train first')
  series = curve_series(metrics_path)
  train, evals, bleu = (series['train_loss'], series['eval_loss'],
                        series['bleu'])
  if not train[0] and not evals[0]:
    raise ValueError(f'{metrics_path} holds no loss to plot')
  panels = 2 if bleu[0] else 1
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
  if bleu[0]:
    bleu_ax = axes[1]
    bleu_ax.plot(*bleu, color='tab:green', marker='o', markersize=3)
    bleu_ax.set_xlabel('step')
    bleu_ax.set_ylabel('BLEU')
    bleu_ax.set_title('Eval BLEU')
    bleu_ax.grid(alpha=0.3)
  figure.suptitle(f'Training curves: {os.path.basename(os.path.abspath(workdir))}')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path)
  return path


# ---------------------------------------------------------------------------
# The --mode=visualize entry point.
# ---------------------------------------------------------------------------


def run(config: Config, workdir: str, *, sentence: str,
        layers: list[int] | None, heads: list[int] | None,
        step: int | None = None, out_dir: str | None = None) -> list[str]:
  """Attention pictures of `sentence` and its translation; returns the paths.

  Writes into `out_dir` (default workdir/pictures) the files listed in the
  module docstring, and training_curves.png when workdir/metrics.jsonl
  exists. In a multi-process run only process 0 draws (the others return
  []). Raises ValueError for an empty sentence or a layer/head that does
  not exist, NoCheckpointError when the workdir has nothing to restore.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from transformer import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from transformer import tasks  # pylint: disable=g-import-not-at-top
  from transformer import train as train_lib  # pylint: disable=g-import-not-at-top
  from transformer.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  m = config.model
  # The user's mistakes first, before anything slow.
  check_sentence(sentence)
  resolve_layers(layers, m.num_encoder_layers, m.num_decoder_layers,
                 notes=False)
  resolve_heads(heads, m.num_heads)
  out_dir = out_dir or os.path.join(workdir, 'pictures')

  if not os.path.exists(os.path.join(workdir, tokenizer_lib.MODEL_FILENAME)):
    raise evaluate_lib.NoCheckpointError(
        f'{workdir} has no {tokenizer_lib.MODEL_FILENAME}. Train first: '
        f'python launch.py --experiment=NAME --workdir={workdir}')
  mesh = train_lib.make_mesh()
  # Averaged as for --mode=translate, so that both show the same model.
  params, steps = evaluate_lib.restore_params(
      tasks.for_config(config), workdir, mesh, step=step,
      average=config.eval.average_checkpoints)
  tokenizer = tokenizer_lib.load_or_train(config, workdir)
  maps = attention_maps(params, m, tokenizer, sentence,
                        max_extra_length=config.eval.max_extra_length,
                        max_length=config.data.eval_max_length)
  if jax.process_index() != 0:  # every process computes; one draws
    return []
  averaged = f' (mean of checkpoints {steps})' if len(steps) > 1 else ''
  print(f'checkpoint {steps[-1]}{averaged}\n'
        f'  source:      {sentence.strip()}\n'
        f'  pieces:      {" ".join(maps.source_pieces)}\n'
        f'  translation: {maps.translation}   (greedy)\n'
        f'  pieces:      {" ".join(maps.target_pieces)}', flush=True)
  written = draw(maps, out_dir, layers=layers, heads=heads)
  if os.path.exists(os.path.join(workdir, METRICS_FILENAME)):
    try:
      written.append(training_curves(
          workdir, os.path.join(out_dir, CURVES_FILENAME)))
    except ValueError as error:
      print(f'Note: no training curves: {error}', file=sys.stderr)
  for path in written:
    print(f'wrote {path}', flush=True)
  return written
