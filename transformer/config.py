"""Configuration: frozen dataclasses whose defaults are the paper's.

An experiment file in `experiments/` states only what differs from these
defaults; `launch.py --set=KEY=VALUE` overrides any field by its dotted path.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import typing
from typing import Any, ClassVar, Literal

# Fixed token ids, shared by the tokenizer, the data pipeline and decoding.
PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
# Masked-LM vocabularies (task='masked_lm', BERT imports) also reserve the
# [MASK] token BERT's objective replaces chosen tokens with (Devlin et al.
# 2019, sec. 3.1).
MASK_ID = 4


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The encoder-decoder Transformer. Defaults: the paper's base model.

  "Attention Is All You Need" (Vaswani et al., 2017), Table 3, row "base".
  """
  # One vocabulary shared by source and target (sec. 5.1; the paper's is
  # BPE, ours SentencePiece's unigram model by default: data.tokenizer).
  vocab_size: int = 37_000
  d_model: int = 512
  d_ff: int = 2048
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  dropout_rate: float = 0.1  # P_drop: sub-layer outputs, embeddings (sec. 5.4)
  attention_dropout_rate: float = 0.0  # on attention probabilities; not in the paper
  # Feed-forward, eq. (2). 'gelu' is the tanh approximation (GPT-2's
  # "gelu_new"), 'gelu_exact' the erf form (BERT's "gelu").
  activation: Literal['relu', 'gelu', 'gelu_exact'] = 'relu'
  # 'post': LayerNorm(x + Sublayer(x)) as in the paper (sec. 3.1);
  # 'pre': x + Sublayer(LayerNorm(x)), with a final LayerNorm (more stable deep).
  norm_position: Literal['post', 'pre'] = 'post'
  layer_norm_epsilon: float = 1e-6
  positions: Literal['sinusoidal', 'learned'] = 'sinusoidal'  # sec. 3.5
  max_length: int = 512  # table size for learned positions
  # BERT's embeddings (Devlin et al. 2019, sec. 3): a segment ("token
  # type") embedding table of this many rows, row 0 added to every token
  # (0 = none), and a LayerNorm over the summed embeddings before dropout.
  token_types: int = 0
  embedding_norm: bool = False
  share_embeddings: bool = True  # one embedding for source and target (sec. 3.4)
  tie_output_embedding: bool = True  # pre-softmax projection = target embedding
  dtype: Literal['float32', 'bfloat16'] = 'float32'  # compute; params stay float32
  # softmax(QK^T)V without attention dropout: 'cudnn' is cuDNN's fused flash
  # attention (GPU, bfloat16; another reduction order than XLA's), 'xla' the
  # plain products, 'auto' cuDNN where it applies (attention.cudnn_applies).
  attention_impl: Literal['auto', 'xla', 'cudnn'] = 'auto'
  # Classification and regression (task != 'translation'): how the encoder's
  # outputs become one vector per text. 'mean' over the real (non-padding)
  # tokens, or 'first': the output at the first token, a [CLS]-style BOS.
  pooling: Literal['mean', 'first'] = 'mean'
  # BERT's pooler (BertForSequenceClassification): the pooled vector through
  # a dense layer d_model -> d_model and tanh before the head's dropout.
  pooler: bool = False
  # Initialisation (transformer/model.py, `initializers`). 'xavier': Glorot
  # uniform kernels, token embeddings N(0, d^-1/2) multiplied by sqrt(d)
  # (sec. 3.4). 'gpt2' (Radford et al. 2019; nanoGPT): every kernel and
  # embedding N(0, 0.02), the projections back into the residual stream
  # N(0, 0.02 / sqrt(2 * layers)), embeddings not multiplied.
  init: Literal['xavier', 'gpt2'] = 'xavier'
  # Rematerialisation (gradient checkpointing, Chen et al. 2016, "Training
  # Deep Nets with Sublinear Memory Cost"), per encoder/decoder layer: the
  # backward pass recomputes what the forward pass did not keep. 'none'
  # keeps every activation; 'full' keeps only each layer's input (about one
  # more forward pass of compute); 'dots' keeps the outputs of the dense
  # layers' matmuls and recomputes the rest (attention scores, softmax,
  # LayerNorm, activations). Same parameters, same gradients. XLA:CPU merges
  # the recomputation of unrolled layers back into the forward pass: there
  # it saves memory only with scan_layers.
  remat: Literal['none', 'full', 'dots'] = 'none'
  # The encoder's and the decoder's layers as one `nn.scan` each, their
  # parameters stacked on a leading axis: one layer is traced and compiled
  # instead of all of them. Changes the parameters' layout, so a checkpoint
  # is read only with the setting it was written with.
  scan_layers: bool = False

  # What a resumed run may change (`changeable_on_resume`): how the saved
  # parameters are computed with, not what they are.
  CHANGEABLE_ON_RESUME: ClassVar[tuple[str, ...]] = (
      'dropout_rate', 'attention_dropout_rate', 'dtype', 'attention_impl',
      'remat')

  def __post_init__(self):
    if self.d_model % self.num_heads:
      raise ValueError(f'model.d_model={self.d_model} must be divisible by '
                       f'model.num_heads={self.num_heads}')
    for name in ('vocab_size', 'd_model', 'd_ff', 'num_heads', 'max_length'):
      if getattr(self, name) <= 0:
        raise ValueError(f'model.{name} must be positive, got '
                         f'{getattr(self, name)}')
    if self.token_types < 0:
      raise ValueError(f'model.token_types must be >= 0 (0 = none), got '
                       f'{self.token_types}')
    for name in ('dropout_rate', 'attention_dropout_rate'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f'model.{name} must be in [0, 1), got '
                         f'{getattr(self, name)}')
    choices = {'activation': ('relu', 'gelu', 'gelu_exact'),
               'norm_position': ('post', 'pre'),
               'positions': ('sinusoidal', 'learned'),
               'dtype': ('float32', 'bfloat16'),
               'attention_impl': ('auto', 'xla', 'cudnn'),
               'pooling': ('mean', 'first'), 'init': ('xavier', 'gpt2'),
               'remat': ('none', 'full', 'dots')}
    for name, allowed in choices.items():
      if getattr(self, name) not in allowed:
        raise ValueError(f'model.{name}={getattr(self, name)!r} is not one of '
                         f'{allowed}')
    for name in ('scan_layers', 'pooler'):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f'model.{name} must be true or false, got '
                         f'{getattr(self, name)!r}')
    if self.attention_impl == 'cudnn' and (self.dtype != 'bfloat16' or
                                           self.attention_dropout_rate > 0):
      raise ValueError(
          "model.attention_impl='cudnn' needs model.dtype='bfloat16' and "
          'model.attention_dropout_rate=0 (cuDNN attention takes 16-bit '
          f'inputs, and dropout needs the weights); got dtype={self.dtype!r}, '
          f'attention_dropout_rate={self.attention_dropout_rate}. Use '
          "'auto' or 'xla'.")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads


