"""Decoding: greedy search and beam search over the key/value cache.

Both searches encode the source once, then run the decoder one position per
step (`Transformer.decode(..., decode=True)`): each layer appends the new
key/value to its self-attention cache and reuses the encoder keys/values
projected once, so a step costs one position, not the whole prefix. The loop is
a `jax.lax.while_loop` over static shapes (no host code, batch dimension
first), and stops as soon as no sentence can change any more.

Output length. A sentence of n source tokens gets at most n + max_extra_length
output tokens, EOS included: at the last allowed position EOS is forced. The
output buffer has the static length L = S + max_extra_length (S: the padded
source length). Outputs exclude BOS, end with EOS and hold PAD after it. PAD
and BOS are never generated.

Greedy search takes the most probable token at each step.

Beam search (tensor2tensor's, which the paper used) keeps per sentence
  - `beam_size` *alive* hypotheses (no EOS yet), ranked by log P(y_1..y_t | x);
  - `beam_size` *finished* ones, ranked by the length-normalised score
      s(Y) = log P(Y | x) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha,
    the GNMT length penalty (Wu et al., 2016, "Google's Neural Machine
    Translation System", sec. 7; its coverage penalty is not used). |Y| counts
    the tokens including EOS, and log P(Y | x) sums the log-probabilities of
    all of them (a forced EOS counts with its model probability). The paper
    uses beam 4 and alpha = 0.6 (sec. 6.1); alpha = 0 ranks by log P alone.
Each step extends every alive hypothesis by every token and keeps the 2*beam
best candidates by log P; at most beam of them end in EOS, so beam alive ones
remain. A candidate ending in EOS is finished only if it ranks among the first
beam candidates, i.e. it would have entered a beam of that width (as in
fairseq; tensor2tensor finishes those among all 2*beam). So beam_size=1 with
alpha=0 is exactly greedy search. A sentence is done when its
worst finished score is at least the best score an alive hypothesis could
still reach: log P only falls as tokens are added, so that is at most
log P(alive) / (the largest lp over the lengths still allowed). The early stop
therefore never changes the result.

Speed.
  - The self-attention cache starts at 32 positions and doubles as decoding
    goes on (a new while loop per size): attention reads the whole buffer
    every step, so early steps should not pay for L positions.
  - Caches are head-major, [rows, heads, positions, head_dim]: the layout the
    score and value products read, so no step transposes them. With
    model.scan_layers each holds all layers: [layers, rows, heads,
    positions, head_dim] (`_row_axis`).
  - Alive hypothesis j of sentence b lives in row b * beam + j of the
    decoder's batch. The source is encoded once per sentence, and its
    cross-attention keys/values are cached once per sentence: the beams of a
    sentence attend to that one row as `beam` query positions
    (`attention.cached_attention`), and it never moves.
  - A new hypothesis takes over its parent's row where it can, so only rows
    whose parent has several children are copied (typically about one per
    sentence and step, instead of gathering all rows of the self-attention
    cache). With several devices a batched gather of all rows is used
    instead: XLA partitions it along a sharded batch, while copies at
    data-dependent rows would make it gather the whole cache on every device.
  - The 2*beam best of beam * vocab candidates are found in two top_k passes,
    per hypothesis and then over those, which is cheaper than one; the first
    reads the logits (they rank a hypothesis' tokens as log P does).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import traverse_util

from transformer.config import BOS_ID, EOS_ID, PAD_ID, ModelConfig
from transformer.model import Transformer

Array = jax.Array
PyTree = Any
State = dict[str, Any]

NEG_INF = -jnp.inf
FIRST_CACHE_LENGTH = 32  # self-attention cache positions; doubled when full
COPY_CHUNK = 16  # beam search: cache rows copied per gather/scatter
TOP_K_BLOCK = 32  # beam search: entries per block of `top_k_by_blocks`


def length_penalty(length: Array | int, alpha: Array | float) -> Array:
  """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016, sec. 7)."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def length_limits(inputs: Array, max_extra_length: int) -> Array:
  """[B] most output tokens (EOS included) per sentence: its length + extra."""
  return jnp.sum(inputs != PAD_ID, axis=1) + max_extra_length


