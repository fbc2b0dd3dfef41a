"""bible_lm: a small GPT-style language model of the English Bible, trained on a CPU.

A decoder-only Transformer (4 pre-LN layers of d_model 256, the bench_lm_cpu
shape) on the World English Bible, one document per chapter, the chapters of
the test split never trained on (the translation corpus's split), with a
4,000-piece SentencePiece vocabulary. Then it continues a prompt:

  python launch.py --experiment=bible_lm
  python launch.py --experiment=bible_lm --mode=generate --prompt="And God said"

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-01) while other
jobs kept the two cores busy (load 5): 5.5 s per step instead of the ~2 s
the shape takes alone (bench_lm_cpu), so train.time_limit=15 stopped it at
step 176 of 450 (1.4M tokens, 1.2 epochs, learning rate still at 70% of
its peak); 16.4 minutes in all. Test chapters (57,107 tokens, 227,433
characters): perplexity 80.2, 1.588 bits per character (valid 98.6 at step
150). Baselines on the same splits (`python -m transformer.ngram
--experiment=bible_lm --level=both --tokenizer_dir=workdirs/bible_lm`),
interpolated Kneser-Ney: over the same 4,000 pieces, order 4, perplexity
41.8, 1.353 bits per character; over characters, order 8, 1.500 bits per
character. So cut short, the Transformer does not reach the n-grams yet;
it already writes recognisable verse (temperature 0.8, top-p 0.95):
  'Joseph fell on his father's face,' -> ' and that he was called his
  brother. You also was speaking. Moreover and said to come into this to
  come in the hill country to him: "Do you shall come to go that you will
  be like the children of the land which you, ...'
"""

from transformer.config import CPU_DECODER, Config, DataConfig, EvalConfig, GenerateConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=CPU_DECODER,
      data=DataConfig(source='bible', language='en', max_length=256,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(steps=450, schedule='cosine', learning_rate=2e-3,
                        warmup_steps=30, label_smoothing=0.0,
                        grad_clip_norm=1.0, checkpoint_every=150,
                        log_every=25, time_limit=15.0),
      eval=EvalConfig(every=150, split='valid'),
      generate=GenerateConfig(temperature=0.8, top_p=0.95, max_new_tokens=80),
  )
