"""Tests of the masked LM (transformer/tasks/masked_lm/).

References are independent of the code under test: BERT's rates checked
against their binomial expectation on a large batch, the loss against a
NumPy cross-entropy over the chosen positions, the tokenizers' reserved id
against SentencePiece's own piece table, users' labelled files written
here, FLOPs against XLA's cost analysis. An in-process run on a text whose
every letter follows from its neighbours (lines of consecutive letters)
trains, evaluates, resumes exactly and fills masks.
"""

import dataclasses
import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import benchmark, checkpoint, loop, losses, peak as peak_lib, tasks
from transformer import train as train_lib
from transformer.config import (BOS_ID, EOS_ID, MASK_ID, PAD_ID, Config,
                                ConfigError, DataConfig, EvalConfig,
                                ModelConfig, TrainConfig)
from transformer.data import tokenizer as tokenizer_lib
from transformer.data.corpus import DataError
from transformer.tasks.masked_lm import benchmark as mlm_benchmark
from transformer.tasks.masked_lm import data as mlm_data
from transformer.tasks.masked_lm import gather
from transformer.tasks.masked_lm import masking

TINY = ModelConfig(vocab_size=40, d_model=32, d_ff=64, num_heads=4,
                   num_encoder_layers=2, num_decoder_layers=0,
                   dropout_rate=0.0, norm_position='pre', max_length=64)


def mlm_config(text_dir='', steps=10, model=TINY, **data):
  data = {'source': 'text', 'text_dir': str(text_dir), 'documents': 'lines',
          'tokenizer': 'char', 'max_length': 64, 'batch_size': 8,
          'eval_batch_size': 8, **data}
  return Config(task='masked_lm', model=model, data=DataConfig(**data),
                train=TrainConfig(steps=steps, schedule='constant',
                                  learning_rate=1e-2, warmup_steps=10,
                                  label_smoothing=0.0, log_every=1,
                                  checkpoint_every=steps),
                eval=EvalConfig(every=0, final=False))


# ---------------------------------------------------------------------------
# The masking.
# ---------------------------------------------------------------------------


def within(count, n, p, sigmas=5.0):
  """count is a plausible Binomial(n, p) draw."""
  return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize('rate,mask_share,random_share', [
    (0.15, 0.8, 0.1), (0.4, 0.5, 0.25)])
def test_masking_rates_match_their_expectation(rate, mask_share,
                                               random_share):
  vocab = 1000
  tokens = np.random.default_rng(0).integers(0, vocab, (64, 512))
  tokens[:, 0], tokens[:, -1] = BOS_ID, EOS_ID
  tokens[:8, 400:] = PAD_ID
  inputs, weights = map(np.asarray, masking.mask_tokens(
      jnp.asarray(tokens), jax.random.key(0), vocab, rate=rate,
      mask_share=mask_share, random_share=random_share))
  assert inputs.dtype == np.int32 and weights.dtype == np.float32
  chosen = weights > 0
  ordinary = tokens >= MASK_ID + 1  # not PAD, UNK, BOS, EOS or MASK
  assert not chosen[~ordinary].any()
  np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
  n, k = int(ordinary.sum()), int(chosen.sum())
  assert within(k, n, rate)
  got, original = inputs[chosen], tokens[chosen]
  # A random replacement equals the original with probability 1/(V - 5).
  same = 1 / (vocab - MASK_ID - 1)
  kept = 1 - mask_share - random_share
  assert within(int((got == MASK_ID).sum()), k, mask_share)
  assert within(int(((got != MASK_ID) & (got != original)).sum()), k,
                random_share * (1 - same))
  assert within(int((got == original).sum()), k, kept + random_share * same)
  replaced = got[(got != MASK_ID) & (got != original)]
  assert replaced.min() >= MASK_ID + 1 and replaced.max() < vocab
  # Uniform over the ordinary ids: their mean, within 5 standard errors.
  sd = (vocab - MASK_ID - 1) / math.sqrt(12)
  assert abs(replaced.mean() - (MASK_ID + 1 + vocab - 1) / 2) < (
      5 * sd / math.sqrt(len(replaced)))


