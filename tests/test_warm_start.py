"""Warm starts (train.init_from, transformer/warm_start.py): matching by name
and shape, the report, the errors; a classifier started from a translation
run's checkpoint on an 8-device mesh; a fine-tuning run from a Hugging Face
BertModel directory that trains, resumes exactly after the directory is
deleted, and predicts.

The end-to-end runs use test_launch.py's harness, two processes at a time;
the mesh check runs this file as a script in a process with 8 CPU devices
(`overlay_on_mesh`).
"""

import json
import os
import random
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from scripts import launching
from test_launch import final_params, jax_leaves, logged_losses
from transformer import experiment, warm_start
from transformer import workdir as workdir_lib
from transformer.config import ConfigError
from transformer.workdir import RunError

pytestmark = pytest.mark.usefixtures('shared_compilation_cache')

# The source: `tiny` (translation, d_model 64, d_ff 128, 2+2 post-LN
# layers, a 200-piece SentencePiece model), 2 steps.
SOURCE_ARGS = ['--experiment=tiny', '--set=train.steps=2',
               '--set=train.checkpoint_every=2', '--set=eval.final=false',
               '--set=eval.every=0']
# tiny_classify in the source's width: its encoder loads.
CLASSIFY_AS_SOURCE = ['model.d_model=64', 'model.d_ff=128']
COLOURS = ('red', 'blue', 'green')
OTHER_WORDS = 'the a cat dog runs sees big small'.split()


def flat(tree) -> dict:
  return dict(warm_start.flatten(tree))


def shapes(**named) -> dict:
  return {name.replace('__', '/'): tuple(shape) for name, shape in
          named.items()}


# --- Matching by name and shape (pure). ------------------------------------

TRANSLATION = shapes(embedding__embedding=(50, 8),
                     encoder_0__ffn__wi__kernel=(8, 16),
                     encoder_norm__scale=(8,),
                     decoder_0__ffn__wi__kernel=(8, 16),
                     decoder_norm__scale=(8,))
CLASSIFIER = shapes(encoder__embedding__embedding=(50, 8),
                    encoder__encoder_0__ffn__wi__kernel=(8, 16),
                    encoder__encoder_norm__scale=(8,),
                    head__kernel=(8, 3), head__bias=(3,))


def arrays(named_shapes: dict) -> dict:
  rng = np.random.default_rng(0)
  return {n: rng.normal(size=s).astype(np.float32)
          for n, s in named_shapes.items()}


def test_translation_model_placed_under_the_classifier_encoder():
  source = arrays(TRANSLATION)
  matched = warm_start.match(CLASSIFIER, source, label='SRC')
  assert sorted(matched.arrays) == [
      'encoder/embedding/embedding', 'encoder/encoder_0/ffn/wi/kernel',
      'encoder/encoder_norm/scale']
  for name, array in matched.arrays.items():
    assert array is source[name[len('encoder/'):]]
  assert matched.new == ['head/kernel', 'head/bias']
  assert matched.unused == ['decoder_0/ffn/wi/kernel', 'decoder_norm/scale']
  text = warm_start.report(matched)
  lines = text.splitlines()
  assert "placed under 'encoder/'" in lines[0]
  # 50*8 + 8*16 + 8 = 536 loaded; 24 + 3 new; 128 + 8 unused.
  assert lines[1].split() == ['loaded', '3', 'arrays', '536', 'parameters:',
                              'encoder/*']
  assert lines[2].split() == ['new', '2', 'arrays', '27', 'parameters:',
                              'head/*']
  assert lines[3].split() == ['unused', '2', 'arrays', '136', 'parameters:',
                              'decoder_0/*,', 'decoder_norm/*']


def test_same_family_loads_as_it_is_and_classifier_into_translation():
  source = arrays(CLASSIFIER)
  same = warm_start.match(CLASSIFIER, source, label='SRC')
  assert not same.placement and not same.new and not same.unused
  into_translation = warm_start.match(TRANSLATION, source, label='SRC')
  assert "'encoder/' parameters placed at the top" in into_translation.placement
  assert into_translation.new == ['decoder_0/ffn/wi/kernel',
                                  'decoder_norm/scale']
  assert into_translation.unused == ['head/kernel', 'head/bias']


