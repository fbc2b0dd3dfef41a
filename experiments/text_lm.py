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
2,000 steps of 32 x 256 characters, at most 15 minutes.

Measured: filled in from the run below.
"""

import dataclasses

from transformer.config import CPU_DECODER, Config, DataConfig, EvalConfig, GenerateConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=dataclasses.replace(CPU_DECODER, vocab_size=256),
      data=DataConfig(source='text', tokenizer='char', documents='stream',
                      max_length=256, batch_size=32, eval_batch_size=32),
      train=TrainConfig(steps=2000, schedule='cosine', learning_rate=2e-3,
                        warmup_steps=100, label_smoothing=0.0,
                        grad_clip_norm=1.0, checkpoint_every=500,
                        log_every=100, time_limit=15.0),
      eval=EvalConfig(every=500, split='valid'),
      generate=GenerateConfig(temperature=0.8, top_k=40, max_new_tokens=300),
  )
