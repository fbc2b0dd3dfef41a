"""wmt_big: the paper's big model on WMT'14 English -> German (Table 3).

d_model 1024, d_ff 4096, 16 heads, dropout 0.3, 300k steps, otherwise as
wmt_base; the paper evaluates the average of the last 20 checkpoints.
Paper: 28.4 BLEU on newstest2014 in 3.5 days on 8 P100 GPUs.
  python launch.py --experiment=wmt_big --workdir=workdirs/wmt_big
Benchmark (`--mode=benchmark`, one NVIDIA H100 80GB, JAX 0.11.2, random
batches of this shape): 80.1 ms per step back to back, 307k target tokens/s,
MFU 41.6% of the 989 TFLOP/s bfloat16 peak; 300k steps would take ~6.7 hours
of steps alone. Full training and BLEU: not run here (no WMT data offline).
"""

import dataclasses

from transformer.config import BIG, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=dataclasses.replace(BIG, dtype='bfloat16'),
      data=DataConfig(source='tfds', tfds_name='wmt14_translate/de-en',
                      direction='en-de', max_length=256, batch_size=96),
      train=TrainConfig(steps=300_000, checkpoint_every=2000, log_every=200,
                        keep_checkpoints=20),
      eval=EvalConfig(every=10_000, average_checkpoints=20),
  )