def greedy_decode(params: PyTree, config: ModelConfig, inputs: Array, *,
                  max_extra_length: int = 50) -> Array:
  """The most probable token at each step.

  Args:
    params: the Transformer's parameters.
    config: its ModelConfig.
    inputs: [B, S] int32 source ids, PAD after each sentence.
    max_extra_length: outputs hold at most (source length + this) tokens.
  Returns:
    [B, S + max_extra_length] int32 tokens: no BOS, EOS, then PAD.
  """
  return _greedy_search(params, config, inputs, max_extra_length)[0]


def beam_search(params: PyTree, config: ModelConfig, inputs: Array, *,
                beam_size: int = 4, length_penalty: float = 0.6,
                max_extra_length: int = 50) -> tuple[Array, Array]:
  """Beam search with the GNMT length penalty (see the module docstring).

  Args:
    params, config, inputs, max_extra_length: as for `greedy_decode`.
    beam_size: hypotheses kept per sentence, alive and finished each.
    length_penalty: alpha in lp(Y) = ((5 + |Y|) / 6) ** alpha.
  Returns:
    sequences: [B, beam_size, S + max_extra_length] int32, best first: no
      BOS, EOS, then PAD.
    scores: [B, beam_size] float32, log P(Y | x) / lp(Y). -inf marks an empty
      slot (an all-PAD sequence) when fewer outputs than beam_size exist.
  """
  return _beam_search(params, config, inputs, length_penalty, beam_size,
                      max_extra_length)[:2]


# ---------------------------------------------------------------------------
# Shared pieces: the cache, one decoder step, the loop.
# ---------------------------------------------------------------------------


def _check(config: ModelConfig, inputs: Array, max_extra_length: int) -> int:
  """Validates the static arguments; returns the output length L."""
  if inputs.ndim != 2:
    raise ValueError(f'inputs must be [batch, length], got {inputs.shape}')
  if max_extra_length < 1:
    raise ValueError('max_extra_length must be >= 1 (room for EOS), got '
                     f'{max_extra_length}')
  length = inputs.shape[1] + max_extra_length
  if config.positions == 'learned' and length > config.max_length:
    raise ValueError(f'decoding {length} positions needs model.max_length >= '
                     f'{length} with learned positions, got '
                     f'{config.max_length}')
  return length


def _cache_sizes(length: int) -> list[int]:
  """Self-attention cache lengths to decode `length` steps: 32, 64, ..., L."""
  sizes = [min(FIRST_CACHE_LENGTH, length)]
  while sizes[-1] < length:
    sizes.append(min(2 * sizes[-1], length))
  return sizes


def _is_encoder_cache(path: tuple[str, ...]) -> bool:
  return path[-1] in ('encoder_key', 'encoder_value')


def _is_cache_index(path: tuple[str, ...]) -> bool:
  return path[-1] == 'cache_index'


def _row_axis(x: Array) -> int:
  """The rows' axis of a self-attention buffer: 0 in [rows, heads,
  positions, head_dim], 1 with model.scan_layers, whose caches hold all
  layers stacked: [layers, rows, heads, positions, head_dim]."""
  return x.ndim - 4


def _init_cache(model: Transformer, params: PyTree, inputs: Array,
                size: int, group: int = 1) -> tuple[dict, dict, Array]:
  """Encodes `inputs`; returns (self-attention cache, encoder cache, encoded).

  Both caches are flat {path: array} dicts. The self-attention part
  ([B * group, heads, size, head_dim]) changes every step (the loop carries
  it); the encoder part ([B, heads, S, head_dim]) never does.
  """
  encoded = model.apply({'params': params}, inputs, method=Transformer.encode)
  _, variables = model.apply({'params': params}, encoded, inputs, size, group,
                             method=Transformer.init_cache, mutable=['cache'])
  flat = traverse_util.flatten_dict(variables['cache'])
  self_cache = {k: v for k, v in flat.items() if not _is_encoder_cache(k)}
  encoder_cache = {k: v for k, v in flat.items() if _is_encoder_cache(k)}
  return self_cache, encoder_cache, encoded