# Table 3 of the paper.
BASE = ModelConfig()
BIG = ModelConfig(d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3)
# A small encoder for classification and regression on a CPU (the
# experiments' shared shape): pre-LN, 3 layers of d_model 128.
CPU_ENCODER = ModelConfig(vocab_size=8000, d_model=128, d_ff=512, num_heads=4,
                          num_encoder_layers=3, num_decoder_layers=0,
                          norm_position='pre', max_length=128)
# Decoder-only language models: a CPU shape (4 pre-LN layers of d_model 256,
# the bench_lm_cpu shape) and GPT-2 small's (Radford et al. 2019: 12 layers
# of 768, 12 heads, 1024 learned positions, GELU, pre-LN).
CPU_DECODER = ModelConfig(vocab_size=4000, d_model=256, d_ff=1024, num_heads=4,
                          num_encoder_layers=0, num_decoder_layers=4,
                          norm_position='pre', max_length=256,
                          dropout_rate=0.0)
GPT2_SMALL = ModelConfig(vocab_size=32_000, d_model=768, d_ff=3072,
                         num_heads=12, num_encoder_layers=0,
                         num_decoder_layers=12, norm_position='pre',
                         positions='learned', activation='gelu',
                         max_length=1024, dropout_rate=0.1)
PRESETS = {'base': BASE, 'big': BIG, 'cpu_encoder': CPU_ENCODER,
           'cpu_decoder': CPU_DECODER, 'gpt2_small': GPT2_SMALL}


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where sentences come from, how they are tokenized and batched."""
  # Translation: 'bible', the offline Spanish-English Bible corpus (Debian's
  # SWORD texts); 'tfds', a TFDS translation set (`tfds_name`); 'text', the
  # user's own files `text_dir/{train,valid,test}.{src,tgt}`; 'toy', a
  # generated word-reversal task.
  # Classification and regression (transformer/tasks/labelled/sources.py): 'vader',
  # the human-rated sentiment sentences of Hutto & Gilbert (2014);
  # 'bible_genre', Bible verses labelled with their book's genre; 'tfds'
  # (imdb_reviews, glue/sst2); 'text', the user's own
  # `text_dir/{train,valid,test}.{tsv,csv,jsonl}`; 'toy', a generated task.
  source: Literal['bible', 'tfds', 'text', 'toy', 'vader',
                  'bible_genre'] = 'bible'
  # source-target languages. 'bible': 'es-en' or 'en-es'; 'tfds': the pair
  # in either order, e.g. 'de-en' for German -> English.
  direction: str = 'es-en'
  tfds_name: str = 'wmt14_translate/de-en'
  tfds_data_dir: str = ''  # '' = TFDS's default (~/tensorflow_datasets)
  text_dir: str = ''
  # Root of prepared corpora: the Bible goes to DATA_DIR/bible_es_en/;
  # '' = ~/.cache/transformer.
  data_dir: str = ''
  # SentencePiece ('unigram', 'bpe'): one joint vocabulary of
  # model.vocab_size pieces; 'char': one id per character (language models);
  # 'huggingface': a Hugging Face `tokenizer.json` (WordPiece, byte-level
  # BPE) that came with train.init_from (transformer/huggingface/).
  tokenizer: Literal['unigram', 'bpe', 'char', 'huggingface'] = 'unigram'
  character_coverage: float = 1.0
  tokenizer_sentences: int = 2_000_000  # at most this many training lines
  max_length: int = 128  # tokens per row (source and target each)
  batch_size: int = 64  # rows per global batch, over all hosts and devices
  pack: bool = True  # several sentences per row (sec. 5.1 batches by length)
  overlong: Literal['drop', 'truncate'] = 'drop'  # sentences > max_length
  eval_batch_size: int = 64  # sentences per evaluation batch
  eval_max_length: int = 256  # longer evaluation sentences are truncated
  worker_count: int = 0  # grain worker processes; 0 = in the main process
  # The training data is split into this many shards (0 = one per process),
  # each making batch_size / shards rows of every batch; a process reads only
  # its own shards. A fixed number gives the same batches whatever the number
  # of processes (e.g. 1 host with 8 devices or 2 hosts with 4).
  shards: int = 0
  # Labelled text (classification, regression).
  text_column: str = 'text'  # users' files: the column of the text
  # ... and of the label: a class name, or a number for regression. Several
  # columns separated by commas ('valence,arousal') give one regression
  # output each.
  label_column: str = 'label'
  # Classification with any number of labels per text (zero included): K
  # independent sigmoids trained with train.loss='log_loss'. Users' files
  # hold the names separated by label_separator (a JSON list in JSON Lines).
  # 'vader' with sentiment_classes 2 or 3: the sentiments that at least a
  # quarter of the raters gave (transformer/tasks/labelled/sources.py).
  multi_label: bool = False
  label_separator: str = ','
  # data.source='vader': 0 = the mean rating (-4..4) as a regression target;
  # 2 = negative/positive (|rating| >= 0.5; the rest dropped); 3 = negative,
  # neutral, positive; 5 = five bins of the rating.
  sentiment_classes: int = 0
  # Language models: what one document is in the users' train.txt (and
  # valid.txt, test.txt). 'stream': the whole file is one running text cut
  # into rows (nanoGPT, most character-level work); 'paragraphs': separated
  # by blank lines; 'lines': one per line. Documents are packed into rows
  # with masks that keep them apart; 'bible' documents are chapters.
  documents: Literal['stream', 'paragraphs', 'lines'] = 'stream'
  # Language models on 'bible': the language of the text, 'en' or 'es'.
  language: str = 'en'
  # data.source='vader', regression: a second output, the standard deviation
  # of the raters' ratings (their disagreement), beside the mean.
  rater_spread: bool = False
  # Training-stream re-sampling against class imbalance (the other remedy
  # beside train.class_weights): 'oversample' repeats the small classes,
  # 'undersample' drops from the large ones, both to equal counts per epoch.
  class_sampling: Literal['none', 'oversample', 'undersample'] = 'none'
  # Long-tailed training data from any labelled source (Cui et al. 2019,
  # sec. 6): the training split subsampled so that class counts fall
  # exponentially from the most to the least frequent class, whose ratio is
  # this; drawn from the seed, recorded in labels.json. 0 = off; valid and
  # test are left as they are.
  imbalance_ratio: float = 0.0
  # How users' text files (data.source='text') are encoded: any codec
  # Python names that is a superset of ASCII ('latin-1', 'cp1252', ...).
  encoding: str = 'utf-8'

  # What a resumed run may change: where the data lies, how many processes
  # read it, how evaluation batches it; the tokenizer is already trained.
  # Anything else would change the data that the saved iterator position
  # points into.
  CHANGEABLE_ON_RESUME: ClassVar[tuple[str, ...]] = (
      'tfds_data_dir', 'data_dir', 'tokenizer_sentences',
      'eval_batch_size', 'eval_max_length', 'worker_count')

  def __post_init__(self):
    if self.shards < 0 or self.worker_count < 0:
      raise ValueError('data.shards and data.worker_count must be >= 0')
    for name in ('max_length', 'batch_size', 'eval_batch_size',
                 'eval_max_length', 'tokenizer_sentences'):
      if getattr(self, name) <= 0:
        raise ValueError(f'data.{name} must be positive, got '
                         f'{getattr(self, name)}')
    if len(self.label_separator) != 1 or self.label_separator.isspace():
      raise ValueError(f'data.label_separator={self.label_separator!r} must '
                       "be one character other than whitespace, e.g. ',' or "
                       "'|'")
    _check_encoding(self.encoding)
    if self.imbalance_ratio and self.imbalance_ratio < 1:
      raise ValueError(f'data.imbalance_ratio must be 0 (off) or >= 1 (the '
                       'most frequent class count over the least), got '
                       f'{self.imbalance_ratio}')
    if len(self.direction.split('-')) != 2:
      raise ValueError(f'data.direction={self.direction!r} must look like '
                       "'es-en' (source-target)")


def _check_encoding(name: str) -> None:
  """data.encoding must be a codec whose newline and ASCII bytes are ASCII's
  (the files are split into lines and fields by their bytes)."""
  try:
    codec = codecs.lookup(name)
  except LookupError:
    raise ValueError(f'data.encoding={name!r} is not a text encoding Python '
                     "knows; e.g. 'utf-8', 'latin-1', 'cp1252'") from None
  if '\n\t,'.encode(codec.name, errors='replace') != b'\n\t,':
    raise ValueError(f'data.encoding={name!r} does not write ASCII as ASCII '
                     '(e.g. UTF-16); convert the files to UTF-8 first')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and the training loop. Defaults: the paper's sec. 5.3."""
  # 0 with a time_limit: as many steps as fit in the budget, fixed after a
  # few timed steps and saved with the run (transformer/budget.py).
  steps: int = 100_000
  # lr = scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), eq. (3).
  # 'cosine' and 'linear': linear warm-up to learning_rate, then decay to
  # final_learning_rate_fraction of it at the last step ('linear' to zero is
  # what "Budgeted Training", Li et al. 2020, found best for a fixed budget).
  schedule: Literal['paper', 'constant', 'cosine', 'linear'] = 'paper'
  learning_rate: float = 1.0  # 'paper': the scale; else the peak rate
  warmup_steps: int = 4000
  final_learning_rate_fraction: float = 0.0  # nanoGPT's: 0.1
  adam_b1: float = 0.9
  adam_b2: float = 0.98
  adam_eps: float = 1e-9
  weight_decay: float = 0.0
  # What AdamW's decoupled weight decay shrinks: 'all' parameters, or only
  # the 'matrices' (dense kernels and embeddings; not biases or LayerNorm
  # scales), as GPT-2 and nanoGPT do.
  weight_decay_on: Literal['all', 'matrices'] = 'all'
  grad_clip_norm: float = 0.0  # global-norm clipping; 0 = off
  grad_accum_steps: int = 1  # micro-batches per step (batch_size divisible)
  label_smoothing: float = 0.1  # sec. 5.4
  z_loss: float = 0.0
  fsdp: bool = False  # shard params and optimizer state over the data axis
  # Tensor parallelism: devices on the mesh's 'model' axis (1 = data
  # parallelism only). The data axis takes the rest: 8 devices with 2 are a
  # data 4 x model 2 mesh. Megatron-style splits of the attention heads, the
  # d_ff units and the vocabulary (transformer/partitioning.py); it must
  # divide the device count, model.num_heads and model.d_ff.
  model_parallel: int = 1
  # Where dropout's random masks come from (transformer/dropout.py): 'hash'
  # (a counter hash XLA fuses into the mask's multiply: ~free), 'rbg' (XLA's
  # RngBitGenerator) or 'threefry' (JAX's default). All give the same result
  # on any number of devices; they draw different masks, so switching
  # changes a run's numbers.
  dropout_rng: Literal['hash', 'rbg', 'threefry'] = 'hash'
  checkpoint_every: int = 1000
  keep_checkpoints: int = 5
  log_every: int = 100
  # Wall-clock budget in minutes (0 = none): training stops at the first step
  # past it, saves a checkpoint, then ends as a finished run does (final
  # evaluation if configured). A resumed run counts its own time only.
  time_limit: float = 0.0
  # Warm start: a fresh run's parameters from another run's workdir (its
  # best checkpoint where one is kept, else its newest) or from a Hugging
  # Face model directory (config.json, model.safetensors, tokenizer.json):
  # parameters whose names and shapes match are loaded, the rest
  # initialised (transformer/warm_start.py). The tokenizer comes with it.
  # Read only when the run starts: resuming never reads it again. '' = off.
  init_from: str = ''
  # Classification and regression: the loss (transformer/losses.py).
  # 'cross_entropy' (softmax; label_smoothing applies), 'focal' (Lin et al.
  # 2017, focal_gamma), 'hinge' (multi-class, Crammer-Singer), 'log_loss'
  # (sigmoid cross-entropy: binary or multi-label), 'mse', 'huber'
  # (huber_delta, on standardised targets). Translation always uses
  # cross-entropy.
  # Against class imbalance (transformer/losses.py): 'logit_adjusted'
  # (Menon et al. 2021: logits + tau * log prior, logit_adjust_tau),
  # 'ldam' (Cao et al. 2019: a margin per class of C / n_k^(1/4), the
  # largest ldam_max_margin), 'balanced_softmax' (Ren et al. 2020: logits +
  # log n_k).
  loss: Literal['cross_entropy', 'log_loss', 'focal', 'hinge', 'mse',
                'huber', 'logit_adjusted', 'ldam',
                'balanced_softmax'] = 'cross_entropy'
  # Per-class loss weights: 'none', 'balanced' (n / (K * count_k) from the
  # training split, saved with the run), 'effective_number' (Cui et al.
  # 2019: (1 - beta) / (1 - beta^count_k), normalised to sum to K; beta is
  # class_weights_beta) or a comma-separated list, one per class in the
  # order of the run's labels.json.
  class_weights: str = 'none'
  class_weights_beta: float = 0.999
  # Deferred re-weighting (Cao et al. 2019, sec. 3.3): the class weights
  # apply from this step on (before it, every class weighs 1). 0 = always.
  drw_start: int = 0
  logit_adjust_tau: float = 1.0
  ldam_max_margin: float = 0.5
  focal_gamma: float = 2.0
  huber_delta: float = 1.0
  # task='masked_lm' (BERT, Devlin et al. 2019, sec. 3.1): the share of the
  # ordinary tokens chosen for prediction, and of those the share replaced
  # by [MASK] and the share by a random token (the rest are kept as they
  # are; appendix C.2 compares other splits).
  mask_rate: float = 0.15
  mask_token_rate: float = 0.8
  random_token_rate: float = 0.1

  # Every training setting may change on resume: the optimizer state's
  # structure does not depend on them (train.make_optimizer), so e.g. adding
  # clipping or lowering the learning rate continues from the checkpoint.
  CHANGEABLE_ON_RESUME: ClassVar[tuple[str, ...] | str] = 'all'

  def __post_init__(self):
    if self.time_limit < 0:
      raise ValueError(f'train.time_limit must be >= 0 minutes (0 = no '
                       f'limit), got {self.time_limit}')
    if self.steps < 0 or (self.steps == 0 and not self.time_limit):
      raise ValueError(f'train.steps must be positive, or 0 with a '
                       f'train.time_limit (as many steps as fit in it); got '
                       f'steps={self.steps}, time_limit={self.time_limit}')
    if not 0.0 < self.class_weights_beta < 1.0:
      raise ValueError('train.class_weights_beta must be in (0, 1), e.g. '
                       f'0.999; got {self.class_weights_beta}')
    if self.drw_start < 0 or self.logit_adjust_tau < 0 or (
        self.ldam_max_margin <= 0):
      raise ValueError(
          'train.drw_start and train.logit_adjust_tau must be >= 0 and '
          f'train.ldam_max_margin > 0; got {self.drw_start}, '
          f'{self.logit_adjust_tau}, {self.ldam_max_margin}')
    if not 0.0 <= self.final_learning_rate_fraction <= 1.0:
      raise ValueError('train.final_learning_rate_fraction must be in [0, 1], '
                       f'got {self.final_learning_rate_fraction}')
    for name in ('warmup_steps', 'grad_accum_steps',
                 'checkpoint_every', 'keep_checkpoints', 'log_every',
                 'model_parallel'):
      if getattr(self, name) <= 0:
        raise ValueError(f'train.{name} must be positive, got '
                         f'{getattr(self, name)}')
    if not 0.0 < self.mask_rate < 1.0 or min(
        self.mask_token_rate, self.random_token_rate) < 0.0 or (
            self.mask_token_rate + self.random_token_rate > 1.0):
      raise ValueError(
          f'train.mask_rate={self.mask_rate} must be in (0, 1), and '
          f'train.mask_token_rate={self.mask_token_rate} and '
          f'train.random_token_rate={self.random_token_rate} must be >= 0 '
          'with a sum <= 1 (BERT: 0.15, 0.8, 0.1)')
    if self.dropout_rng not in ('hash', 'rbg', 'threefry'):
      raise ValueError(f'train.dropout_rng={self.dropout_rng!r} is not one of '
                       "('hash', 'rbg', 'threefry')")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Evaluation and decoding. Defaults: the paper's sec. 6.1."""
  every: int = 1000  # evaluate every this many training steps; 0 = never
  split: Literal['valid', 'test'] = 'valid'  # used during training
  num_examples: int = 0  # sentences decoded during training; 0 = all
  beam_size: int = 4
  length_penalty: float = 0.6  # alpha of the GNMT length penalty
  max_extra_length: int = 50  # max output length = input length + this
  average_checkpoints: int = 1  # evaluate the mean of the last N checkpoints
  # A metric of the evaluations during training (the task's BEST_METRICS:
  # 'accuracy', 'macro_f1', 'pearson', 'loss', 'bits_per_character', 'bleu',
  # ...): the checkpoint where it was best is kept apart from the rotation
  # of train.keep_checkpoints, and the modes after training use it. '' = off.
  best_metric: str = ''
  # Early stopping: stop after this many evaluations in a row without a
  # new best eval.best_metric. 0 = never.
  patience: int = 0
  # After training: decode the test split with beam search, report BLEU and
  # print a few translations.
  final: bool = True
  # Classification: post-hoc logit adjustment (Menon et al. 2021, sec. 4):
  # predict argmax of logits - tau * log prior (the training split's class
  # frequencies). 0 = off.
  logit_adjust_tau: float = 0.0

  CHANGEABLE_ON_RESUME: ClassVar[tuple[str, ...] | str] = 'all'

  def __post_init__(self):
    if self.beam_size <= 0 or self.average_checkpoints <= 0:
      raise ValueError('eval.beam_size and eval.average_checkpoints must be '
                       'positive')
    if self.logit_adjust_tau < 0:
      raise ValueError(f'eval.logit_adjust_tau must be >= 0 (0 = off), got '
                       f'{self.logit_adjust_tau}')
    if self.patience < 0:
      raise ValueError(f'eval.patience must be >= 0, got {self.patience}')
    if self.patience and not self.best_metric:
      raise ValueError('eval.patience counts evaluations without a new best '
                       'eval.best_metric: name one, e.g. '
                       'eval.best_metric=loss')


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
  """Sampling from a language model (--mode=generate; transformer/sampling.py)."""
  # 0 = greedy (argmax); else logits / temperature before sampling.
  temperature: float = 1.0
  top_k: int = 0  # keep the k most likely tokens; 0 = all
  # Nucleus sampling (Holtzman et al. 2019): keep the smallest set of the
  # most likely tokens whose probability reaches top_p; 1.0 = all.
  top_p: float = 1.0
  max_new_tokens: int = 200  # per prompt; generation also stops at EOS
  seed: int = 0  # the same seed and prompts give the same continuations

  CHANGEABLE_ON_RESUME: ClassVar[tuple[str, ...] | str] = 'all'

  def __post_init__(self):
    if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
      raise ValueError(
          f'generate: temperature={self.temperature} must be >= 0 (0 = '
          f'greedy), top_k={self.top_k} >= 0 (0 = off), top_p={self.top_p} '
          'in (0, 1] (1 = off)')
    if self.max_new_tokens <= 0:
      raise ValueError(f'generate.max_new_tokens must be positive, got '
                       f'{self.max_new_tokens}')


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs; saved as config.json in the workdir."""
  seed: int = 0
  # What is learnt (transformer/tasks/): 'translation' (encoder-decoder),
  # 'classification' or 'regression' (encoder, pooling and a head),
  # 'language_model' (decoder only, next-token prediction).
  task: Literal['translation', 'classification', 'regression',
                'language_model', 'masked_lm'] = 'translation'
  model: ModelConfig = ModelConfig()
  data: DataConfig = DataConfig()
  train: TrainConfig = TrainConfig()
  eval: EvalConfig = EvalConfig()
  generate: GenerateConfig = GenerateConfig()

  # The seed fixes the data order and dropout masks of the whole run.
  CHANGEABLE_ON_RESUME: ClassVar[tuple[str, ...]] = ()

  def __post_init__(self):
    if self.eval.average_checkpoints > self.train.keep_checkpoints:
      raise ValueError(
          f'eval.average_checkpoints={self.eval.average_checkpoints} needs '
          f'at least that many kept checkpoints, but train.keep_checkpoints='
          f'{self.train.keep_checkpoints}: raise train.keep_checkpoints or '
          'lower eval.average_checkpoints')
    if self.eval.best_metric and not self.eval.every:
      raise ValueError(
          f'eval.best_metric={self.eval.best_metric!r} is chosen among the '
          'evaluations during training, and eval.every=0 turns them off: '
          'set eval.every (e.g. 200) or eval.best_metric=\'\'')


def changeable_on_resume(config: Any, prefix: str = '') -> set[str]:
  """Dotted keys a resumed run may change, from each class's
  CHANGEABLE_ON_RESUME: those that leave the meaning of the saved parameters,
  optimizer state and data position unchanged. Every other key must match
  the workdir's config.json, so a new field is protected until it is listed.
  """
  allowed = type(config).CHANGEABLE_ON_RESUME
  keys = set()
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      keys |= changeable_on_resume(value, f'{prefix}{field.name}.')
    elif allowed == 'all' or field.name in allowed:
      keys.add(prefix + field.name)
  return keys


# ---------------------------------------------------------------------------
# Overrides (`--set=train.steps=100`) and (de)serialisation.
# ---------------------------------------------------------------------------


class ConfigError(ValueError):
  """A config key or value the user gave is not valid."""


def field_paths(config: Any, prefix: str = '') -> list[str]:
  """Every leaf field's dotted path: ['seed', 'model.vocab_size', ...]."""
  paths = []
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      paths += field_paths(value, f'{prefix}{field.name}.')
    else:
      paths.append(prefix + field.name)
  return paths


