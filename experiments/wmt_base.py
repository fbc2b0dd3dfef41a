"""wmt_base: the paper's base model on WMT'14 English -> German (Table 3).

Paper settings: d_model 512, 6+6 layers, Adam (0.9, 0.98, 1e-9), the eq. (3)
schedule with 4,000 warm-up steps, label smoothing 0.1, 100k steps, about
25,000 source + 25,000 target tokens per batch (here 96 packed rows of 256
tokens = 24,576 each side), 37k shared vocabulary. Paper: 27.3 BLEU on
newstest2014 in 12 hours on 8 P100 GPUs.
  python launch.py --experiment=wmt_base --workdir=workdirs/wmt_base
On one GPU with too little memory, keep the batch and add micro-batches:
  --set=train.grad_accum_steps=4
Benchmark (`--mode=benchmark`, one NVIDIA H100 80GB, JAX 0.11.2, random
batches of this shape): 35.5 ms per step back to back, 692k target tokens/s,
MFU 28.4% of the 989 TFLOP/s bfloat16 peak; 100k steps would take ~1 hour of
steps alone. Full training and BLEU: not run here (no WMT data offline).
"""

from transformer.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=ModelConfig(vocab_size=37_000, dtype='bfloat16'),
      data=DataConfig(source='tfds', tfds_name='wmt14_translate/de-en',
                      direction='en-de', max_length=256, batch_size=96),
      train=TrainConfig(steps=100_000, checkpoint_every=2000, log_every=200),
      eval=EvalConfig(every=5000, average_checkpoints=5),
  )