def _grow_cache(cache: dict, old_size: int, new_size: int) -> dict:
  """Pads the self-attention buffers [(layers,) rows, heads, positions,
  head_dim] from `old_size` to `new_size` positions; attention masks the
  unwritten ones."""
  def grow(x):
    if x.ndim not in (4, 5) or x.shape[-2] != old_size:
      raise ValueError(f'expected a [(layers,) rows, heads, {old_size} '
                       f'positions, head_dim] self-attention cache, got '
                       f'{x.shape}')
    padding = [(0, 0)] * x.ndim
    padding[-2] = (0, new_size - old_size)
    return jnp.pad(x, padding)
  return {k: v if _is_cache_index(k) else grow(v) for k, v in cache.items()}


def _decode_step(model: Transformer, params: PyTree, self_cache: dict,
                 encoder_cache: dict, encoded: Array, inputs: Array,
                 tokens: Array, step: Array) -> tuple[Array, dict]:
  """Feeds `tokens` [rows] at position `step`; returns the next-token logits
  [rows, vocab] (float32) and the updated self-attention cache. `inputs` and
  `encoded` have one row per sentence; rows may be a multiple of that."""
  cache = traverse_util.unflatten_dict({**self_cache, **encoder_cache})
  positions = jnp.full((tokens.shape[0], 1), step, jnp.int32)
  # `encoded` is not read: cross-attention uses its cache (XLA drops it).
  logits, variables = model.apply(
      {'params': params, 'cache': cache}, encoded, inputs, tokens[:, None],
      positions, decode=True, mutable=['cache'], method=Transformer.decode)
  flat = traverse_util.flatten_dict(variables['cache'])
  return logits[:, 0], {k: flat[k] for k in self_cache}


def _allowed_tokens(vocab_size: int, step: Array, limits: Array) -> Array:
  """[B, vocab] True where a token may come next: never PAD or BOS, and only
  EOS at a sentence's last allowed position."""
  vocab = jnp.arange(vocab_size)
  ordinary = (vocab != PAD_ID) & (vocab != BOS_ID)
  last = (step >= limits - 1)[:, None]  # [B, 1]
  return jnp.where(last, vocab == EOS_ID, ordinary)


def _decode_loop(body: Callable[[State], State], state: State,
                 length: int) -> State:
  """Runs `body` until every sentence is done, growing the cache as it fills.

  `state` holds 'step', 'cache' (self-attention) and 'done' ([B] bool).
  """
  sizes = _cache_sizes(length)
  for i, size in enumerate(sizes):
    if i:
      state = {**state, 'cache': _grow_cache(state['cache'], sizes[i - 1],
                                             size)}
    state = jax.lax.while_loop(
        lambda s, size=size: (s['step'] < size) & ~jnp.all(s['done']), body,
        state)
  return state


