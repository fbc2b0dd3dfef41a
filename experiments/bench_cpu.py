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
batches, under TCMalloc (launch.py preloads it), 2026-11-22, two runs:
  train step   809 / 807 ms back to back, 96.4 GFLOP/step, against a
               measured 175 / 177 GFLOP/s matmul peak: MFU 68.2% / 67.4%;
               compile 5.09 / 4.70 s (4.70-5.17 s, median 4.93 s, in
               five runs that day)
  eval step    246 / 251 ms (forward only: MFU 75% / 72%)
  greedy       0.90 s per batch of 32; beam 4 2.35 s: 2.62x / 2.65x
               (random weights, EOS suppressed: outputs run to the limit)
  pipeline     87 batches/s (70x the train step); peak RSS 1.73-1.76 GB
Before dense layers multiplied as one 2-D matmul (transformer/linear.py): 951
ms per step, MFU 61.3%, against 859 ms, MFU 71.0% in a pair of runs. Before TCMalloc (glibc malloc,
--notcmalloc): 969-1037 ms per step, compile 5.1-5.5 s in alternated runs.
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
