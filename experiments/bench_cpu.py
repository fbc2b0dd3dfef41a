"""bench_cpu: the fixed shape that `--mode=benchmark` is measured on.

Not a training recipe: a stable yardstick for speed. The shape is the
`bible_es_en` model's (shared vocabulary 8,000, d_model 256, 4 heads, d_ff
1,024, 3 encoder + 3 decoder layers, float32, dropout 0.1, label smoothing
0.1), with the paper's post-LN, on batches of 32 rows of 64 source and 64
target tokens. The benchmark times the compiled train step (compile time,
median and spread), the eval step, greedy and beam-4 decoding of 32
sentences, and the input pipeline alone; it reports model FLOPs per step, MFU
and peak memory (`transformer/benchmark.py`). Real Bible batches are used
when the corpus is prepared, random tokens of the same shape otherwise (the
output says which).

  python launch.py --experiment=bench_cpu --mode=benchmark

Writes WORKDIR/benchmark.json (default workdirs/bench_cpu).

Measured on a 2-core AMD EPYC CPU (shared VM), JAX 0.10.2, real Bible
batches, under TCMalloc (launch.py preloads it), 2026-11-22, one run:
  train step   920 ms back to back (924 ms median waited for, IQR 916-937
               ms), 96.4 GFLOP/step, 105 GFLOP/s against a measured 173
               GFLOP/s matmul peak: MFU 60.8%; compile 5.0 s
  eval step    250 ms (forward only: MFU 74%)
  greedy       0.96 s per batch of 32; beam 4 2.53 s: 2.64x
               (random weights, EOS suppressed: outputs run to the limit)
  pipeline     86 batches/s (79x the train step); peak RSS 1.78 GB
A second run: 937 ms, MFU 63.8% of 161 GFLOP/s, compile 6.0 s (busy
machine). Under glibc malloc (--notcmalloc) the same code took 969-1037 ms
per step and compiled in 5.1-5.5 s in alternated runs; over two days before
TCMalloc: step 905-1048 ms (MFU 57-60%), compile 5.1-6.1 s.
Before the fused dropout hash and head-major decoding caches (jax.random
dropout bits, [B, L, N, H] caches): step 976-1031 ms (MFU 54.5-55%),
compile 5.5-5.6 s, greedy 1.3 s, beam 4 4.7-4.9 s (3.6-3.7x).
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