def test_group_names_covers_exactly_the_names():
  universe = ['a/x', 'a/y', 'b/c_2/k', 'b/c_10/k', 'b/c_10/q', 'z']
  assert warm_start.group_names({'a/x', 'a/y', 'z'}, universe) == ['a/*', 'z']
  # Half of b: its complete children, in natural order.
  assert warm_start.group_names({'b/c_2/k', 'b/c_10/k'}, universe) == [
      'b/c_2/*', 'b/c_10/k']
  assert warm_start.group_names(set(), universe) == []
  many = [f'm{i}/w' for i in range(12)]
  assert warm_start.group_names(set(many[::2]), many, limit=4) == [
      'm0/*', 'm2/*', 'm4/*', 'and 3 more']


def test_shape_mismatch_names_the_first_differing_parameter():
  wider = dict(TRANSLATION, **{'embedding/embedding': (50, 16)})
  with pytest.raises(RunError) as error:
    warm_start.match(CLASSIFIER, arrays(wider), label='/runs/src',
                     cause='The likely cause: model.d_model.')
  message = str(error.value)
  assert message.startswith('train.init_from=/runs/src: its parameter '
                            "'embedding/embedding' has shape [50, 16] but "
                            "this model's 'encoder/embedding/embedding' has "
                            '[50, 8]')
  assert 'The likely cause: model.d_model.' in message
  assert '\n' not in message


def test_nothing_loaded_and_scan_layers_are_errors():
  decoder = shapes(decoder__embedding__embedding=(50, 8),
                   decoder__decoder_0__ffn__wi__kernel=(8, 16))
  with pytest.raises(RunError, match='none of its 2 parameters') as error:
    warm_start.match(CLASSIFIER, arrays(decoder), label='SRC')
  assert '(decoder/*) is one of this model\'s (encoder/*, head/*)' in str(
      error.value)
  assert 'train.init_from takes' in str(error.value)
  scanned = shapes(embedding__embedding=(50, 8),
                   encoder_layers__ffn__wi__kernel=(1, 8, 16))
  with pytest.raises(RunError, match='model.scan_layers=true'):
    warm_start.match(CLASSIFIER, arrays(scanned), label='SRC')


# --- The config (before anything runs). ------------------------------------

