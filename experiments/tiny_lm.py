"""tiny_lm: a two-layer decoder-only language model on a generated counting corpus; for tests.

Each document is one to four lines that count up in number words
(transformer/tasks/language_model/data.py, 'toy'), read character by character.
  python launch.py --experiment=tiny_lm --workdir=/tmp/tiny_lm
  python launch.py --experiment=tiny_lm --workdir=/tmp/tiny_lm --mode=generate --prompt="one two"

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s as `--mode=benchmark` measures), alone: 300 steps in 0.1 minutes
(the whole command 10 s); test documents (20,023 characters) perplexity
1.56, 0.638 bits per character (0.643 on 2026-12-01), against
0.331 for an interpolated Kneser-Ney character 8-gram on the same splits
(`python -m transformer.ngram --experiment=tiny_lm --level=char`): a test
fixture, not a result. Greedy: 'twelve thirteen' -> ' fourteen fifteen
sixteen seventeen eighten neleve ...'.
"""

from transformer.config import Config, DataConfig, EvalConfig, GenerateConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=ModelConfig(vocab_size=40, d_model=32, d_ff=64, num_heads=4,
                        num_encoder_layers=0, num_decoder_layers=2,
                        dropout_rate=0.0, max_length=64,
                        norm_position='pre'),
      data=DataConfig(source='toy', tokenizer='char', max_length=64,
                      batch_size=16, eval_batch_size=32),
      train=TrainConfig(steps=300, schedule='constant', learning_rate=3e-3,
                        warmup_steps=10, label_smoothing=0.0,
                        checkpoint_every=100, log_every=50),
      eval=EvalConfig(every=0, final=True),
      generate=GenerateConfig(temperature=0.0, max_new_tokens=40),
  )
