"""Attention probabilities of one forward pass, recorded by `sow_weights`.

Every model of `model.py` built with `sow_weights=True` sows each attention
layer's probabilities into the 'intermediates' collection under its layer's
name (`encoder_i` / `decoder_i`, then `self_attention` or `cross_attention`;
scanned stacks sow under the same unrolled names). `capture` runs the model
once and gathers them by kind, whatever the family: the one path every
task's pictures use.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import numpy as np

# (layer stack, attention module) -> the kind of attention drawn.
KINDS = {('encoder', 'self_attention'): 'encoder_self',
         ('decoder', 'self_attention'): 'decoder_self',
         ('decoder', 'cross_attention'): 'cross'}
_LAYER = re.compile(r'(encoder|decoder)_(\d+)$')


def sown_attention(intermediates: Any) -> dict[str, list[np.ndarray]]:
  """{'encoder_self' | 'decoder_self' | 'cross': per layer in order, the
  first row's [heads, queries, keys] float32} of an 'intermediates' tree."""
  found: dict[str, dict[int, np.ndarray]] = {}

  def visit(node: Any, layer: tuple[str, int] | None) -> None:
    for name, child in node.items():
      match = _LAYER.match(name)
      if match:
        visit(child, (match.group(1), int(match.group(2))))
      elif (name in ('self_attention', 'cross_attention') and layer and
            'attention_weights' in child):
        (weights,) = child['attention_weights']  # sown once per call
        kind = KINDS[(layer[0], name)]
        found.setdefault(kind, {})[layer[1]] = np.asarray(weights[0],
                                                           np.float32)
      elif isinstance(child, dict):
        visit(child, layer)

  visit(jax.device_get(intermediates), None)
  return {kind: [layers[i] for i in sorted(layers)]
          for kind, layers in found.items()}


def capture(apply: Callable[..., Any], params: Any, *inputs: Any
            ) -> tuple[Any, dict[str, list[np.ndarray]]]:
  """(output, sown_attention) of `apply({'params': params}, *inputs,
  mutable=['intermediates'])`, jitted; `apply` is the `.apply` of a model
  built with sow_weights=True, closed over its keyword arguments."""

  @jax.jit
  def forward(params, *inputs):
    output, state = apply({'params': params}, *inputs,
                          mutable=['intermediates'])
    return output, state['intermediates']

  output, intermediates = forward(params, *inputs)
  return jax.device_get(output), sown_attention(intermediates)
