"""The one interface every task family implements (T5X's `BaseModel` role).

A task is a small frozen (hashable: jit takes it as a static argument)
object holding the config and what the run learnt from its training data
(class names, target statistics). Generic code -- the train step, the loop,
checkpoints, evaluation and prediction modes, the benchmark and the
pictures -- asks the task, never its type or `config.task`.

Required (abstract below):

  pure, inside jit (train.train_step, train.eval_step):
    init_params(rng) -> params
    loss_sums(params, batch, rng) -> (loss_sum, (weight_sum, metric_sums))
    eval_sums(params, batch) -> {name: sum over the batch}
    model(sow_weights=) -> the flax module (pictures record its attention)
  the outer loop's side:
    tokenizer_corpus() -> the training texts, as tuples of strings
    train_dataset(tokenizer, process_index=, process_count=) -> grain data
    evaluator(tokenizer, mesh, split, num_examples) -> an `Evaluator`
    predict_lines(params, tokenizer, lines, mesh, warn=) -> one output line
      per input line (--mode=predict; translation's --mode=translate)
    try_it(command) -> the line that ends a training run's report

Optional hooks, with defaults for the families that lack them: the modes a
family adds (`MODES`), the files a run keeps in its workdir (`RUN_FILES`),
the tokenizer's reserved pieces (`RESERVED_PIECES`), the train log's derived metrics (`train_log_metrics`), generation
(`generate_texts`), the benchmark (`benchmark`, a `BenchmarkHooks`), and
the pictures (`pictures`, `CURVE_SCORES`, `SENTENCE_PURPOSE`,
`attention_layers`), and the Hugging Face export (`export_spec`).

Losses are sums, never means (transformer/losses.py), so the train step
divides once by the total weight, exactly across devices, hosts and
micro-batches, whatever the task.
"""

from __future__ import annotations

import abc
import dataclasses
import statistics
from typing import Any, Callable, ClassVar, Iterable, Iterator, NamedTuple, Protocol

import jax
import numpy as np

from transformer.config import Config

Array = jax.Array
Batch = dict[str, Array]

# The modes every task serves (launch.py --mode=...). 'export' refuses a
# task whose `export_spec` is None, saying why.
COMMON_MODES = ('train', 'evaluate', 'predict', 'visualize', 'benchmark',
                'export')
# The benchmark: the first batch compiles, the next WARMUP_STEPS warm up.
WARMUP_STEPS = 2


class Evaluator(Protocol):
  """What `Task.evaluator` returns: one split, its data loaded once."""
  split: str

  def __call__(self, params) -> tuple[dict[str, Any], Any]:
    """(metrics, outputs): numbers for metrics.jsonl, and what `write`
    saves (translations, predictions, sample continuations)."""

  def summary(self, metrics: dict[str, Any]) -> str:
    """One line for the training log."""

  def file_name(self, steps: list[int]) -> str:
    """The base name of the files `write` writes, e.g. 'test_step400'."""

  def write(self, directory: str, name: str, outputs: Any,
            metrics: dict[str, Any]) -> str:
    """Writes directory/name.* (metrics JSON and outputs); returns the path
    without extension."""

  def report(self, metrics: dict[str, Any], outputs: Any, base: str, *,
             samples: int = 0) -> str:
    """What --mode=evaluate (and the end of training) prints."""


@dataclasses.dataclass(frozen=True)
class PictureRun:
  """One --mode=visualize call, once the model is restored."""
  config: Config
  workdir: str
  task: Any
  params: Any
  steps: list[int]
  tokenizer: Any
  sentence: str
  layers: list[int] | None
  heads: list[int] | None
  out_dir: str
  lead: bool  # process 0: the one that draws and prints
  command: str | None  # launch.py --experiment=... --workdir=..., for hints

  def checkpoint(self) -> str:
    averaged = (f' (mean of checkpoints {self.steps})' if len(self.steps) > 1
                else '')
    return f'checkpoint {self.steps[-1]}{averaged}'


