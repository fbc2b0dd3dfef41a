"""bible_lm: a small GPT-style language model of the English Bible, fitted to 15 CPU minutes.

A decoder-only Transformer on the World English Bible, one document per
chapter, the chapters of the test split never trained on (the translation
corpus's split), with a 4,000-piece SentencePiece vocabulary. Sized to its
budget: 4 pre-LN layers of width 128 (learned positions, GELU, dropout
0.1) on rows of 128 pieces, batches of 32, AdamW (beta2 0.99, weight decay
0.1 on the matrices) at 2e-3 decaying on a cosine to a tenth, for as many
steps as fit in train.time_limit=15 minutes (train.steps=0), the best
checkpoint on valid kept. Then it continues a prompt:

  python launch.py --experiment=bible_lm
  python launch.py --experiment=bible_lm --mode=generate --prompt="And God said"

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s and train MFU 42% as `--mode=benchmark` measures), alone on the
machine: the budget fitted 4,628 steps (176 ms each as timed; 19M tokens,
about 16 epochs of the training chapters), trained in 14.3 minutes: test
chapters (57,107 tokens, 227,433 characters) perplexity 31.7, 1.252 bits
per character (valid 1.290). Baselines on the same splits (`python -m
transformer.ngram --experiment=bible_lm --level=both
--tokenizer_dir=workdirs/bible_lm`), interpolated Kneser-Ney: over the
same 4,000 pieces, order 4, perplexity 41.8, 1.353 bits per character;
over characters, order 8, 1.500. The earlier recipe (the bench_lm_cpu
shape, 4 layers of width 256 on rows of 256, 270 steps in 16.4 minutes)
reached 1.572: at this budget the narrower model, which sees the text 16
times instead of twice, wins.

On a machine about half as fast (the same CPU held to one core with
`taskset -c 0` and XLA's Eigen threads off, the other core running other
jobs: matmul peak 239 GFLOP/s against 431), the same command fitted 2,741
steps (297 ms each as timed) and trained them in 14.5 minutes: test 1.288
bits per character (valid 1.329), still ahead of both n-grams. A sample (temperature 0.8, top-p 0.95):
  'There was a famine in the' -> ' land of Goshen. Now they were very faint
  with flocks and herds. The land was a slaughter. ...'
"""

import dataclasses

from transformer.config import CPU_DECODER, Config, DataConfig, EvalConfig, GenerateConfig, TrainConfig


def get_config() -> Config:
  # Sized to the budget: a narrower model (4 layers of width 128) sees four
  # times the tokens of the bench_lm_cpu shape in the same minutes.
  return Config(
      task='language_model',
      model=dataclasses.replace(
          CPU_DECODER, d_model=128, d_ff=512, num_heads=4,
          positions='learned', activation='gelu', max_length=128,
          dropout_rate=0.1),
      data=DataConfig(source='bible', language='en', max_length=128,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(steps=0, time_limit=15.0, schedule='cosine',
                        learning_rate=2e-3, warmup_steps=100,
                        final_learning_rate_fraction=0.1, adam_b2=0.99,
                        weight_decay=0.1, weight_decay_on='matrices',
                        label_smoothing=0.0, grad_clip_norm=1.0,
                        checkpoint_every=1000, log_every=200),
      eval=EvalConfig(every=1000, split='valid',
                      best_metric='bits_per_character'),
      generate=GenerateConfig(temperature=0.8, top_p=0.95, max_new_tokens=60),
  )
