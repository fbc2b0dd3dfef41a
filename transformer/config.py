"""Configuration: frozen dataclasses whose defaults are the paper's.

An experiment file in `experiments/` states only what differs from these
defaults; `launch.py --set=KEY=VALUE` overrides any field by its dotted path.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

# Fixed token ids, shared by the tokenizer, the data pipeline and decoding.
PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The encoder-decoder Transformer. Defaults: the paper's base model.

  "Attention Is All You Need" (Vaswani et al., 2017), Table 3, row "base".
  """
  vocab_size: int = 37_000  # shared source+target BPE vocabulary (sec. 5.1)
  d_model: int = 512
  d_ff: int = 2048
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  dropout_rate: float = 0.1  # P_drop: sub-layer outputs, embeddings (sec. 5.4)
  attention_dropout_rate: float = 0.0  # on attention probabilities; not in the paper
  activation: Literal['relu', 'gelu'] = 'relu'  # feed-forward, eq. (2)
  # 'post': LayerNorm(x + Sublayer(x)) as in the paper (sec. 3.1);
  # 'pre': x + Sublayer(LayerNorm(x)), with a final LayerNorm (more stable deep).
  norm_position: Literal['post', 'pre'] = 'post'
  layer_norm_epsilon: float = 1e-6
  positions: Literal['sinusoidal', 'learned'] = 'sinusoidal'  # sec. 3.5
  max_length: int = 512  # table size for learned positions
  share_embeddings: bool = True  # one embedding for source and target (sec. 3.4)
  tie_output_embedding: bool = True  # pre-softmax projection = target embedding
  dtype: Literal['float32', 'bfloat16'] = 'float32'  # compute; params stay float32

  def __post_init__(self):
    if self.d_model % self.num_heads:
      raise ValueError(f'model.d_model={self.d_model} must be divisible by '
                       f'model.num_heads={self.num_heads}')
    for name in ('vocab_size', 'd_model', 'd_ff', 'num_heads', 'max_length'):
      if getattr(self, name) <= 0:
        raise ValueError(f'model.{name} must be positive, got '
                         f'{getattr(self, name)}')
    for name in ('dropout_rate', 'attention_dropout_rate'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f'model.{name} must be in [0, 1), got '
                         f'{getattr(self, name)}')
    choices = {'activation': ('relu', 'gelu'), 'norm_position': ('post', 'pre'),
               'positions': ('sinusoidal', 'learned'),
               'dtype': ('float32', 'bfloat16')}
    for name, allowed in choices.items():
      if getattr(self, name) not in allowed:
        raise ValueError(f'model.{name}={getattr(self, name)!r} is not one of '
                         f'{allowed}')

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads


# Table 3 of the paper.
BASE = ModelConfig()
BIG = ModelConfig(d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3)
PRESETS = {'base': BASE, 'big': BIG}
