"""bible_lm: a small GPT-style language model of the English Bible, trained on a CPU.

A decoder-only Transformer (4 pre-LN layers of d_model 256, the bench_lm_cpu
shape) on the World English Bible, one document per chapter, the chapters of
the test split never trained on (the translation corpus's split), with a
4,000-piece SentencePiece vocabulary. Then it continues a prompt:

  python launch.py --experiment=bible_lm
  python launch.py --experiment=bible_lm --mode=generate --prompt="And God said"

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-01), alone on the
machine until step 255 (3.1 s per step; other jobs started for the last
15 steps and the final evaluation): 270 steps (2.2M tokens, 1.9 epochs)
in 16.4 minutes with three valid evaluations, 17.4 minutes in all with
the tokenizer and the test evaluation (train.time_limit=15 caps the
training time of a slower machine's run, which then evaluates). Test chapters (57,107 tokens,
227,433 characters): perplexity 76.6, 1.572 bits per character (valid
92.8 at step 180, 84.9 at 270). Baselines on the same splits (`python -m
transformer.ngram --experiment=bible_lm --level=both
--tokenizer_dir=workdirs/bible_lm`), interpolated Kneser-Ney: over the
same 4,000 pieces, order 4, perplexity 41.8, 1.353 bits per character;
over characters, order 8, 1.500 bits per character. In 15 CPU minutes the
Transformer does not reach the n-grams (it has seen each token under two
times; the n-grams count every one exactly); it writes recognisable
verse (temperature 0.8, top-p 0.95, the default):
  'And God said' -> ', "An't offering's army, and said, "We have sinned
  him, "What is there is a young men, who be purified a fool will be to
  the small. ...'
  'Now Moses was keeping the flock' -> ' of the promise, the Levites the
  son of the son of the son of Joil, over the son of Ahab. ...'
An earlier run of 450 planned steps on a CPU shared with other jobs (5.5
s per step) was stopped by train.time_limit=15 at step 176: perplexity
80.2, 1.588 bits per character.
"""

from transformer.config import CPU_DECODER, Config, DataConfig, EvalConfig, GenerateConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=CPU_DECODER,
      data=DataConfig(source='bible', language='en', max_length=256,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(steps=270, schedule='cosine', learning_rate=2e-3,
                        warmup_steps=20, label_smoothing=0.0,
                        grad_clip_norm=1.0, checkpoint_every=90,
                        log_every=15, time_limit=15.0),
      eval=EvalConfig(every=90, split='valid'),
      generate=GenerateConfig(temperature=0.8, top_p=0.95, max_new_tokens=80),
  )
