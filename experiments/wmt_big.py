"""wmt_big: the paper's big model on WMT'14 English -> German (Table 3).

d_model 1024, d_ff 4096, 16 heads, dropout 0.3, 300k steps, otherwise as
wmt_base; the paper evaluates the average of the last 20 checkpoints.
Paper: 28.4 BLEU on newstest2014 in 3.5 days on 8 P100 GPUs.
  python launch.py --experiment=wmt_big --workdir=workdirs/wmt_big
"""

import dataclasses

from transformer.config import BIG, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=dataclasses.replace(BIG, dtype='bfloat16'),
      data=DataConfig(source='tfds', tfds_name='wmt14_translate/de-en',
                      direction='en-de', max_length=256, batch_size=96),
      train=TrainConfig(steps=300_000, checkpoint_every=2000, log_every=200),
      eval=EvalConfig(every=10_000, average_checkpoints=20),
  )
