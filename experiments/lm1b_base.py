"""lm1b_base: a GPT-2-small-shaped language model (124M parameters with GPT-2's vocabulary) on TFDS lm1b.

The GPT-2 small shape (12 pre-LN layers of d_model 768, 12 heads, GELU,
1024 learned positions; Radford et al. 2019) with a 32,000-piece
SentencePiece vocabulary on the One Billion Word benchmark, packed into rows
of 1024 tokens, bfloat16, for a GPU or TPU host (see the README, "GPUs,
TPUs and many hosts"):

  python launch.py --experiment=lm1b_base

Not measured here: this machine has neither the data nor an accelerator.
"""

import dataclasses

from transformer.config import GPT2_SMALL, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=dataclasses.replace(GPT2_SMALL, dtype='bfloat16'),
      data=DataConfig(source='tfds', tfds_name='lm1b', max_length=1024,
                      batch_size=256, tokenizer_sentences=1_000_000),
      train=TrainConfig(steps=200_000, schedule='cosine', learning_rate=6e-4,
                        warmup_steps=2000, weight_decay=0.1, adam_b2=0.95,
                        adam_eps=1e-8, label_smoothing=0.0,
                        grad_clip_norm=1.0, checkpoint_every=2000,
                        log_every=200),
      eval=EvalConfig(every=5000, split='valid', num_examples=5000),
  )