# ---------------------------------------------------------------------------
# Greedy search.
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=('config', 'max_extra_length'))
def _greedy_search(params: PyTree, config: ModelConfig, inputs: Array,
                   max_extra_length: int) -> tuple[Array, Array]:
  """`greedy_decode`, plus the number of decoder steps run."""
  length = _check(config, inputs, max_extra_length)
  model = Transformer(config)
  batch = inputs.shape[0]
  self_cache, encoder_cache, encoded = _init_cache(
      model, params, inputs, _cache_sizes(length)[0])
  limits = length_limits(inputs, max_extra_length)

  def body(state: State) -> State:
    step, done = state['step'], state['done']
    logits, cache = _decode_step(model, params, state['cache'], encoder_cache,
                                 encoded, inputs, state['previous'], step)
    allowed = _allowed_tokens(config.vocab_size, step, limits)
    token = jnp.argmax(jnp.where(allowed, logits, NEG_INF), axis=-1)
    token = jnp.where(done, PAD_ID, token).astype(jnp.int32)
    tokens = jax.lax.dynamic_update_slice(state['tokens'], token[:, None],
                                          (0, step))
    return dict(step=step + 1, cache=cache, done=done | (token == EOS_ID),
                previous=token, tokens=tokens)

  state = _decode_loop(body, dict(
      step=jnp.array(0, jnp.int32),
      cache=self_cache,
      done=jnp.zeros((batch,), bool),
      previous=jnp.full((batch,), BOS_ID, jnp.int32),
      tokens=jnp.full((batch, length), PAD_ID, jnp.int32)), length)
  return state['tokens'], state['step']


# ---------------------------------------------------------------------------
# Beam search.
# ---------------------------------------------------------------------------