class BenchmarkBatches(NamedTuple):
  """The benchmark's batches, on the mesh, and what they are."""
  batches: list[Batch]  # global arrays, as the train step takes them
  eval_batches: list[Batch]  # the same rows, as the eval step takes them
  # Per global batch, what the family's rates count: e.g.
  # 'target_tokens' (real, non-PAD ones) or 'examples'.
  counts: dict[str, list[int]]
  data: str  # 'real: ...' or 'random'
  data_note: str  # why not real, or ''
  tokenizer: Any = None  # for decoding and generation; None if random

  @property
  def timed(self) -> list[Batch]:
    return self.batches[1 + WARMUP_STEPS:]

  @property
  def timed_eval(self) -> list[Batch]:
    return self.eval_batches[1 + WARMUP_STEPS:]

  def timed_mean(self, name: str) -> float:
    """The mean of counts[name] over the timed batches."""
    return statistics.mean(self.counts[name][1 + WARMUP_STEPS:])


@dataclasses.dataclass(frozen=True)
class ExportSpec:
  """What --mode=export writes a task's model as: a Hugging Face
  architecture (transformer/huggingface/export.py).

  architecture: transformers' class, 'GPT2LMHeadModel', 'BertForMaskedLM'
    or 'BertForSequenceClassification'.
  bos, eos: the family's pipeline puts BOS before, EOS after a text's
    pieces; the exported tokenizer adds them likewise.
  config: config.json's keys of the head (num_labels, id2label,
    problem_type).
  head: (matrix [outputs, labels], offset [labels]): the exported head's
    outputs are ours @ matrix + offset, folded into its weights (e.g. a
    regression's standardised outputs back in the targets' units); None:
    ours as they are.
  """
  architecture: str
  bos: bool = False
  eos: bool = False
  config: dict[str, Any] = dataclasses.field(default_factory=dict)
  head: tuple[np.ndarray, np.ndarray] | None = None


class BenchmarkHooks:
  """What --mode=benchmark asks of a task family (transformer/benchmark.py
  times the steps, counts memory, measures the peak and prints the table).

  Required: `load_batches`, `random_host_batch`, `train_flops`,
  `eval_flops`, `train_rates`, `eval_rates`, `train_rate_row`,
  `eval_rate_text`. The rest default to nothing extra.
  """

  def __init__(self, task: 'Task'):
    self.task = task
    self.config: Config = task.config

  def setup_keys(self, decode_repeats: int) -> dict[str, Any]:
    """The family's keys of the setup report (before 'date')."""
    del decode_repeats
    return {}

  def load_batches(self, workdir: str, mesh, count: int,
                   rng: np.random.Generator) -> BenchmarkBatches:
    """`count` global batches for the train and eval steps."""
    raise NotImplementedError

  def random_host_batch(self, rng: np.random.Generator, rows: int
                        ) -> dict[str, np.ndarray]:
    """A random train batch of `rows` rows of the family's keys and shapes
    (what the ahead-of-time remat measurement compiles for)."""
    raise NotImplementedError

  def train_flops(self) -> float:
    """Model FLOPs of one train step on a global batch."""
    raise NotImplementedError

  def eval_flops(self) -> float:
    """Model FLOPs of one eval step on a global batch."""
    raise NotImplementedError

  def train_rates(self, data: BenchmarkBatches, step_s: float
                  ) -> dict[str, float]:
    """Throughput keys of the train step (after train_steps_per_s)."""
    raise NotImplementedError

  def eval_rates(self, data: BenchmarkBatches, seconds: float
                 ) -> dict[str, float]:
    """Throughput keys of the eval step."""
    raise NotImplementedError

  def task_measurements(self, *, workdir: str, mesh, params,
                        data: BenchmarkBatches, rng: np.random.Generator,
                        step_s: float, decode_repeats: int,
                        input_batches: int, log: Callable[[str], None]
                        ) -> dict[str, Any]:
    """What only this family measures, after the eval step."""
    del workdir, mesh, params, data, rng, step_s, decode_repeats
    del input_batches, log
    return {}

  # The table (benchmark.format_table): rows that differ by family.
  def task_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows after 'shape'."""
    del r
    return []

  def train_rate_row(self, r: dict[str, Any]) -> tuple[str, str]:
    raise NotImplementedError

  def eval_rate_text(self, r: dict[str, Any]) -> str:
    raise NotImplementedError

  def extra_rows(self, r: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows after 'eval step'."""
    del r
    return []


