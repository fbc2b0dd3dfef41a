"""bench_classify_cpu: the fixed classification shape for `--mode=benchmark`.

Not a training recipe: a stable yardstick for the speed of the
classification task (`EncoderClassifier`: the Transformer's encoder, mean
pooling, a linear head). The encoder has `bench_cpu`'s widths (vocabulary
8,000, d_model 256, 4 heads, d_ff 1,024, float32, the paper's post-LN,
dropout 0.1 as in training) and 4 layers, on batches of 64 rows of 128
tokens, plain cross-entropy (label smoothing 0). The benchmark builds a
4-class task itself (`tasks.for_benchmark`: no workdir, labels or data
needed) and feeds it random full rows (128 tokens each, no padding, so every
slot is real work) with random labels. It times the compiled train step
(compile time, median and spread, back to back), the eval step (forward
only), and reports examples/s, tokens/s, the encoder's analytic FLOPs per
step (QKVO projections, attention scores and values, the FFN, the head; 3x
forward for a train step: 167.5 GFLOP, XLA counts 169.8), MFU and peak
memory (`transformer/benchmark.py`). There is no decoding and no input
pipeline measurement for this task.

  python launch.py --experiment=bench_classify_cpu --mode=benchmark

Writes WORKDIR/benchmark.json (default workdirs/bench_classify_cpu).
data.source='toy' only so that `--mode=train` would run; the benchmark does
not read data.

Measured on a 2-core AMD EPYC CPU (shared VM), JAX 0.10.2, under TCMalloc,
2026-12-01, five runs back to back. The machine was busy with other work the
whole time (load average 4-8 on the 2 cores): the matmul peak read 39-66
GFLOP/s, against 175-177 for bench_cpu on a quiet day, and every number
below moved with the contention, so take the medians as rough:
  train step   7730 / 6869 / 4294 / 4636 / 3974 ms back to back (median
               4636 ms), against a measured 39.0 / 65.7 / 58.6 / 58.7 / 56.8
               GFLOP/s matmul peak: MFU 55.6% / 37.1% / 66.5% / 61.5% /
               74.2%, median 61.5% (of the first three alone: 55.6%);
               8.3 / 9.3 / 14.9 / 13.8 / 16.1 examples/s (median 13.8,
               1,767 tokens/s); compile 18.3 / 26.7 / 8.7 / 7.3 / 7.7 s
  eval step    2718 / 1686 / 1580 / 1355 / 1198 ms (forward only: MFU 52.7% /
               50.4% / 60.3% / 70.2% / 82.1%, median 60.3%; median 40.5
               examples/s)
  memory       peak RSS 2.59-2.60 GB
Where the train step goes (jax.profiler trace of 3 steps, at a time the
matmul peak read ~55-60 GFLOP/s; op times summed, 4.35 s per step): the FFN
matmuls 41% (103 GFLOP with their weight gradients, ~58 GFLOP/s, the
machine's matmul rate), the Q/K/V/O projections 21% (51.5 GFLOP, ~55
GFLOP/s); attention's score and value products (128 x 64 x 128 per head,
forward and backward) 16% for 12.9 GFLOP (7.7% of the model FLOPs) at ~18
GFLOP/s, its layout copies and transposes between [B, L, N, H] and
head-major 8%, its softmax and masks 5%; other elementwise work (ReLU,
dropout, LayerNorm, embedding, AdamW) 7%. Attention, under 8% of the FLOPs,
takes ~30% of the step: at 128 tokens it weighs twice what it does at
bench_cpu's 64.
"""

from transformer.config import Config, DataConfig, ModelConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=ModelConfig(vocab_size=8000, d_model=256, d_ff=1024, num_heads=4,
                        num_encoder_layers=4, num_decoder_layers=0,
                        dropout_rate=0.1, dtype='float32', max_length=128),
      data=DataConfig(source='toy', max_length=128, batch_size=64),
      train=TrainConfig(label_smoothing=0.0),
  )
