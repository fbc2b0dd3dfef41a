"""Where each parameter lives on the device mesh: logical axis names and the
one table that maps them to mesh axes.

Every parameter dimension has a logical name saying what it is (model.py and
attention.py put them on the initializers with `logical`):

  embed   d_model                  heads   attention heads
  kv      head_dim                 mlp     the feed-forward's d_ff units
  vocab   vocabulary entries       layers  scanned layers (model.scan_layers)

`RULES` maps the names to the axes of the mesh `train.make_mesh` builds:
'data' (batches; parameters too with train.fsdp) and, with
train.model_parallel > 1, 'model'. On 'model' it is Megatron-LM's tensor
parallelism (Shoeybi et al. 2019, sec. 3):

  query/key/value  [embed, heads, kv]  split by heads: every device attends
                                       with whole heads of its own;
  attention out    [heads, kv, embed]  split on its input (heads), so the
                                       heads' outputs never move: one sum
                                       (all-reduce) per attention layer;
  FFN wi           [embed, mlp]        split on its output (columns) ...
  FFN wo           [mlp, embed]        ... and wo on its input (rows): the
                                       hidden units stay where they were
                                       computed, one all-reduce per FFN;
  embedding        [vocab, embed]      split by vocabulary rows; through the
                                       tied output embedding the logits come
                                       out split by vocabulary too.

With train.fsdp the 'embed' dimension is split over 'data' as well (ZeRO-3
style). `jax.jit` inserts every collective; nothing here communicates.

`mesh_spec` applies the table to one array and keeps a split only where it
works: the mesh has the axis with more than one device, the dimension
divides evenly over it (a vocabulary of 37 on 2 devices stays whole), and,
for 'data', train.fsdp is on and the array has at least FSDP_MIN_SIZE
elements (a small array costs more to gather than it saves).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Callable, Iterator, Sequence

from flax import linen as nn
from jax.sharding import Mesh, PartitionSpec as P

DATA_AXIS = 'data'
MODEL_AXIS = 'model'

EMBED, HEADS, KV, MLP, VOCAB, LAYERS = ('embed', 'heads', 'kv', 'mlp',
                                        'vocab', 'layers')

# The one table: logical axis name -> mesh axis (None: never split). flax's
# `nn.logical_to_mesh_axes` reads it, first rule first, never giving one
# mesh axis to two dimensions of an array.
RULES: tuple[tuple[str, str | None], ...] = (
    (HEADS, MODEL_AXIS),
    (MLP, MODEL_AXIS),
    (VOCAB, MODEL_AXIS),
    (EMBED, DATA_AXIS),  # train.fsdp only
    (KV, None),
    (LAYERS, None),
)

# Arrays with fewer elements are never split over 'data' (FSDP).
FSDP_MIN_SIZE = 2**14

# ---------------------------------------------------------------------------
# Naming the parameters.
# ---------------------------------------------------------------------------

_BOXING = contextvars.ContextVar('transformer_partitioning_boxing',
                                 default=False)


@contextlib.contextmanager
def axis_names() -> Iterator[None]:
  """Inside, `logical` initializers return flax `LogicallyPartitioned` boxes.

  Outside, they return plain arrays, so `model.init` gives what it always
  gave (tests and tools index the parameters as arrays). `train` initialises
  under this context inside `jax.eval_shape` to read the names.
  """
  token = _BOXING.set(True)
  try:
    yield
  finally:
    _BOXING.reset(token)


def logical(init: Callable[..., Any], *names: str | None
            ) -> Callable[..., Any]:
  """`init`, naming the dimensions of what it makes (inside `axis_names`)."""
  boxed = nn.with_logical_partitioning(init, names)

  def initializer(*args, **kwargs):
    return (boxed if _BOXING.get() else init)(*args, **kwargs)
  return initializer


# ---------------------------------------------------------------------------
# Placing them.
# ---------------------------------------------------------------------------


def axis_size(mesh: Mesh, axis: str) -> int:
  """Devices along `axis`; 1 if the mesh has no such axis."""
  return dict(mesh.shape).get(axis, 1)


def fsdp_spec(shape: tuple[int, ...], mesh_size: int,
              min_size: int = FSDP_MIN_SIZE) -> P:
  """Split the largest dimension that the mesh divides; small arrays stay whole.

  For arrays without logical names (a task whose model names nothing).
  """
  if mesh_size == 1 or math.prod(shape) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % mesh_size == 0:
      spec = [None] * len(shape)
      spec[dim] = DATA_AXIS
      return P(*spec)
  return P()


def mesh_spec(names: Sequence[str | None], shape: tuple[int, ...],
              mesh: Mesh, *, fsdp: bool) -> P:
  """The PartitionSpec on `mesh` of an array with logical axis `names`.

  An array without names (`P()` from `nn.get_partition_spec`: the step, a
  counter, or an unnamed parameter) is replicated, or with `fsdp` split as
  `fsdp_spec` says.
  """
  if len(names) != len(shape):
    return fsdp_spec(shape, axis_size(mesh, DATA_AXIS)) if fsdp else P()
  large = math.prod(shape) >= FSDP_MIN_SIZE

  def usable(axis, size: int) -> bool:
    if axis is None or axis_size(mesh, axis) == 1:
      return False
    if axis == DATA_AXIS and not (fsdp and large):
      return False
    return size % axis_size(mesh, axis) == 0

  wanted = nn.logical_to_mesh_axes(tuple(names), RULES)
  spec = [axis if usable(axis, size) else None
          for axis, size in zip(wanted, shape)]
  while spec and spec[-1] is None:  # P(None, None) -> P(): one spelling
    spec.pop()
  return P(*spec)
