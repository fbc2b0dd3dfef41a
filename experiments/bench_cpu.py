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

Measured on a quiet 2-core AMD EPYC CPU, JAX 0.10.2 (real Bible batches):
train step 1,031 ms median (IQR 1,021-1,034 ms), 1,773 target tokens/s,
96.4 GFLOP/step at 93.6 GFLOP/s against a measured 172 GFLOP/s matmul peak:
MFU 54.5%; compile 5.45 s; eval step 252 ms; greedy 1.35 s and beam 4
4.92 s per batch of 32 (3.66x; random weights, outputs run to the limit);
input pipeline 85.8 batches/s (88x the train step); peak RSS 1.37 GB.
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
