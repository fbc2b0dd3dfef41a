"""The benchmark's peak FLOP/s, model FLOPs utilisation and XLA's FLOP count.

Peak FLOP/s: on GPU and TPU the chip's published dense peak for the compute
dtype (`PEAK_FLOPS`, by `device_kind`) times the number of devices; an
unknown chip gets MFU None with a note. On CPU there is no published
number: the peak is the throughput of a large jitted matrix multiplication
in the model's dtype (CPU_MATMUL_SIZE square, the median of MATMUL_REPEATS),
measured in the same run before and after the train steps, the larger of
the two (`cpu_peak`). MFU = model FLOPs / step time / peak (`mfu`).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

from transformer import measure

CPU_MATMUL_SIZE = 2048
ACCELERATOR_MATMUL_SIZE = 8192
MATMUL_REPEATS = 5

# Published dense (no sparsity) peak FLOP/s per chip.
#   'bf16': bfloat16 inputs on the matrix units (tensor cores, MXUs).
#   'tf32': float32 inputs at JAX's default matmul precision on NVIDIA GPUs,
#           which uses TF32 tensor cores ("By default, JAX leans toward speed:
#           float32 dot products may be computed with reduced-precision
#           arithmetic internally (bfloat16 on TPU, TF32 on recent GPUs)",
#           https://docs.jax.dev/en/latest/201/precision.html).
#   'fp32': true float32 (jax_default_matmul_precision='highest'): on GPUs
#           the non-tensor FP32 rate.
# TPUs publish only bf16; float32 matmuls at default precision run as bf16
# passes, so bf16 is the peak for both dtypes there.
# Matched in order against jax.devices()[0].device_kind, lower-cased.
PEAK_FLOPS: tuple[tuple[str, str, dict[str, float], str], ...] = (
    # NVIDIA H100 datasheet / Hopper whitepaper (the datasheet's tensor
    # numbers are with sparsity: halved here). SXM5: BF16 989.4, TF32 494.7,
    # FP32 66.9 TFLOPS (132 SMs at 1.83 GHz; see also
    # https://glennklockwood.com/garden/processors/h100). PCIe: BF16 756,
    # TF32 378, FP32 51 TFLOPS.
    ('h100', 'pcie', {'bf16': 756e12, 'tf32': 378e12, 'fp32': 51.2e12},
     'NVIDIA H100 PCIe datasheet (dense)'),
    ('h100', '', {'bf16': 989.4e12, 'tf32': 494.7e12, 'fp32': 66.9e12},
     'NVIDIA H100 SXM5 datasheet (dense)'),
    # H200: the same GH100 compute as H100 SXM with more, faster HBM3e
    # (NVIDIA H200 datasheet: 989 TFLOPS BF16 dense, 67 TFLOPS FP32).
    ('h200', '', {'bf16': 989.4e12, 'tf32': 494.7e12, 'fp32': 66.9e12},
     'NVIDIA H200 datasheet (dense; = H100 SXM)'),
    # NVIDIA A100 datasheet: BF16 312, TF32 156, FP32 19.5 TFLOPS (SXM and
    # PCIe alike).
    ('a100', '', {'bf16': 312e12, 'tf32': 156e12, 'fp32': 19.5e12},
     'NVIDIA A100 datasheet (dense)'),
    # Cloud TPU system architecture pages (https://cloud.google.com/tpu/docs/
    # v4, v5e, v5p, v6e): peak bf16 compute per chip. device_kind is
    # 'TPU v4', 'TPU v5 lite' (v5e), 'TPU v5' / 'TPU v5p', 'TPU v6 lite' (v6e).
    ('tpu v5 lite', '', {'bf16': 197e12}, 'Cloud TPU v5e docs'),
    ('tpu v5e', '', {'bf16': 197e12}, 'Cloud TPU v5e docs'),
    ('tpu v6 lite', '', {'bf16': 918e12}, 'Cloud TPU v6e (Trillium) docs'),
    ('tpu v6e', '', {'bf16': 918e12}, 'Cloud TPU v6e (Trillium) docs'),
    ('tpu v5', '', {'bf16': 459e12}, 'Cloud TPU v5p docs'),  # 'TPU v5', 'v5p'
    ('tpu v4', '', {'bf16': 275e12}, 'Cloud TPU v4 docs'),
)


def xla_flops(compiled) -> float | None:
  """XLA's own FLOP count of a compiled computation, if it gives one."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # not every backend implements it
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def _matmul_precision_kind() -> str:
  precision = str(jax.config.jax_default_matmul_precision or '').lower()
  if precision in ('highest', 'float32', 'f32_f32_f32'):
    return 'fp32'
  return 'tf32'