def test_masking_is_a_function_of_the_key():
  tokens = jnp.asarray(np.random.default_rng(1).integers(5, 50, (4, 64)))
  a = masking.mask_tokens(tokens, jax.random.key(7), 50)
  b = masking.mask_tokens(tokens, jax.random.key(7), 50)
  c = masking.mask_tokens(tokens, jax.random.key(8), 50)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[1], c[1])


@pytest.fixture(scope='module')
def tiny_task():
  return tasks.for_benchmark(mlm_config())


def test_loss_is_numpy_cross_entropy_over_the_chosen_positions(tiny_task):
  rng = np.random.default_rng(2)
  targets = rng.integers(5, TINY.vocab_size, (4, 32)).astype(np.int32)
  targets[:, 0] = BOS_ID
  targets[:, 20] = EOS_ID
  targets[2:, 21:] = PAD_ID
  segmentation = np.where(targets == PAD_ID, 0,
                          1 + (np.arange(32) > 20)).astype(np.int32)
  positions = np.where(np.arange(32) > 20, np.arange(32) - 21,
                       np.arange(32)) * (segmentation > 0)
  batch = {'targets': targets, 'targets_positions': positions,
           'targets_segmentation': segmentation}
  params = jax.jit(tiny_task.init_params)(jax.random.key(0))
  key = jax.random.key(3)
  loss, (weight, metrics) = jax.jit(tiny_task.loss_sums)(params, batch, key)
  # The same masking (the task draws it from the first half of the key),
  # then an independent cross-entropy.
  inputs, weights = masking.mask_tokens(jnp.asarray(targets),
                                        jax.random.split(key)[0],
                                        TINY.vocab_size)
  logits = np.asarray(jax.jit(tiny_task.logits)(params, inputs, positions,
                                                segmentation), np.float64)
  weights = np.asarray(weights, np.float64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  assert weights.sum() > 0 and np.all(np.isfinite(nll))
  assert not weights[targets < 5].any()
  assert float(weight) == weights.sum()
  np.testing.assert_allclose(float(loss), (nll * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['nll'][0]), float(loss),
                             rtol=1e-6)
  correct = (logits.argmax(-1) == targets) * weights
  assert float(metrics['accuracy'][0]) == correct.sum()
  assert float(metrics['accuracy'][1]) == weights.sum()


def test_eval_masking_is_fixed_whatever_the_batch_size(tmp_path):
  text_dir = write_letters(tmp_path)
  config = mlm_config(text_dir)
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path / 'run'))

  def rows(eval_batch_size):
    cfg = dataclasses.replace(config, data=dataclasses.replace(
        config.data, eval_batch_size=eval_batch_size))
    batches = mlm_data.eval_batches(cfg, tokenizer, 'valid')
    stacked = {k: np.concatenate([b[k] for b in batches])
               for k in ('targets', 'inputs', 'weights')}
    real = stacked['targets'][:, 0] != PAD_ID
    return {k: v[real] for k, v in stacked.items()}
  a, b, again = rows(4), rows(8), rows(4)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a[key], again[key])
  assert (a['targets'][:, 0] == BOS_ID).all()  # [CLS] starts each row
  chosen = a['weights'] > 0
  assert chosen.any() and not chosen[a['targets'] < 5].any()
  assert (a['inputs'][chosen] == MASK_ID).any()
  np.testing.assert_array_equal(a['inputs'][~chosen], a['targets'][~chosen])


# ---------------------------------------------------------------------------
# The tokenizer's [MASK] and the data.
# ---------------------------------------------------------------------------

LETTERS = 'abcdefghijklmnopqrstuvwxyz'


def write_letters(directory, lines=(400, 40, 40)):
  """train/valid/test.txt: lines of 12 consecutive letters."""
  rng = np.random.default_rng(0)
  text_dir = directory / 'text'
  text_dir.mkdir(exist_ok=True)
  for split, count in zip(('train', 'valid', 'test'), lines):
    starts = rng.integers(0, len(LETTERS) - 12, count)
    (text_dir / f'{split}.txt').write_text(
        ''.join(LETTERS[s:s + 12] + '\n' for s in starts))
  return text_dir


