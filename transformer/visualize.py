"""--mode=visualize: attention pictures of one sentence, and training curves.

  python launch.py --experiment=NAME --mode=visualize --sentence="..."

`run` checks the user's input (the sentence; --layers against the task's
`attention_layers()`, --heads), restores the run's parameters (averaged as
for --mode=predict) and tokenizer, and asks the task to draw
(`Task.pictures`, with a `tasks.base.PictureRun`): what is drawn belongs to
the family, in transformer/tasks/FAMILY/pictures.py (translation: the three
kinds of attention of the sentence and its greedy translation; labelled
tasks: the encoder's self-attention with the prediction in the titles and,
for classification, the confusion matrix of the newest evaluation; language
models: the causal self-attention of the text). Then it draws the training
curves of metrics.jsonl (training and eval loss, and the task's
`CURVE_SCORES` on a second panel) as training_curves.png.

Layers are 0-based; negative indices count from the end, resolved in each
stack (encoder, decoder) separately. Default: the first and the last layer,
every head. The drawing itself is transformer/plots.py (pure matplotlib).
"""

from __future__ import annotations

import os
import sys

import jax

from transformer import checkpoint, plots, tasks
from transformer import train as train_lib
from transformer.config import Config
from transformer.data import tokenizer as tokenizer_lib
from transformer.tasks.base import PictureRun


def check_sentence(sentence: str | None, purpose: str) -> None:
  """A ValueError for an empty sentence; `purpose` says what it is for
  (the task's SENTENCE_PURPOSE, e.g. 'to translate')."""
  if not sentence or not sentence.strip():
    raise ValueError(f'the sentence is empty: give the text {purpose}, '
                     'e.g. --sentence="..."')


def run(config: Config, workdir: str, *, sentence: str,
        layers: list[int] | None, heads: list[int] | None,
        step: int | None = None, out_dir: str | None = None,
        command: str | None = None) -> list[str]:
  """Attention pictures of `sentence` and what the model makes of it;
  returns the paths.

  Writes into `out_dir` (default workdir/pictures) the task's pictures, and
  training_curves.png when workdir/metrics.jsonl exists. In a multi-process
  run only process 0 draws (the others return []). Raises ValueError for an
  empty sentence or a layer/head that does not exist, NoCheckpointError
  when the workdir has nothing to restore (ConfigError, a ValueError, for a
  labelled run without its labels.json or targets.json). `command`
  ('python launch.py --experiment=X --workdir=W') completes the hints
  printed.
  """
  # The user's mistakes first, before anything slow.
  task = tasks.for_run(config, workdir)  # reads no checkpoint
  check_sentence(sentence, task.SENTENCE_PURPOSE)
  plots.resolve_layers(layers, *task.attention_layers(), notes=False)
  plots.resolve_heads(heads, config.model.num_heads)
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
  lead = jax.process_index() == 0
  written = task.pictures(PictureRun(
      config=config, workdir=workdir, task=task, params=params, steps=steps,
      tokenizer=tokenizer, sentence=sentence, layers=layers, heads=heads,
      out_dir=out_dir, lead=lead, command=command))
  if not lead:
    return []
  if os.path.exists(os.path.join(workdir, plots.METRICS_FILENAME)):
    try:
      written.append(plots.training_curves(
          workdir, os.path.join(out_dir, plots.CURVES_FILENAME),
          task.CURVE_SCORES))
    except ValueError as error:
      print(f'Note: no training curves: {error}', file=sys.stderr)
  for path in written:
    print(f'wrote {path}', flush=True)
  return written