@pytest.fixture(scope='module')
def bert_dir(tmp_path_factory) -> str:
  """A tiny random BertModel saved by transformers, with a WordPiece
  tokenizer.json built by the tokenizers library."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from tokenizers import models, normalizers, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path_factory.mktemp('bert'))
  tokenizer = tokenizers.Tokenizer(models.WordPiece(unk_token='[UNK]'))
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.train_from_iterator(
      [' '.join(COLOURS + tuple(OTHER_WORDS))] * 10,
      trainers.WordPieceTrainer(vocab_size=60, special_tokens=[
          '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']))
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=tokenizer, unk_token='[UNK]', pad_token='[PAD]',
      cls_token='[CLS]', sep_token='[SEP]',
      mask_token='[MASK]').save_pretrained(directory)
  torch.manual_seed(0)
  transformers.BertModel(transformers.BertConfig(
      vocab_size=tokenizer.get_vocab_size(), hidden_size=32,
      num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
      max_position_embeddings=64)).save_pretrained(directory)
  return directory


def pretrained(*overrides):
  return experiment.load_config('text_classification_pretrained',
                                list(overrides))


def test_huggingface_settings_replace_the_experiments(bert_dir, tmp_path,
                                                      capsys):
  overrides = [f'train.init_from={bert_dir}', 'model.dropout_rate=0.0']
  config, plan = warm_start.resolve(pretrained(*overrides), str(tmp_path),
                                    overrides)
  assert plan.kind == warm_start.HUGGINGFACE
  m = config.model
  assert (m.d_model, m.d_ff, m.num_heads, m.num_encoder_layers,
          m.max_length, m.token_types) == (32, 64, 4, 2, 64, 2)
  assert (m.activation, m.norm_position, m.positions, m.pooler) == (
      'gelu_exact', 'post', 'learned', True)
  assert m.attention_dropout_rate == 0.1  # BertConfig's
  assert m.dropout_rate == 0.0  # an explicit --set of a free key wins
  assert 'sets model.d_model=32' in capsys.readouterr().out
  record = json.load(open(tmp_path / 'warm_start.json'))
  assert record['assigned']['model.d_model'] == 32


def test_explicit_set_against_the_source_is_refused(bert_dir, tmp_path):
  overrides = [f'train.init_from={bert_dir}', 'model.d_model=64']
  with pytest.raises(ConfigError) as error:
    warm_start.resolve(pretrained(*overrides), str(tmp_path), overrides)
  assert str(error.value).startswith(
      '--set=model.d_model=64 (its config gives 32): train.init_from=')


def test_huggingface_model_of_another_family_is_refused(bert_dir, tmp_path):
  config = experiment.load_config('tiny_lm', [f'train.init_from={bert_dir}'])
  with pytest.raises(ConfigError, match='bert model, which starts '
                     'task=classification or regression or masked_lm, and '
                     'this run is task=language_model'):
    warm_start.resolve(config, str(tmp_path))


@pytest.mark.parametrize('name', ['text_classification_pretrained',
                                  'text_regression_pretrained',
                                  'gpt2_finetune'])
def test_pretrained_experiments_say_init_from_is_missing(name, tmp_path):
  with pytest.raises(ConfigError, match='add --set=train.init_from=DIR'):
    warm_start.resolve(experiment.load_config(name, []), str(tmp_path))


def test_neither_workdir_nor_huggingface_directory(tmp_path):
  (tmp_path / 'notes').mkdir()
  (tmp_path / 'run').mkdir()
  (tmp_path / 'run' / 'config.json').write_text('{}')
  for path, says in ((tmp_path / 'gone', 'no such directory'),
                     (tmp_path / 'notes', 'neither a training run'),
                     (tmp_path / 'run', 'without a checkpoint yet')):
    config = experiment.load_config('tiny_classify',
                                    [f'train.init_from={path}'])
    with pytest.raises(RunError) as error:
      warm_start.resolve(config, str(tmp_path / 'new'))
    assert str(error.value).startswith(f'train.init_from={path}')
    assert says in str(error.value)
    assert 'train.init_from takes a training run\'s workdir' in str(
        error.value)


# --- A translation run's checkpoint into a classifier, end to end. ---------

@pytest.fixture(scope='module', autouse=True)
def source_run(tmp_path_factory):
  """The source run, started with the module's first test: the tests before
  its first use run meanwhile."""
  workdir = str(tmp_path_factory.mktemp('source'))
  process = launching.start([f'--workdir={workdir}', *SOURCE_ARGS])
  yield workdir, process
  if process.poll() is None:  # a test failed before waiting for it
    process.kill()
    process.communicate()


@pytest.fixture(scope='module')
def source(source_run) -> str:
  workdir, process = source_run
  launching.finish(process)
  return workdir


def overlay_on_mesh(source_dir: str, workdir: str) -> dict:
  """The warm start's steps as the loop takes them, on an 8-device data 4 x
  model 2 mesh: what was loaded, and where it was put."""
  import jax  # pylint: disable=g-import-not-at-top
  from transformer import tasks  # pylint: disable=g-import-not-at-top
  from transformer import train as train_lib  # pylint: disable=g-import-not-at-top
  config = experiment.load_config('tiny_classify', [
      f'train.init_from={source_dir}', 'train.model_parallel=2',
      *CLASSIFY_AS_SOURCE])
  config, plan = warm_start.resolve(config, workdir)
  task = tasks.for_run(config, workdir, create=True)
  warm_start.copy_tokenizer(plan, config, workdir)
  mesh = train_lib.make_mesh(config=config)
  init_fn, sharding = train_lib.jit_init_state(task, mesh)
  abstract = train_lib.abstract_state(task, mesh, sharding)
  matched = warm_start.load(plan, abstract.params, config)
  fresh = init_fn(train_lib.seed_rngs(config)[0])
  params = flat(warm_start.overlay(fresh.params, matched))
  saved = flat(final_params(source_dir, 2))
  fresh_params = flat(fresh.params)
  same = lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b)))
  return {
      'devices': jax.device_count(),
      'loaded': sorted(matched.arrays),
      'source_names': sorted(saved),
      'equal_to_source': {n: same(params[n], saved[n[len('encoder/'):]])
                          for n in matched.arrays},
      'equal_to_fresh': {n: same(params[n], fresh_params[n])
                         for n in params},
      'same_sharding': {n: params[n].sharding == fresh_params[n].sharding
                        for n in params},
      'specs': {n: str(params[n].sharding.spec) for n in params},
      'finite': all(bool(np.isfinite(np.asarray(p)).all())
                    for p in params.values()),
  }


@pytest.fixture(scope='module')
def from_source(source, tmp_path_factory) -> types.SimpleNamespace:
  """Two processes at once: `overlay_on_mesh` (this file as a script, on 8
  devices), and launch.py warm-starting tiny_classify in its own d_model
  (32, not the source's 64)."""
  workdir = str(tmp_path_factory.mktemp('on_mesh'))
  mismatch_workdir = str(tmp_path_factory.mktemp('mismatch'))
  env = dict(launching.environment(devices=8), PYTHONPATH=os.pathsep.join(
      [launching.REPO, os.path.join(launching.REPO, 'tests')]))
  mesh = subprocess.Popen([sys.executable, __file__, source, workdir],
                          cwd=launching.REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  mismatch = launching.finish(launching.start([
      f'--workdir={mismatch_workdir}', '--experiment=tiny_classify',
      f'--set=train.init_from={source}', '--set=train.steps=3']),
      check=False)
  out = launching.finish(mesh)
  *log, result = out.stdout.strip().splitlines()
  return types.SimpleNamespace(
      result=json.loads(result), log='\n'.join(log), workdir=workdir,
      mismatch=mismatch, mismatch_workdir=mismatch_workdir)


@pytest.mark.slow
def test_classifier_loads_translation_encoder_exactly_on_a_mesh(from_source):
  result, log = from_source.result, from_source.log
  assert result['devices'] == 8 and result['finite']
  # Every encoder-side array of the source, under 'encoder/'.
  want = sorted('encoder/' + n for n in result['source_names']
                if not n.startswith('decoder'))
  assert result['loaded'] == want and len(want) > 10
  assert all(result['equal_to_source'].values())
  new = [n for n in result['equal_to_fresh'] if n not in want]
  assert sorted(new) == ['head/bias', 'head/kernel']
  # New arrays are the fresh run's; loaded ones are not.
  assert all(result['equal_to_fresh'][n] for n in new)
  assert not any(result['equal_to_fresh'][n] for n in want
                 if 'embedding' in n or 'kernel' in n)
  # Each array kept the fresh one's place on the mesh, split over the
  # model axis where the rules split it (Megatron's: the vocabulary, the
  # heads, d_ff).
  assert all(result['same_sharding'].values())
  for name in ('embedding/embedding', 'encoder_0/ffn/wi/kernel',
               'encoder_0/self_attention/query/kernel'):
    assert "'model'" in result['specs']['encoder/' + name], name
  report = log[log.index('Warm start from'):].splitlines()
  assert report[0].endswith('the last checkpoint (step 2):')
  assert report[2].split()[:2] == ['loaded', str(len(want))]
  assert report[2].endswith('encoder/*')
  assert report[3].split()[:2] == ['new', '2'] and report[3].endswith('head/*')
  assert report[4].endswith('decoder_0/*, decoder_1/*')


@pytest.mark.slow
def test_tokenizer_is_copied_identically(source, from_source):
  # (The mismatch run's copy is taken back when it stops: next test.)
  for name in ('tokenizer.model', 'tokenizer.vocab'):
    with open(os.path.join(source, name), 'rb') as a, open(
        os.path.join(from_source.workdir, name), 'rb') as b:
      assert a.read() == b.read(), name


@pytest.mark.slow
def test_mismatch_stops_before_any_step(source, from_source):
  out = from_source.mismatch
  assert out.returncode == 2, out.stderr[-2000:]
  error = out.stderr.split('Error: ')[1].strip()
  assert error.startswith(
      f"train.init_from={source}: its parameter 'embedding/embedding' has "
      "shape [200, 64] but this model's 'encoder/embedding/embedding' has "
      '[200, 32]')
  assert 'model.d_model is 64 there and 32 here' in error
  assert 'Traceback' not in out.stderr and '\n' not in error
  # No step ran, and the new run took back what it wrote (config.json, the
  # copied tokenizer, labels.json): the corrected command needs no
  # --restart.
  assert not os.path.exists(os.path.join(from_source.mismatch_workdir,
                                         'metrics.jsonl'))
  assert os.path.exists(os.path.join(source, 'tokenizer.model'))
  left = set(os.listdir(from_source.mismatch_workdir)) - {workdir_lib.LOCK_FILE}
  assert not left, left
  assert not workdir_lib.has_saved_state(from_source.mismatch_workdir)


# --- Fine-tuning a Hugging Face BertModel, end to end. ---------------------

@pytest.fixture(scope='module')
def text_dir(tmp_path_factory) -> str:
  """Labelled sentences: the colour said twice is the class."""
  directory = tmp_path_factory.mktemp('text')
  rng = random.Random(0)
  for split, count in (('train', 200), ('test', 40)):
    with open(directory / f'{split}.tsv', 'w', encoding='utf-8') as f:
      f.write('text\tlabel\n')
      for _ in range(count):
        colour = rng.choice(COLOURS)
        words = [rng.choice(OTHER_WORDS) for _ in range(rng.randint(2, 6))]
        words += [colour, colour]
        rng.shuffle(words)
        f.write(f'{" ".join(words)}\t{colour}\n')
  return str(directory)


def bert_args(text: str, *extra) -> list[str]:
  return ['--experiment=text_classification_pretrained',
          f'--set=data.text_dir={text}', '--set=data.batch_size=8',
          '--set=data.max_length=32', '--set=train.learning_rate=1e-3',
          '--set=train.warmup_steps=2', '--set=train.log_every=1',
          '--set=train.checkpoint_every=3', '--set=eval.every=0',
          '--set=eval.best_metric=', '--set=eval.patience=0', *extra]


@pytest.fixture(scope='module')
def fine_tuned(bert_dir, text_dir, tmp_path_factory) -> types.SimpleNamespace:
  """6 steps from the directory, then --mode=predict; and 3 steps from a
  copy of it, the copy deleted, then resumed to 6. Two at a time."""
  root = tmp_path_factory.mktemp('fine_tuned')
  full, part, copy = (str(root / n) for n in ('full', 'part', 'bert_copy'))
  shutil.copytree(bert_dir, copy)
  first, started = launching.run_all([
      ([f'--workdir={full}', *bert_args(
          text_dir, f'--set=train.init_from={bert_dir}',
          '--set=train.steps=6')], 1),
      ([f'--workdir={part}', *bert_args(
          text_dir, f'--set=train.init_from={copy}', '--set=train.steps=3',
          '--set=eval.final=false')], 1)])
  for out in (first, started):
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  shutil.rmtree(copy)
  predict = subprocess.Popen(
      [sys.executable, 'launch.py', f'--workdir={full}', '--mode=predict'],
      cwd=launching.REPO, env=launching.environment(), text=True,
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  resumed = launching.start([f'--workdir={part}', *bert_args(
      text_dir, f'--set=train.init_from={copy}', '--set=train.steps=6',
      '--set=eval.final=false')])
  predicted = predict.communicate('red red cat\n\nblue dog blue\n',
                                  timeout=launching.TIMEOUT_S)
  return types.SimpleNamespace(
      full=full, part=part, first=first, resumed=launching.finish(resumed),
      predict=(predict.returncode, *predicted))


@pytest.mark.slow
def test_fine_tuning_from_huggingface_resumes_exactly(fine_tuned):
  full, part = fine_tuned.full, fine_tuned.part
  first, resumed = fine_tuned.first, fine_tuned.resumed
  assert 'loaded' in first.stdout and 'head/*' in first.stdout
  assert 'Resuming' in resumed.stdout and 'Warm start' not in resumed.stdout
  got, want = logged_losses(part), logged_losses(full)
  assert sorted(got) == sorted(want) == list(range(1, 7))
  assert all(np.isfinite(v) for v in got.values())
  assert got == want
  for a, b in zip(jax_leaves(final_params(part, 6)),
                  jax_leaves(final_params(full, 6))):
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
  # The final evaluation read the run's own settings (the checkpoint's).
  assert 'test split, checkpoint 6' in first.stdout


@pytest.mark.slow
def test_fine_tuned_run_predicts(fine_tuned):
  returncode, stdout, stderr = fine_tuned.predict
  assert returncode == 0, stderr[-3000:]
  lines = stdout.split('\n')[:3]
  assert lines[1] == ''
  for line in (lines[0], lines[2]):
    label, probability = line.split('\t')
    assert label in COLOURS and 1 / 3 <= float(probability) <= 1


if __name__ == '__main__':  # `on_mesh`: SOURCE WORKDIR, on 8 devices
  print(json.dumps(overlay_on_mesh(sys.argv[1], sys.argv[2])))
