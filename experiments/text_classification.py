"""text_classification: a small encoder for your own labelled sentences.

Put `train.tsv` (or `train.csv`, `train.jsonl`) with a `text` and a `label`
column (class names) in a directory, optionally `valid.*` and `test.*`, and
run:

  python launch.py --experiment=text_classification --set=data.text_dir=DIR

Other column names: --set=data.text_column=... --set=data.label_column=....
Without a valid file a fixed tenth of the training file is held out. Sized
for a first run on a few thousand sentences in minutes on a laptop CPU: a
4,000-piece vocabulary, 3 pre-LN layers of d_model 128, 1,500 steps of 32
sentences; imbalanced classes: --set=train.class_weights=balanced.
Measured: not yet (see the README's task table when it is).
"""

import dataclasses

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=dataclasses.replace(CPU_ENCODER, vocab_size=4000),
      data=DataConfig(source='text', max_length=64, batch_size=32,
                      eval_max_length=128),
      train=TrainConfig(steps=1500, schedule='cosine', learning_rate=1e-3,
                        warmup_steps=100, label_smoothing=0.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=500, split='valid'),
  )