def test_sentencepiece_reserves_mask_at_id_4(tmp_path):
  text_dir = tmp_path / 'text'
  text_dir.mkdir()
  words = 'the word of the lord came to me saying go and tell them'.split()
  rng = np.random.default_rng(0)
  (text_dir / 'train.txt').write_text(''.join(
      ' '.join(rng.choice(words, 9)) + '\n' for _ in range(300)))
  model = dataclasses.replace(TINY, vocab_size=32)
  config = mlm_config(text_dir, model=model, tokenizer='unigram')
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path / 'mlm'))
  assert tokenizer.vocab_size == 32
  assert tokenizer.id_to_piece(MASK_ID) == '<mask>'
  assert [tokenizer.id_to_piece(i) for i in range(4)] == [
      '<pad>', '<unk>', '<s>', '</s>']
  ids = tokenizer.encode('the word of the lord')
  assert ids and min(ids) > MASK_ID
  # The language model's tokenizer on the same text is as before: id 4 is
  # an ordinary piece; in a masked LM's workdir it is refused.
  lm = dataclasses.replace(config, task='language_model',
                           model=dataclasses.replace(model,
                                                     num_decoder_layers=1))
  lm_tokenizer = tokenizer_lib.load_or_train(lm, str(tmp_path / 'lm'))
  assert lm_tokenizer.id_to_piece(MASK_ID) != '<mask>'
  os.makedirs(tmp_path / 'copied')
  shutil.copy(tmp_path / 'lm' / 'tokenizer.model', tmp_path / 'copied')
  with pytest.raises(DataError, match='task=masked_lm needs <mask>'):
    tokenizer_lib.load_or_train(config, str(tmp_path / 'copied'))


def test_char_tokenizer_reserves_mask_at_id_4(tmp_path):
  config = mlm_config(write_letters(tmp_path))
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path / 'run'))
  assert tokenizer.id_to_piece(MASK_ID) == '<mask>'
  assert set(tokenizer.chars) <= set(LETTERS)  # no '<mask>' among them
  assert min(tokenizer.encode('abcxy')) > MASK_ID
  assert tokenizer.encode(tokenizer.chars[0]) == [MASK_ID + 1]
  reloaded = tokenizer_lib.CharTokenizer.load(tokenizer.path)
  assert reloaded.reserved == ('<mask>',)
  assert reloaded.encode('xyzabc') == tokenizer.encode('xyzabc')
  assert reloaded.decode([MASK_ID + 1, MASK_ID]) == (
      tokenizer.chars[0] + '<mask>')


def test_labelled_files_give_their_text_column(tmp_path):
  texts = [f'verse {i} of the book' for i in range(60)]
  with open(tmp_path / 'train.jsonl', 'w') as f:
    for i, text in enumerate(texts):  # labels need not be there
      f.write(json.dumps({'text': text, **({'label': 'x'} if i % 2 else {})})
              + '\n')
  (tmp_path / 'valid.jsonl').write_text(json.dumps({'text': 'a valid one'})
                                        + '\n')
  config = mlm_config(tmp_path)
  assert mlm_data.reads_labelled_files(config)
  train = mlm_data.load_text(config, 'train')
  assert not train.stream
  assert [train.documents[i] for i in range(len(train.documents))] == texts
  assert mlm_data.load_text(config, 'valid').documents[0] == 'a valid one'
  assert 'test.jsonl' in mlm_data.missing_split(config, 'test')
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path / 'run'))
  rows = next(iter(mlm_data.train_dataset(config, tokenizer,
                                          num_epochs=1)))['targets']
  # Each document is [BOS] text [EOS], packed: as many BOS as EOS.
  assert rows[0, 0] == BOS_ID
  assert (rows == BOS_ID).sum() == (rows == EOS_ID).sum() > 0
  # A train.txt wins: the text is the language model's.
  (tmp_path / 'train.txt').write_text('plain text\n' * 30)
  assert not mlm_data.reads_labelled_files(config)


