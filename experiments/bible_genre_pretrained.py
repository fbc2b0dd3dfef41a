"""bible_genre_pretrained: `bible_genre` fine-tuned from `bible_mlm`'s
masked-LM encoder, against `bible_genre` from scratch at the same total CPU
time.

The encoder is first pretrained on the Bible's training chapters with
BERT's masked-LM objective (`bible_mlm`, no labels), then this run starts
from its best checkpoint (train.init_from: the encoder's parameters and
the SentencePiece tokenizer; the head is new) and trains on the genre
labels for a 5-minute budget (train.steps=0), keeping the checkpoint with
the best valid macro-F1. The comparison trains `bible_genre` from scratch
for the pretraining's and this run's minutes together, with the same
selection:

  python launch.py --experiment=bible_mlm
  python launch.py --experiment=bible_genre_pretrained
  python launch.py --experiment=bible_genre --workdir=workdirs/bible_genre_scratch \\
      --set=train.steps=0 --set=train.time_limit=15 \\
      --set=eval.every=200 --set=eval.best_metric=macro_f1

Results (2-core CPU): to be measured.
"""

import dataclasses

from experiments import bible_genre
from transformer.config import Config


def get_config() -> Config:
  config = bible_genre.get_config()
  return dataclasses.replace(
      config,
      train=dataclasses.replace(config.train, init_from='workdirs/bible_mlm',
                                steps=0, time_limit=5.0),
      eval=dataclasses.replace(config.eval, every=200,
                               best_metric='macro_f1'),
  )
