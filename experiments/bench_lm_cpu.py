"""bench_lm_cpu: the fixed language-model shape for `--mode=benchmark`.

Not a training recipe: a stable yardstick for the speed of the decoder-only
language model (task=language_model, `LanguageModel`): issue 15's shape,
d_model 256, 4 heads, d_ff 1,024, 4 decoder layers, float32, on batches of
32 rows of 256 tokens, with the rest as `bible_lm` trains it (pre-LN, no
dropout, tied embeddings, sinusoidal positions, a 4,000-piece SentencePiece
vocabulary of the English Bible, trained into the workdir on the first
run; chapters packed into rows as training packs them). The benchmark
times the compiled train step (compile time, median and spread, back to
back), the eval step, cached generation of 32 prompts (16 tokens of test
chapters + 240 new = 256 positions of context), greedy and sampled
(temperature 1, top-p 0.9), and one new token without the cache (the full
256-token prefix re-run); it reports tokens/s, the decoder-only model's
analytic FLOPs per step (QKVO projections, the full 256 x 256 attention
scores and values as computed, though causal masking hides half, the FFN,
the tied output projection; 3x forward for a train step), MFU, the
no-cache / cached time per new token and peak memory
(`transformer/benchmark.py`). Without the Bible corpus it runs on random
tokens of the same shape (the output says which).

  python launch.py --experiment=bench_lm_cpu --mode=benchmark

Writes WORKDIR/benchmark.json (default workdirs/bench_lm_cpu).

Measured once on a 2-core AMD EPYC CPU (KVM VM, `nproc` 2, family 25
model 1, 64 KiB L1d), JAX 0.10.2, under TCMalloc, real Bible batches
(8,006 real tokens per step of 8,192 slots), random weights, 2026-12-01.
The CPU was shared with other jobs the whole time (load average 4.5-5.4 on
the 2 cores): the matmul peak read 72.6 / 72.2 GFLOP/s, against 175-177
for bench_cpu on a quiet day, so every time below is noisy and slower than
the machine can do; MFU, taken against the peak measured in the same run,
suffers less:
  train step   4890 ms median each waited for (IQR 4489-5331 ms, 4126-8885
               ms), 4747 ms back to back; 231 GFLOP/step (XLA counts 232):
               48.6 GFLOP/s, MFU 67.0%; 1,686 tokens/s; compile 9.3 s
  eval step    1589 ms (forward only: 5,037 tokens/s, MFU 66.7%)
  generation   32 prompts x 240 new tokens, cached: greedy 4.10 s per batch
               (1,875 new tokens/s, 16.0 ms per step), sampled (temperature
               1, top-p 0.9) 22.1 s (347 tokens/s, 86.3 ms per step: the
               sampling costs ~4x the model's step; timed alone,
               sampling.sample of [32, 4000] logits takes 57 ms, 44 ms of
               it the stable argsort that top-p sorts the rows with)
  no cache     2759 ms per new token of the 32 rows with the 256-token
               prefix re-run (12 tokens/s): 172x the greedy cached step
               (target: at least 10x). That time read high under the load:
               an interleaved re-check in a separate process just after
               gave 1.63 s against 1.79 s for the eval step (the same
               forward pass plus the loss), which makes it ~100x.
  memory       peak RSS 3.63 GB
"""

from transformer.config import CPU_DECODER, Config, DataConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='language_model',
      model=CPU_DECODER,  # float32
      data=DataConfig(source='bible', language='en', max_length=256,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(label_smoothing=0.0),
  )