class Task(abc.ABC):
  """The interface; each family's task is a frozen dataclass subclassing it
  with a `config: Config` field."""
  config: Config

  # What the loss averages over: the training log's rate ('tokens/s').
  rate_unit: ClassVar[str] = 'tokens'
  # launch.py modes beyond COMMON_MODES (e.g. 'translate', 'generate').
  EXTRA_MODES: ClassVar[tuple[str, ...]] = ()
  # Files (beside checkpoints, config.json, ...) a run keeps in its workdir.
  RUN_FILES: ClassVar[tuple[str, ...]] = ()
  # Eval metrics on the training curves' second panel.
  CURVE_SCORES: ClassVar[tuple[str, ...]] = ()
  # The evaluation's metrics eval.best_metric may name: 'max' where higher
  # is better, 'min' where lower is.
  BEST_METRICS: ClassVar[dict[str, str]] = {}
  # The evaluation's headline metrics, first the one a study ranks by
  # (--mode=study: summary.md, summary.png).
  HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ()
  # What --sentence is for, in the message when it is empty.
  SENTENCE_PURPOSE: ClassVar[str] = 'to label'
  # Pieces the family's tokenizer reserves at ids 4, ... after the fixed
  # specials (tokenizer.load_or_train): a masked LM's '<mask>' at MASK_ID.
  RESERVED_PIECES: ClassVar[tuple[str, ...]] = ()

  @classmethod
  def modes(cls) -> tuple[str, ...]:
    return COMMON_MODES + cls.EXTRA_MODES

  @classmethod
  def missing_split(cls, config: Config, split: str) -> str | None:
    """Why `config`'s data has no `split` where that split is optional
    (users' files without a test file), or None: checked before training,
    so that the run skips that evaluation instead of failing after it."""
    del config, split
    return None

  # --- Required: the pure core. --------------------------------------------

  @abc.abstractmethod
  def model(self, *, sow_weights: bool = False):
    """The flax module; sow_weights records attention (pictures)."""

  @abc.abstractmethod
  def init_params(self, rng: Array):
    """Fresh parameters."""

  @abc.abstractmethod
  def loss_sums(self, params, batch: Batch, rng: Array):
    """(loss_sum, (weight_sum, {metric: (sum, count)})) of a (micro-)batch.
    In training the batch also holds 'step', the updates so far (int32)."""

  @abc.abstractmethod
  def eval_sums(self, params, batch: Batch) -> dict[str, Array]:
    """{name: sum over the batch} for the evaluator."""

  # --- Required: the outer loop's side. ------------------------------------

  @abc.abstractmethod
  def tokenizer_corpus(self):
    """The training texts the tokenizer learns from, as tuples of str."""

  @abc.abstractmethod
  def train_dataset(self, tokenizer, *, process_index: int,
                    process_count: int):
    """The checkpointable grain dataset of training batches."""

  @abc.abstractmethod
  def evaluator(self, tokenizer, mesh, split: str,
                num_examples: int = 0) -> Evaluator:
    """The split's evaluation (all of it, or its first num_examples)."""

  @abc.abstractmethod
  def predict_lines(self, params, tokenizer, lines: Iterable[str], mesh, *,
                    warn: Callable[[str], None]) -> Iterator[str]:
    """One output line per input line, in order."""

  @abc.abstractmethod
  def try_it(self, command: str) -> str:
    """The line that ends a training run's report."""

  # --- Optional hooks. ------------------------------------------------------

  def train_log_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    """The train log's metrics (means over the logged steps) with what the
    family derives from them (e.g. perplexity from 'nll')."""
    return metrics

  def generate_texts(self, params, tokenizer, prompts: Iterable[str], mesh,
                     *, warn: Callable[[str], None],
                     max_new_tokens: int | None = None
                     ) -> Iterator[tuple[str, str]]:
    """(prompt, continuation) per prompt, for 'generate' in EXTRA_MODES."""
    raise NotImplementedError(f'{type(self).__name__} does not generate')

  def benchmark(self) -> BenchmarkHooks:
    """What --mode=benchmark measures of this family."""
    raise NotImplementedError(f'{type(self).__name__} has no benchmark')

  def attention_layers(self) -> tuple[int, int]:
    """(encoder, decoder) layers that --layers may pick in the pictures."""
    m = self.config.model
    return m.num_encoder_layers, m.num_decoder_layers

  def pictures(self, run: PictureRun) -> list[str]:
    """--mode=visualize: draws what the family shows of run.sentence into
    run.out_dir; returns the PNGs written (process 0; [] elsewhere)."""
    del run
    return []

  def export_spec(self) -> ExportSpec | None:
    """--mode=export: the Hugging Face architecture this run is written as;
    None: the family has none (the export is refused, saying so)."""
    return None
