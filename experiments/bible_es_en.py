"""bible_es_en: Spanish -> English on the Bible (Reina-Valera 1909 -> WEB).

The offline default: the corpus comes from Debian's public-domain SWORD
modules (sword-text-sparv, sword-text-web), read with diatheke; no download.
A small model (d_model 256, 3+3 layers, 8k joint vocabulary) sized to give
recognisable translations within 15 minutes on a 2-core CPU: 12 minutes of
training, then about 3 of beam-search evaluation on the test set. Pre-LN (a
deviation from the paper) because it tolerates the high learning rate such
a short run needs.

  python launch.py --experiment=bible_es_en --workdir=workdirs/bible_es_en

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-11-22): 300 steps in
11.6 minutes (1,780 target tokens/s), 14.7 minutes with the beam-4 test
evaluation; test split (1,505 verses) sacreBLEU 12.6, chrF 31.9.
"""

from transformer.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=ModelConfig(vocab_size=8000, d_model=256, d_ff=1024, num_heads=4,
                        num_encoder_layers=3, num_decoder_layers=3,
                        norm_position='pre'),
      data=DataConfig(source='bible', direction='es-en', max_length=128,
                      batch_size=32),
      train=TrainConfig(steps=300, learning_rate=0.5, warmup_steps=100,
                        checkpoint_every=100, log_every=25),
      eval=EvalConfig(every=150, num_examples=64, split='valid'),
  )
