"""wmt_small: WMT'14 English -> German with a small Transformer on one GPU.

A 6+6-layer model of width 256 that trains in hours on one GPU, for quick
research iterations on real data. Needs the TFDS data prepared once (see the
README, "Data"):
  python launch.py --experiment=wmt_small --workdir=workdirs/wmt_small
"""

from transformer.config import Config, DataConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=ModelConfig(vocab_size=32_000, d_model=256, d_ff=1024, num_heads=4,
                        dtype='bfloat16'),
      data=DataConfig(source='tfds', tfds_name='wmt14_translate/de-en',
                      direction='en-de', max_length=256, batch_size=64),
      train=TrainConfig(steps=100_000, checkpoint_every=2000, log_every=200),
  )