def test_bad_settings_are_refused_before_training():
  with pytest.raises(ConfigError, match='task=masked_lm'):
    tasks.for_benchmark(mlm_config(source='vader'))
  with pytest.raises(ConfigError, match='model.vocab_size=5 leaves no'):
    tasks.for_benchmark(mlm_config(model=dataclasses.replace(
        TINY, vocab_size=5)))
  with pytest.raises(ValueError, match='train.mask_rate=1.5'):
    TrainConfig(mask_rate=1.5)
  assert tasks.best_metric(dataclasses.replace(
      mlm_config(), eval=EvalConfig(every=5, best_metric='accuracy'))
  ).higher_is_better


# ---------------------------------------------------------------------------
# A run: train, evaluate, resume, predict, benchmark.
# ---------------------------------------------------------------------------

STEPS = 240


@pytest.fixture(scope='module')
def letters(tmp_path_factory):
  return write_letters(tmp_path_factory.mktemp('letters'))


@pytest.fixture(scope='module')
def trained(letters, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('mlm'))
  config = mlm_config(letters, steps=STEPS)
  loop.train(config, workdir)
  return config, workdir


def train_losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {r['step']: r for r in records if r['kind'] == 'train'}


def restored(config, workdir):
  task = tasks.for_run(config, workdir)
  mesh = train_lib.make_mesh(config=config)
  params, _ = checkpoint.restore_params(task, workdir, mesh)
  return task, tokenizer_lib.load_or_train(config, workdir), mesh, params


def test_training_lowers_the_masked_loss_and_evaluation_agrees(trained):
  config, workdir = trained
  logged = train_losses(workdir)
  assert sorted(logged) == list(range(1, STEPS + 1))
  first = np.mean([logged[s]['loss'] for s in range(1, 11)])
  last = np.mean([logged[s]['loss'] for s in range(STEPS - 9, STEPS + 1)])
  assert np.isfinite(first) and last < 0.5 * first, (first, last)
  record = logged[STEPS]
  assert record['perplexity'] == pytest.approx(math.exp(record['nll']))
  assert 0 <= record['accuracy'] <= 1
  task, tokenizer, mesh, params = restored(config, workdir)
  evaluator = task.evaluator(tokenizer, mesh, 'test')
  metrics, samples = evaluator(params)
  fresh, _ = evaluator(jax.jit(task.init_params)(jax.random.key(0)))
  for m in (metrics, fresh):
    assert all(math.isfinite(m[k]) for k in ('loss', 'accuracy',
                                             'perplexity'))
    assert 0 <= m['accuracy'] <= 1
    assert m['perplexity'] == pytest.approx(math.exp(m['loss']))
  assert metrics['tokens'] == fresh['tokens'] > 0  # the same masked tokens
  assert metrics['loss'] < 0.5 * fresh['loss']
  assert metrics['accuracy'] > 0.5 > fresh['accuracy']
  assert samples and '[MASK]' in samples[0]['input']
  assert samples[0]['original'].startswith('<s>')
  base = evaluator.write(os.path.join(workdir, 'eval'), 'test_step240',
                         samples, metrics)
  with open(base + '.json') as f:
    assert json.load(f)['accuracy'] == metrics['accuracy']


