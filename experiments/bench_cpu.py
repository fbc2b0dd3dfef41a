"""bench_cpu: the fixed shape that `--mode=benchmark` is measured on.

Not a training recipe: a stable yardstick for speed. The model is the
`bible_es_en` one (shared vocabulary 8,000, d_model 256, 4 heads, d_ff 1,024,
3 encoder + 3 decoder layers, float32, dropout 0.1, label smoothing 0.1) on
batches of 32 rows of 64 source and 64 target tokens. The benchmark times the
compiled train step (compile time, median and spread), the eval step, greedy
and beam-4 decoding of 32 sentences, and the input pipeline alone; it reports
model FLOPs per step, MFU and peak memory (`transformer/benchmark.py`). Real
Bible batches are used when the corpus is prepared, random tokens of the same
shape otherwise (the output says which).

  python launch.py --experiment=bench_cpu --mode=benchmark

Writes WORKDIR/benchmark.json (default workdirs/bench_cpu).

Measured: TODO (table to be filled in from a quiet machine).
"""

from transformer.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      model=ModelConfig(vocab_size=8000, d_model=256, d_ff=1024, num_heads=4,
                        num_encoder_layers=3, num_decoder_layers=3,
                        dropout_rate=0.1, dtype='float32'),
      data=DataConfig(source='bible', direction='es-en', max_length=64,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(label_smoothing=0.1),
      eval=EvalConfig(beam_size=4),
  )