def published_peak(device_kind: str, dtype: str
                   ) -> tuple[float | None, str]:
  """(peak FLOP/s of one chip, where it comes from), or (None, why not)."""
  kind = device_kind.lower()
  for name, variant, peaks, source in PEAK_FLOPS:
    if name in kind and variant in kind:
      if 'tf32' not in peaks:  # TPU: bf16 is the only published rate
        return peaks['bf16'], f'{source}: bf16 {peaks["bf16"] / 1e12:g} TFLOP/s'
      key = 'bf16' if dtype == 'bfloat16' else _matmul_precision_kind()
      return peaks[key], f'{source}: {key} {peaks[key] / 1e12:g} TFLOP/s'
  return None, (f'no published peak for device_kind {device_kind!r} in '
                'peak.PEAK_FLOPS: MFU not computed')


def measure_matmul(size: int, dtype: str, repeats: int = MATMUL_REPEATS
                   ) -> float:
  """FLOP/s of a jitted [size, size] @ [size, size] matmul: median of runs."""
  matmul = jax.jit(jnp.matmul)
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  jax.block_until_ready(matmul(a, b))  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - start)
  return 2.0 * size**3 / statistics.median(times)


def cpu_matmul_before(device, dtype: str) -> float | None:
  """On CPU, the matmul FLOP/s measured before the train steps (the peak is
  the larger of this and the one after them); None on GPU/TPU."""
  if device.platform != 'cpu':
    return None
  return measure_matmul(CPU_MATMUL_SIZE, dtype)


def cpu_peak(dtype: str, before: float, after: float, processes: int
             ) -> dict[str, Any]:
  """Peak keys on CPU from the matmul FLOP/s measured before and after the
  train steps: the larger counts, so that a slow moment of a shared machine
  during one measurement cannot inflate MFU."""
  measured = max(before, after)
  size = f'{CPU_MATMUL_SIZE}x{CPU_MATMUL_SIZE}'
  return {
      'matmul_flops_per_s': measured,
      'matmul_flops_per_s_before_after': [before, after],
      'peak_flops_per_s': measured * processes,
      'peak_source': (
          f'measured: jitted {size} @ {size} {dtype} matmul, median of '
          f'{MATMUL_REPEATS}, before and after the train steps in this run, '
          f'the larger ({measure.si(before)} / {measure.si(after)}; CPUs '
          'have no published peak)'),
  }


def accelerator_peak(device_kind: str, dtype: str, num_devices: int,
                     matmul_flops_per_s: float) -> dict[str, Any]:
  """Peak keys on GPU/TPU: the published per-chip peak times the devices;
  the measured matmul rate is reported beside it."""
  per_chip, source = published_peak(device_kind, dtype)
  peak = None if per_chip is None else per_chip * num_devices
  if peak is not None and num_devices > 1:
    source += f' x {num_devices} devices'
  return {'matmul_flops_per_s': matmul_flops_per_s,
          'peak_flops_per_s': peak, 'peak_source': source}


def measure_peak(device, dtype: str, num_devices: int,
                 matmul_before: float | None) -> dict[str, Any]:
  """Peak FLOP/s keys: measured on CPU (again, to pair with `matmul_before`),
  published on GPU/TPU."""
  if device.platform == 'cpu':
    return cpu_peak(dtype, matmul_before,
                    measure_matmul(CPU_MATMUL_SIZE, dtype),
                    jax.process_count())
  return accelerator_peak(device.device_kind, dtype, num_devices,
                          measure_matmul(ACCELERATOR_MATMUL_SIZE, dtype))


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
  """Model FLOPs utilisation: achieved FLOP/s over peak, None without one."""
  return None if peak is None else flops / seconds / peak
