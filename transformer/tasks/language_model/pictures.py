"""--mode=visualize for a language model: the text is run once through
`LanguageModel(sow_weights=True)` (no BOS/EOS added beyond the BOS it reads
first), and each chosen layer's causal self-attention is drawn:

  decoder_self_layerL.png  rows the token each position predicts, columns
                           the token it is fed (as for the translation
                           decoder)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from transformer import attention_capture, plots
from transformer.config import BOS_ID
from transformer.tasks.base import PictureRun


def decoder_only_attention(task: Any, params: Any, ids: Sequence[int]
                           ) -> list[np.ndarray]:
  """A language model's self-attention of one text: [heads, n, n] per
  layer, position t fed BOS, s_0 .. s_{t-1} and predicting s_t."""
  row = np.asarray([ids], np.int32)
  _, weights = attention_capture.capture(
      task.model(sow_weights=True).apply, params, row)
  return weights['decoder_self']


def pictures(run: PictureRun) -> list[str]:
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
  chosen = plots.resolve_layers(run.layers, 0, m.num_decoder_layers)['decoder']
  return plots.draw_layers('decoder_self', weights, chosen,
                           plots.resolve_heads(run.heads, m.num_heads),
                           pieces, fed, run.out_dir,
                           row_label='token predicted (query)',
                           column_label='token fed (key)')