def test_resume_is_exact(trained, letters, tmp_path):
  config, reference = trained
  half = dataclasses.replace(config, train=dataclasses.replace(
      config.train, steps=STEPS // 2, checkpoint_every=STEPS // 2))
  loop.train(half, str(tmp_path))
  loop.train(config, str(tmp_path))  # resumes at STEPS // 2
  got, want = train_losses(str(tmp_path)), train_losses(reference)
  assert sorted(got) == sorted(want)
  for step in range(STEPS // 2 + 1, STEPS + 1):
    assert got[step]['loss'] == want[step]['loss'], step
  a = restored(config, str(tmp_path))[3]
  b = restored(config, reference)[3]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, y)


def test_predict_fills_each_mask(trained):
  config, workdir = trained
  task, tokenizer, mesh, params = restored(config, workdir)
  warnings = []
  lines = ['abcdefg[MASK]ijkl', 'mn[MASK]pqrs[MASK]uvw', '', 'no mask',
           'a' * 300 + '[MASK]']
  out = [json.loads(line) for line in task.predict_lines(
      params, tokenizer, iter(lines), mesh, warn=warnings.append)]
  assert [o['input'] for o in out] == lines
  assert out[0]['fills'] == ['h'] and out[0]['output'] == 'abcdefghijkl'
  assert out[1]['fills'] == ['o', 't']
  assert out[1]['output'] == 'mnopqrstuvw'
  assert out[2] == {'input': '', 'output': '', 'fills': []}
  assert out[3]['fills'] == [] and '[MASK]' not in out[3]['output']
  # Cut at data.eval_max_length: the mask past the cut stays unfilled.
  assert out[4]['fills'] == [] and 'line 5' in warnings[0]


def test_forward_flops_match_xla_cost_analysis():
  model = ModelConfig(vocab_size=512, d_model=64, d_ff=256, num_heads=4,
                      num_encoder_layers=2, num_decoder_layers=0,
                      dropout_rate=0.0, max_length=256)
  config = mlm_config(model=model, batch_size=2, max_length=256)
  task = tasks.for_benchmark(config)
  params = jax.eval_shape(task.init_params, jax.random.key(0))
  inputs = jax.ShapeDtypeStruct((2, 256), jnp.int32)
  want = peak_lib.xla_flops(jax.jit(task.logits).lower(params, inputs)
                            .compile())
  got = mlm_benchmark.mlm_forward_flops(model, 2, 256)
  assert want is not None and math.isfinite(got)
  # Matmuls only: a little below XLA's count (softmax, LayerNorm, masks).
  assert got == pytest.approx(want, rel=0.10) and got < want
  slots = gather.capacity(2 * 256, config.train.mask_rate)
  assert mlm_benchmark.mlm_train_flops(config) == pytest.approx(
      3 * mlm_benchmark.mlm_forward_flops(model, 2, 256, slots))
  assert slots < 2 * 256 / 2  # the gather saves most of the projection


@pytest.mark.parametrize('rate', [0.15, 0.01])  # 0.01: too few slots
def test_gathered_loss_and_gradient_equal_every_position(rate):
  # A linear 'predict' and random chosen positions: the loss and its
  # gradient through the gather equal those of projecting every position,
  # also when more positions are chosen than gathered (the fallback).
  rng = np.random.default_rng(0)
  encoded = jnp.asarray(rng.normal(size=(4, 16, 8)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(8, 11)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 11, (4, 16)), jnp.int32)
  weights = jnp.asarray(rng.random((4, 16)) < 0.3, jnp.float32)
  slots = gather.capacity(64, rate)
  assert (float(weights.sum()) > slots) == (rate == 0.01)

  def objective(logits, t, wts):
    loss, _ = losses.cross_entropy(logits, t, wts)
    return loss, (jnp.sum(wts), {})

  def gathered(w, encoded):
    return gather.loss_at_chosen(lambda h: h @ w, encoded, targets, weights,
                                 rate=rate, loss_fn=objective)[0]

  def plain(w, encoded):
    return objective(encoded @ w, targets, weights)[0]

  for a, b in zip(jax.grad(gathered, (0, 1))(w, encoded),
                  jax.grad(plain, (0, 1))(w, encoded)):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gathered(w, encoded), plain(w, encoded),
                             rtol=1e-6)
  assert np.isfinite(float(plain(w, encoded)))


@pytest.mark.slow
def test_benchmark_runs_on_the_trained_workdir(trained, tmp_path):
  config, workdir = trained
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy)
  result = benchmark.run(config, copy, repeats=2, decode_repeats=1,
                         verbose=False)
  assert result['task'] == 'masked_lm'
  assert result['data'].startswith('real')
  assert result['train_flops'] == mlm_benchmark.mlm_train_flops(config)
  for key in ('train_tokens_per_s', 'eval_tokens_per_s', 'final_loss'):
    assert math.isfinite(result[key]) and result[key] > 0, key
  assert 0 < result['eval_masked_tokens_per_step'] < (
      config.data.batch_size * config.data.max_length)