def _parse_value(text: str, annotation: Any, key: str) -> Any:
  """Converts `text` to the field's declared type, or raises ConfigError."""
  if isinstance(annotation, str):  # postponed annotations
    annotation = eval(annotation, vars(typing) | globals())  # pylint: disable=eval-used
  origin = typing.get_origin(annotation)
  if origin is Literal:
    allowed = typing.get_args(annotation)
    if text not in allowed:
      raise ConfigError(f'--set {key}={text}: must be one of '
                        f'{", ".join(map(str, allowed))}')
    return text
  if annotation is bool:
    lowered = text.lower()
    if lowered in ('true', '1', 'yes'):
      return True
    if lowered in ('false', '0', 'no'):
      return False
    raise ConfigError(f'--set {key}={text}: expected true or false')
  if annotation in (int, float):
    try:
      return annotation(text)
    except ValueError:
      raise ConfigError(f'--set {key}={text}: expected {annotation.__name__}, '
                        f'e.g. {key}=' + ('100' if annotation is int else
                                          '0.5')) from None
  if annotation is str:
    return text
  raise ConfigError(f'--set {key}: fields of type {annotation} cannot be set')


def override(config: Config, assignment: str) -> Config:
  """Returns `config` with one `dotted.key=value` assignment applied."""
  return override_all(config, [assignment])


