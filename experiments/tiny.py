"""tiny: a two-layer model on a generated word-reversal task; trains in seconds.

For tests and for trying the code: no corpus, no download.
  python launch.py --experiment=tiny --workdir=/tmp/tiny
"""

from transformer.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig

def get_config() -> Config:
  return Config(
      model=ModelConfig(vocab_size=200, d_model=64, d_ff=128, num_heads=4,
                        num_encoder_layers=2, num_decoder_layers=2,
                        max_length=64),
      data=DataConfig(source='toy', max_length=32, batch_size=16,
                      eval_batch_size=32),
      train=TrainConfig(steps=600, schedule='constant', learning_rate=3e-3,
                        warmup_steps=10, checkpoint_every=200, log_every=100),
      eval=EvalConfig(every=0, num_examples=64, max_extra_length=10),
  )

