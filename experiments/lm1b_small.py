"""lm1b_small: a language model of the One Billion Word benchmark on one GPU.

TFDS lm1b (Chelba et al. 2013: ~30M English news sentences, each a
document), a 6-layer decoder of d_model 512 with a 32,000-piece
SentencePiece vocabulary, bfloat16. Needs the TFDS data prepared once (see
the README, "Data"):

  python launch.py --experiment=lm1b_small

Not measured here: this machine has neither the data nor an accelerator.
"""

import dataclasses

from transformer.config import GPT2_SMALL, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=dataclasses.replace(GPT2_SMALL, d_model=512, d_ff=2048,
                                num_heads=8, num_decoder_layers=6,
                                max_length=256, dtype='bfloat16'),
      data=DataConfig(source='tfds', tfds_name='lm1b', max_length=256,
                      batch_size=256, tokenizer_sentences=1_000_000),
      train=TrainConfig(steps=100_000, schedule='cosine', learning_rate=1e-3,
                        warmup_steps=2000, weight_decay=0.1,
                        label_smoothing=0.0, grad_clip_norm=1.0,
                        checkpoint_every=2000, log_every=200),
      eval=EvalConfig(every=5000, split='valid', num_examples=5000),
  )