def override_all(config: Config, assignments: list[str]) -> Config:
  """Returns `config` with every `dotted.key=value` of `assignments` applied.

  All values are set before any check runs, so checks that relate two keys
  (train.steps=0 needs a train.time_limit) see the final values whatever
  the order of the assignments.
  """
  values = to_dict(config)
  for assignment in assignments:
    key, text = _split_assignment(config, assignment)
    *parents, name = key.split('.')
    node, cls = values, type(config)
    for part in parents:
      node, cls = node[part], type(getattr(cls(), part))
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    node[name] = _parse_value(text, field.type, key)
  try:
    return from_dict(values, type(config))
  except ValueError as error:  # a __post_init__ check
    given = ' '.join(f'--set={a}' for a in assignments)
    raise ConfigError(f'{given}: {error}' if given else str(error)) from None


def _split_assignment(config: Config, assignment: str) -> tuple[str, str]:
  """(dotted key, value text) of 'KEY=VALUE'; ConfigError if no such key."""
  if '=' not in assignment:
    raise ConfigError(f'--set {assignment}: expected KEY=VALUE, e.g. '
                      '--set=train.steps=100')
  key, text = assignment.split('=', 1)
  key = key.strip()
  if key not in field_paths(config):
    close = difflib.get_close_matches(key, field_paths(config), n=3,
                                      cutoff=0.5)
    hint = f' Did you mean {" or ".join(close)}?' if close else ''
    raise ConfigError(f'--set {key}: no such config key.{hint} Every key is '
                      'listed in the README ("Configuration").')
  return key, text


def to_dict(config: Config) -> dict:
  return dataclasses.asdict(config)


def from_dict(values: dict, cls: type = Config) -> Any:
  """Inverse of `to_dict`; unknown keys raise ConfigError."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = set(values) - set(fields)
  if unknown:
    raise ConfigError(f'unknown config keys {sorted(unknown)} for '
                      f'{cls.__name__}')
  kwargs = {}
  for name, value in values.items():
    default = getattr(cls(), name) if name in fields else None
    if dataclasses.is_dataclass(default):
      value = from_dict(value, type(default))
    kwargs[name] = value
  return cls(**kwargs)


def to_json(config: Config) -> str:
  return json.dumps(to_dict(config), indent=2, sort_keys=True)