def top_k_by_blocks(x: Array, k: int, block: int = TOP_K_BLOCK
                    ) -> tuple[Array, Array]:
  """`jax.lax.top_k` over the last axis, exactly, touching most of x once.

  XLA's CPU top_k is a single-threaded selection over every element; over
  the beam's [B, beam, vocab] log-probabilities it cost about as much as a
  decoder layer. Here a vectorised max per block of `block` entries comes
  first: the k largest entries lie in the k blocks with the largest maxima
  (a block holding one of them has a maximum at least as large, itself
  among the k largest), so top_k then runs over k * block candidates only.
  The chosen blocks are taken in index order, so ties resolve to the lower
  index, as in `jax.lax.top_k` (when fewer than k entries are finite, the
  indices of the -inf ones may differ; beam search never uses those).

  Args:
    x: [..., n] values; k <= n.
  Returns:
    ([..., k] values, [..., k] int32 indices into the last axis).
  """
  n = x.shape[-1]
  blocks = -(-n // block)
  if blocks <= k:
    return jax.lax.top_k(x, k)
  padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, blocks * block - n)],
                   constant_values=-jnp.inf)
  grouped = padded.reshape(*x.shape[:-1], blocks, block)
  _, chosen = jax.lax.top_k(jnp.max(grouped, axis=-1), k)  # [..., k]
  chosen = jnp.sort(chosen, axis=-1)
  candidates = jnp.take_along_axis(grouped, chosen[..., None], axis=-2)
  values, within = jax.lax.top_k(candidates.reshape(*x.shape[:-1], -1), k)
  indices = (jnp.take_along_axis(chosen, within // block, axis=-1) * block
             + within % block)
  return values, indices.astype(jnp.int32)


def _take(x: Array, indices: Array) -> Array:
  """x[b, indices[b, j], ...]: x [B, K, ...], indices [B, J] -> [B, J, ...]."""
  indices = indices.reshape(indices.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, indices, axis=1)


def _stable_slots(parents: Array) -> Array:
  """Rows for new hypotheses such that few cache rows need copying.

  A parent's first (best) child takes over the parent's row, whose cache holds
  its prefix already; further children go, in order, to the rows of
  hypotheses that left no child. Rows copied from are thus never copied to.

  Args:
    parents: [B, k] the row (within its sentence) of each new hypothesis'
      parent.
  Returns:
    [B, k] the row of each new hypothesis: a permutation of 0..k-1.
  """
  k = parents.shape[1]
  j = jnp.arange(k)
  same_parent = parents[:, :, None] == parents[:, None, :]  # [B, k, k]
  first = ~jnp.any(same_parent & (j[None, :] < j[:, None]), axis=2)
  free = ~jnp.any(parents[:, :, None] == j, axis=1)  # rows nobody continues
  # The r-th child that is not first goes to the r-th free row.
  child_rank = jnp.cumsum(~first, axis=1) - 1
  free_rank = jnp.cumsum(free, axis=1) - 1
  match = free[:, None, :] & (free_rank[:, None, :] == child_rank[:, :, None])
  return jnp.where(first, parents, jnp.argmax(match, axis=2))


def _reorder_cache(cache: dict, parents: Array, needed: Array) -> dict:
  """Gives row b * k + j of the self-attention cache the content of row
  b * k + parents[b, j]. Only rows where `needed` [B, k] must change: the
  others have parents[b, j] == j, or content that no longer matters."""
  buffers = {key: x for key, x in cache.items() if not _is_cache_index(key)}
  batch, k = parents.shape
  if jax.device_count() > 1:
    # A batched gather: XLA keeps it local to each shard of the batch.
    def gather(x):
      rows = jnp.moveaxis(x, _row_axis(x), 0)  # scanned layers: rows first
      rows = _take(rows.reshape(batch, k, -1), parents).reshape(rows.shape)
      return jnp.moveaxis(rows, 0, _row_axis(x))
    return {**cache, **jax.tree.map(gather, buffers)}

  # One device: copy just the rows needed, in place, COPY_CHUNK rows per
  # gather/scatter (one op per row made the loop's overhead dominate). Sources
  # are never targets (see `_stable_slots`), so the order does not matter.
  rows = batch * k
  padded = -(-rows // COPY_CHUNK) * COPY_CHUNK
  sources = (jnp.arange(batch)[:, None] * k + parents).reshape(-1)
  (targets,) = jnp.nonzero(needed.reshape(-1), size=padded, fill_value=rows)
  sources = sources[jnp.minimum(targets, rows - 1)]  # targets == rows: unused

  def copy(i, buffers):
    target = jax.lax.dynamic_slice(targets, (i * COPY_CHUNK,), (COPY_CHUNK,))
    source = jax.lax.dynamic_slice(sources, (i * COPY_CHUNK,), (COPY_CHUNK,))

    def copy_rows(x):  # along the rows' axis; scanned layers all at once
      at = (slice(None),) * _row_axis(x)
      # Out-of-range targets (the padding) are dropped.
      return x.at[at + (target,)].set(x[at + (source,)], mode='drop')
    return jax.tree.map(copy_rows, buffers)

  chunks = (jnp.sum(needed) + COPY_CHUNK - 1) // COPY_CHUNK
  buffers = jax.lax.fori_loop(0, chunks, copy, buffers)
  return {**cache, **buffers}


@functools.partial(jax.jit,
                   static_argnames=('config', 'beam_size', 'max_extra_length'))
def _beam_search(params: PyTree, config: ModelConfig, inputs: Array,
                 alpha: Array, beam_size: int,
                 max_extra_length: int) -> tuple[Array, Array, Array]:
  """`beam_search`, plus the number of decoder steps run."""
  length = _check(config, inputs, max_extra_length)
  if beam_size < 1:
    raise ValueError(f'beam_size must be positive, got {beam_size}')
  model = Transformer(config)
  batch, k, vocab = inputs.shape[0], beam_size, config.vocab_size
  # Decoder row b * k + j holds hypothesis j of sentence b; the source is
  # encoded, and its keys/values cached, once per sentence.
  self_cache, encoder_cache, encoded = _init_cache(
      model, params, inputs, _cache_sizes(length)[0], group=k)
  limits = length_limits(inputs, max_extra_length)

  def body(state: State) -> State:
    step, done = state['step'], state['done']
    logits, cache = _decode_step(
        model, params, state['cache'], encoder_cache, encoded, inputs,
        state['previous'].reshape(-1), step)
    logits = logits.reshape(batch, k, vocab)

    # The 2k best candidates (prefix, token) by log P: each hypothesis' best
    # 2k, then the best of those. Within a hypothesis log P(prefix, token) =
    # score + logit - log Z ranks tokens as the logits do, so the first top_k
    # reads the logits themselves and only 2k values per row get the rest.
    allowed = _allowed_tokens(vocab, step, limits)[:, None, :]
    best_logits, best_tokens = top_k_by_blocks(
        jnp.where(allowed, logits, NEG_INF), min(2 * k, vocab))
    log_z = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    best = state['alive_scores'][:, :, None] + (best_logits - log_z)
    scores, index = jax.lax.top_k(best.reshape(batch, -1), 2 * k)  # [B, 2k]
    parents = index // best.shape[2]
    tokens = jnp.take_along_axis(best_tokens.reshape(batch, -1), index, axis=1)
    seqs = jax.lax.dynamic_update_slice(  # [B, 2k, L]
        _take(state['alive_seqs'], parents), tokens[:, :, None], (0, 0, step))
    ends = tokens == EOS_ID

    # Finished: the old ones and the candidates that end within the first k.
    in_beam = jnp.arange(2 * k) < k
    ended = jnp.where(ends & in_beam,
                      scores / length_penalty(step + 1, alpha), NEG_INF)
    finished_scores, pick = jax.lax.top_k(
        jnp.concatenate([state['finished_scores'], ended], axis=1), k)
    finished_seqs = _take(
        jnp.concatenate([state['finished_seqs'], seqs], axis=1), pick)
    # A sentence already done keeps its result (it may still run in a batch).
    finished_scores = jnp.where(done[:, None], state['finished_scores'],
                                finished_scores)
    finished_seqs = jnp.where(done[:, None, None], state['finished_seqs'],
                              finished_seqs)

    # Alive: the k best candidates that did not end, each in a row where the
    # cache holds its prefix, or made to hold it.
    alive_scores, keep = jax.lax.top_k(jnp.where(ends, NEG_INF, scores), k)
    order = jnp.argsort(_stable_slots(_take(parents, keep)), axis=1)
    keep = _take(keep, order)  # [B, k]: row -> candidate
    alive_scores, parents = _take(alive_scores, order), _take(parents, keep)
    # At step 0 all rows of a sentence hold the same prefix (BOS); dead
    # hypotheses and finished sentences need no cache.
    needed = ((parents != jnp.arange(k)) & (alive_scores > NEG_INF)
              & ~done[:, None] & (step > 0))
    cache = _reorder_cache(cache, parents, needed)

    # Done: no alive hypothesis can beat the worst finished one any more.
    best_penalty = jnp.maximum(length_penalty(step + 2, alpha),
                               length_penalty(limits, alpha))
    best_possible = jnp.max(alive_scores, axis=1) / best_penalty
    done = done | (finished_scores[:, -1] >= best_possible)

    return dict(step=step + 1, cache=cache, done=done,
                previous=_take(tokens, keep), alive_seqs=_take(seqs, keep),
                alive_scores=alive_scores, finished_seqs=finished_seqs,
                finished_scores=finished_scores)

  # Every row starts from BOS; only the first is alive, or the k rows would
  # propose k copies of the same candidates.
  state = _decode_loop(body, dict(
      step=jnp.array(0, jnp.int32),
      cache=self_cache,
      done=jnp.zeros((batch,), bool),
      previous=jnp.full((batch, k), BOS_ID, jnp.int32),
      alive_seqs=jnp.full((batch, k, length), PAD_ID, jnp.int32),
      alive_scores=jnp.where(jnp.arange(k) == 0, 0.0,
                             jnp.full((batch, k), NEG_INF)),
      finished_seqs=jnp.full((batch, k, length), PAD_ID, jnp.int32),
      finished_scores=jnp.full((batch, k), NEG_INF, jnp.float32)), length)
  scores = state['finished_scores']
  seqs = jnp.where(scores[..., None] > NEG_INF, state['finished_seqs'],
                   PAD_ID)
  return seqs, scores, state['step']
