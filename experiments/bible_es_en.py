"""bible_es_en: Spanish -> English on the Bible (Reina-Valera 1909 -> WEB).

The offline default: the corpus comes from Debian's public-domain SWORD
modules (sword-text-sparv, sword-text-web), read with diatheke; no download.
A small model (d_model 256, 3+3 layers) sized to give recognisable
translations within 15 minutes on a 2-core CPU.

  python launch.py --experiment=bible_es_en --workdir=workdirs/bible_es_en

Measured: see the README ("The default run") for wall time and test BLEU.
"""

from transformer.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=ModelConfig(vocab_size=8000, d_model=256, d_ff=1024, num_heads=4,
                        num_encoder_layers=3, num_decoder_layers=3),
      data=DataConfig(source='bible', direction='es-en', max_length=128,
                      batch_size=32),
      train=TrainConfig(steps=1000, learning_rate=2.0, warmup_steps=400,
                        checkpoint_every=200, log_every=50),
      eval=EvalConfig(every=500, num_examples=200, split='valid'),
  )
