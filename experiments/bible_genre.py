"""bible_genre: which of 8 genres a Bible verse's book belongs to, plain cross-entropy: the large genres dominate.

English verses (World English Bible, Debian's sword-text-web) labelled law,
history, wisdom, prophets, gospels, acts, epistles or apocalypse: 17:1
between the largest class (history) and the smallest (apocalypse). Split by
chapter exactly as the translation corpus is, so no test chapter is trained
on. Compare `bible_genre` (plain) and `bible_genre_balanced` on macro-F1
and the minority classes' recall.

  python launch.py --experiment=bible_genre

Measured: not yet (see the README's task table when it is).
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=CPU_ENCODER,
      data=DataConfig(source='bible_genre', max_length=64, batch_size=64,
                      eval_max_length=128),
      train=TrainConfig(class_weights='none', steps=2000,
                        schedule='cosine', learning_rate=1e-3,
                        warmup_steps=100, label_smoothing=0.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=500, split='valid'),
  )
