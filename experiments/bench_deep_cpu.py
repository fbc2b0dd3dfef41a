"""bench_deep_cpu: a 24-layer language model, for compile time with and
without model.scan_layers (and model.remat's memory) on a CPU.

Not a training recipe: a yardstick for deep models. bench_lm_cpu's shape
(d_model 256, 4 heads, d_ff 1,024, pre-LN, no dropout, float32, a
4,000-piece vocabulary of the English Bible) with 24 decoder layers instead
of 4, on batches of BATCH rows of LENGTH tokens, so that a train step takes
about a second on 2 cores. Unrolled, XLA compiles 24 copies of the layer
(forward and backward); with `--set=model.scan_layers=true` one, inside a
loop. The benchmark (`transformer/benchmark.py`) times both: compile_s,
the train step, the eval step, generation (whose decoding loop is compiled
too: its first call) and XLA's memory analysis of the compiled step.

  python launch.py --experiment=bench_deep_cpu --mode=benchmark --workdir=/tmp/deep_unrolled
  python launch.py --experiment=bench_deep_cpu --mode=benchmark --workdir=/tmp/deep_scanned --set=model.scan_layers=true

What each model.remat keeps, from abstract shapes (nothing allocated or
run): JAX's residuals (activations saved for the backward pass) and XLA's
temporary memory of the step compiled ahead of time:

  python -c "from experiments import bench_deep_cpu as e; from transformer import memory; print(memory.measure_remat_memory(e.get_config()))"

Measured on a 2-core AMD EPYC CPU (KVM VM, `nproc` 2), JAX 0.10.2, under
TCMalloc, real Bible batches (494 real tokens per step of 512 slots), random
weights, 2026-12-01, one run each, on a machine shared with other jobs
(load average 4.3-5.3 on the 2 cores; the matmul peak read 56.5 / 79.6 and
38.7 / 68.5 GFLOP/s in the two runs), so times are noisy:

                   unrolled      scanned    scanned / unrolled
  train compile    19.35 s       6.78 s     0.35
  first step       4.66 s        2.51 s
  train step       1290 ms       1363 ms    1.06 (medians, each waited for)
    back to back   1254 ms       1399 ms    1.12 (MFU 66.1% / 68.9%)
  eval step        375 ms        432 ms     1.15
  greedy, cached   23.3 ms/step  40.5 ms    1.74 (first call 8.46 / 8.36 s)
  XLA temporary    324 MB        411 MB     1.27
  JAX residuals    412 MB        333 MB     0.81
  peak RSS         1.84 GB       1.70 GB

An interleaved re-check in one process (both forms compiled on random
batches, then 10 rounds alternating a train step and a greedy generation
of 112 tokens of each; plain Python, without TCMalloc): compile 18.5 /
7.7 s, train step median 1372 / 1736 ms (1.27x), generation 3.25 / 4.97 s
(1.53x); in every round the scanned step was the slower. So on this CPU
scanning cuts compile time by ~2.5-3x and costs ~10-25% per train step and
~1.5-1.7x per cached decoding step (probably the stacked cache, which the
loop slices and re-stacks every step, where unrolled layers update their
own buffers in place; not profiled).

Memory per model.remat (measure_remat_memory; residuals over the whole
batch, XLA's temporary memory per device):

                   none       full            dots
  unrolled  JAX    412 MB     27 MB (0.07)    128 MB (0.31)
            XLA    324 MB     324 MB (1.00)   324 MB (1.00)
  scanned   JAX    333 MB     27 MB (0.08)    128 MB (0.38)
            XLA    411 MB     112 MB (0.27)   208 MB (0.51)

XLA:CPU drops remat's optimization barriers and merges the recomputation
back into the forward pass, so unrolled layers keep everything whatever
model.remat says; in a scanned stack the loop keeps the backward pass's
recomputation apart and remat takes effect.
"""

import dataclasses

from transformer.config import CPU_DECODER, Config, DataConfig, TrainConfig

LAYERS = 24
BATCH, LENGTH = 4, 128


def get_config() -> Config:
  return Config(
      task='language_model',
      model=dataclasses.replace(CPU_DECODER, num_decoder_layers=LAYERS),
      data=DataConfig(source='bible', language='en', max_length=LENGTH,
                      batch_size=BATCH, eval_batch_size=BATCH),
      train=TrainConfig(label_smoothing=0.0),
  )
