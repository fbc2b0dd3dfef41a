"""text_lm: a small character-level language model for your own text (nanoGPT's shakespeare_char, on a CPU).

Put `train.txt` (UTF-8; optionally `valid.txt` and `test.txt`) in a
directory and run:

  python launch.py --experiment=text_lm --set=data.text_dir=DIR
  python launch.py --experiment=text_lm --set=data.text_dir=DIR --mode=generate --prompt="Once"

The file is one running text cut into rows of 256 characters
(data.documents=stream; 'paragraphs' or 'lines' make each a document kept
apart by the masks). Without valid.txt the last tenth of the file is held
out. The vocabulary is the text's 252 most frequent characters (the rest
become <unk>). Sized for a laptop CPU: 4 pre-LN layers of d_model 256,
500 steps of 16 x 256 characters, at most 15 minutes.

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-01) with the
Spanish Bible (Reina-Valera 1909, the `bible` source's chapters of each
split written out as train.txt, 3,451,423 characters, valid.txt and
test.txt, 187,381): the CPU was shared with other jobs (load average 8),
so a step took 7 to 11 s instead of about 1.5, and train.time_limit=15
stopped the run at step 101 of 500 (0.4M characters seen): test 3.49 bits
per character (perplexity 11.3), the model still at the stage of spelling
(' á E Cque terela tel, la.dilon ...'). An interpolated Kneser-Ney
character 8-gram on the same files gives 1.628 bits per character (`python
-m transformer.ngram --experiment=text_lm --set=data.text_dir=DIR
--level=char`). A run on a quiet machine is still to be measured.
"""

import dataclasses

from transformer.config import CPU_DECODER, Config, DataConfig, EvalConfig, GenerateConfig, TrainConfig


def get_config() -> Config:
  # nanoGPT's CPU shape (4 layers of width 128, rows of 64 characters,
  # batch 12), weight decay on the matrices only and a final learning rate
  # of a tenth of the peak; as many steps as fit in 10 minutes.
  return Config(
      task='language_model',
      model=dataclasses.replace(
          CPU_DECODER, vocab_size=256, d_model=128, d_ff=512, num_heads=4,
          num_decoder_layers=4, positions='learned', activation='gelu',
          max_length=64),
      data=DataConfig(source='text', tokenizer='char', documents='stream',
                      max_length=64, batch_size=12, eval_batch_size=64),
      train=TrainConfig(steps=0, time_limit=10.0, schedule='cosine',
                        learning_rate=2e-3, warmup_steps=100,
                        final_learning_rate_fraction=0.1, adam_b2=0.99,
                        adam_eps=1e-8, weight_decay=0.1,
                        weight_decay_on='matrices', label_smoothing=0.0,
                        grad_clip_norm=1.0, checkpoint_every=2000,
                        log_every=500),
      eval=EvalConfig(every=2000, split='valid',
                      best_metric='bits_per_character', patience=3),
      generate=GenerateConfig(temperature=0.8, top_k=40, max_new_tokens=48),
  )
