"""--mode=export: a run written as a Hugging Face directory that
`transformers` loads with `from_pretrained` and that computes the run's
logits (GPT2LMHeadModel, BertForSequenceClassification, BertForMaskedLM,
in torch on the CPU); the exported tokenizer.json gives the run's ids; what
an architecture cannot compute is refused, naming the key."""

import json
import os

import jax
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
import torch
import transformers

import launch
from scripts.launching import finish, start
from transformer import checkpoint, config as config_lib, tasks, train
from transformer import huggingface
from transformer.config import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID
from transformer.config import Config, ConfigError, ModelConfig
from transformer.data import tokenizer as tokenizer_lib
from transformer.huggingface import export as export_lib
from transformer.huggingface import tokenizer_json
from transformer.model import MaskedLanguageModel
from transformer.tasks.base import ExportSpec
from transformer.tasks.labelled import Classification, Regression
from transformer.tasks.language_model import LanguageModelTask
from transformer.tasks.translation import Translation
from transformer.workdir import RunError

pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]

TOLERANCE = 1e-5
STEPS = ['--set=train.steps=20', '--set=train.checkpoint_every=20',
         '--set=eval.final=false']
# GPT-2's model; layers scanned and the embedding unshared (the layout and
# the name the export undoes).
LM = ['--experiment=tiny_lm', *STEPS, '--set=model.positions=learned',
      '--set=model.init=gpt2', '--set=model.activation=gelu',
      '--set=model.scan_layers=true', '--set=model.share_embeddings=false']
# BERT's, with its pooler; SentencePiece pieces; no segment table
# (model.token_types=0: the export writes one zero row).
BERT = ['--set=model.positions=learned', '--set=model.init=gpt2',
        '--set=model.activation=gelu_exact', '--set=model.embedding_norm=true']
CLASSIFIER = ['--experiment=tiny_classify', *STEPS, *BERT,
              '--set=model.pooling=first', '--set=model.pooler=true',
              '--set=train.learning_rate=0.01']
# Spaces (leading, trailing, doubled), tabs, line breaks, accents composed
# and not, full-width forms, characters no vocabulary has.
TEXTS = ['one two three', '  twelve  thirteen ', 'four\tfive\nsix\r\nseven',
         'café naïve', 'cafe\u0301', 'ｆｕｌｌ ｗｉｄｔｈ', '漢字 😀😀 z',
         'red red blue', '', ' ']


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """{'lm': (workdir, output), 'classifier': ...}: each trained by launch.py
  (both at once), then exported as --mode=export does, in this process (a
  launch.py process costs seconds of imports; test_launch_refuses_... runs
  the mode's command line)."""
  root = tmp_path_factory.mktemp('export')
  runs = {name: (str(root / name), str(root / f'{name}_hf'))
          for name in ('lm', 'classifier')}
  processes = [start([f'--workdir={workdir}', *args])
               for (workdir, _), args in zip(runs.values(), (LM, CLASSIFIER))]
  for process in processes:
    finish(process)
  for workdir, output in runs.values():
    with open(os.path.join(workdir, 'config.json')) as f:
      config = config_lib.from_dict(json.load(f))
    paths = launch.export(config, workdir, '', output)
    assert sorted(os.listdir(output)) == sorted(export_lib.FILES)
    assert paths == [os.path.join(output, name) for name in export_lib.FILES]
  return runs


def restored(workdir):
  """(task, params, tokenizer) of a trained workdir, as the modes do."""
  with open(os.path.join(workdir, 'config.json')) as f:
    config = config_lib.from_dict(json.load(f))
  task = tasks.for_run(config, workdir)
  params, _ = checkpoint.restore_params(task, workdir,
                                        train.make_mesh(config=config))
  return task, jax.tree.map(np.asarray, params), (
      tokenizer_lib.load_or_train(config, workdir))


def padded(rows):
  """[B, L] int32 of the rows, PAD after each; the [B, L] real mask."""
  ids = np.full((len(rows), max(map(len, rows))), PAD_ID, np.int32)
  for i, row in enumerate(rows):
    ids[i, :len(row)] = row
  real = np.zeros(ids.shape, bool)
  for i, row in enumerate(rows):
    real[i, :len(row)] = True
  return ids, real


def hf_logits(model_class, directory, ids):
  """transformers' logits (torch, CPU, eval mode) of padded ids."""
  model = model_class.from_pretrained(directory).eval()
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(ids != PAD_ID, dtype=torch.long))
  return out.logits.numpy()


def assert_close(ours, theirs):
  assert np.all(np.isfinite(ours)) and np.all(np.isfinite(theirs))
  np.testing.assert_allclose(theirs, ours, rtol=0, atol=TOLERANCE)


def noisy(params, seed=0):
  """Every parameter moved by N(0, 0.1): LayerNorm scales and biases,
  still near 1 and 0 after a few steps, would hide a misplaced one."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (x + 0.1 * rng.standard_normal(x.shape)
                                 ).astype(np.float32), params)


def test_language_model_gives_gpt2_the_same_logits(exported):
  workdir, output = exported['lm']
  task, params, tokenizer = restored(workdir)
  with open(os.path.join(output, 'config.json')) as f:
    hf = json.load(f)
  assert hf['architectures'] == ['GPT2LMHeadModel']
  assert (hf['n_layer'], hf['n_embd'], hf['activation_function']) == (
      2, 32, 'gelu_new')
  # The model reads BOS, then the text: the exported tokenizer adds it.
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(output)
  rows = [[BOS_ID] + tokenizer.encode(t) for t in TEXTS[:3]]
  assert [hf_tokenizer(t)['input_ids'] for t in TEXTS[:3]] == rows
  ids, real = padded(rows)
  targets = np.concatenate([ids[:, 1:], np.zeros_like(ids[:, :1])], axis=1)
  ours = np.asarray(task.forward(params, {'targets': targets}, rng=None))
  theirs = hf_logits(transformers.GPT2LMHeadModel, output, ids)
  assert_close(ours[real], theirs[real])


def test_classifier_gives_bert_the_same_logits(exported, tmp_path):
  workdir, output = exported['classifier']
  task, params, tokenizer = restored(workdir)
  with open(os.path.join(output, 'config.json')) as f:
    hf = json.load(f)
  assert hf['id2label'] == {str(i): n for i, n in enumerate(task.labels)}
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(output)
  rows = [[BOS_ID] + tokenizer.encode(t) + [EOS_ID] for t in TEXTS]
  assert [hf_tokenizer(t)['input_ids'] for t in TEXTS] == rows
  ids, _ = padded(rows)
  model = transformers.BertForSequenceClassification
  theirs = hf_logits(model, output, ids)
  assert_close(np.asarray(task.scores(params, ids)), theirs)
  assert np.ptp(theirs) > 0.1  # trained: the logits differ by class
  # Every parameter moved: each lands in its place.
  params = noisy(params)
  export_lib.write(task.config, task.export_spec(), params, tokenizer,
                   str(tmp_path))
  assert_close(np.asarray(task.scores(params, ids)),
               hf_logits(model, str(tmp_path), ids))


def test_masked_lm_params_give_bert_mlm_the_same_logits(exported, tmp_path):
  _, _, tokenizer = restored(exported['classifier'][0])
  config = config_lib.override_all(Config(task='masked_lm'), [
      f'model.vocab_size={tokenizer.vocab_size}', 'model.d_model=32',
      'model.d_ff=64', 'model.num_heads=4', 'model.num_encoder_layers=2',
      'model.max_length=32', 'model.token_types=2',
      'model.layer_norm_epsilon=1e-12'] + [b[6:] for b in BERT])
  spec = ExportSpec(export_lib.BERT_MLM, bos=True, eos=True)
  assert export_lib.needs(config.model, spec.architecture) == []
  model = MaskedLanguageModel(config.model)
  ids, _ = padded([[BOS_ID] + tokenizer.encode(t) + [EOS_ID]
                   for t in TEXTS[:4]])
  ids[0, 2] = MASK_ID
  params = noisy(jax.tree.map(np.asarray, model.init(
      jax.random.key(0), ids)['params']))
  export_lib.write(config, spec, params, tokenizer, str(tmp_path))
  theirs = hf_logits(transformers.BertForMaskedLM, str(tmp_path), ids)
  ours = np.asarray(model.apply({'params': params}, ids))
  real = ids != PAD_ID
  assert_close(ours[real], theirs[real])


def test_incompatible_models_are_refused_with_the_key():
  gpt2_ready = ModelConfig(num_encoder_layers=0, num_decoder_layers=1,
                           norm_position='pre', positions='learned',
                           init='gpt2')
  lm = Config(task='language_model', model=gpt2_ready)
  assert export_lib.check(lm, LanguageModelTask(lm)).architecture == (
      'GPT2LMHeadModel')
  sinusoidal = Config(task='language_model', model=ModelConfig(
      **{**vars(gpt2_ready), 'positions': 'sinusoidal'}))
  with pytest.raises(ConfigError, match=r"GPT2LMHeadModel.*model\.positions="
                     r"'sinusoidal'.*needs 'learned'") as error:
    export_lib.check(sinusoidal, LanguageModelTask(sinusoidal))
  assert 'model.init' not in str(error.value)  # only what is at fault
  # The classifier defaults: pre-LN's opposite, mean pooling, no pooler...
  labelled = Config(task='classification')
  with pytest.raises(ConfigError) as error:
    export_lib.check(labelled, Classification(labelled, labels=('a', 'b')))
  for key in ('model.positions', 'model.init', 'model.embedding_norm',
              'model.pooling', 'model.pooler'):
    assert key in str(error.value)
  assert 'model.norm_position' not in str(error.value)  # post-LN is BERT's
  with pytest.raises(ConfigError, match='task=translation has no Hugging '
                     'Face architecture'):
    export_lib.check(Config(), Translation(Config()))


def test_output_must_be_new_empty_or_an_earlier_export(tmp_path):
  export_lib.check_output(str(tmp_path / 'new'))
  export_lib.check_output(str(tmp_path))
  (tmp_path / 'config.json').write_text('{}')
  export_lib.check_output(str(tmp_path))  # an earlier export: replaced
  (tmp_path / 'notes.txt').write_text('mine')
  with pytest.raises(RunError, match=r'--output=.*notes\.txt'):
    export_lib.check_output(str(tmp_path))
  with pytest.raises(RunError, match='needs --output=DIR'):
    export_lib.check_output('')


def test_launch_refuses_an_output_with_other_files(exported, tmp_path):
  (tmp_path / 'notes.txt').write_text('mine')
  out = finish(start([f'--workdir={exported["classifier"][0]}',
                      '--mode=export', f'--output={tmp_path}']), check=False)
  assert out.returncode == 2
  assert 'notes.txt' in out.stderr and 'Traceback' not in out.stderr
  assert os.listdir(tmp_path) == ['notes.txt']


@pytest.mark.parametrize('model_type', ['unigram', 'bpe'])
def test_sentencepiece_tokenizer_json_gives_the_same_ids(tmp_path,
                                                         model_type):
  words = ('the quick brown fox jumps over lazy dogs café naïve über straße '
           'señor 123 4.5 hello, world! ¿qué?').split()
  rng = np.random.default_rng(0)
  lines = [(' '.join(rng.choice(words, rng.integers(3, 12))),)
           for _ in range(500)]
  ours = tokenizer_lib.train(lines, str(tmp_path / 'spm.model'),
                             vocab_size=60, model_type=model_type)
  with open(ours.path, 'rb') as f:
    theirs, specials = tokenizer_json.sentencepiece_tokenizer(f.read())
  assert specials == {PAD_ID: '<pad>', UNK_ID: '<unk>', BOS_ID: '<s>',
                      EOS_ID: '</s>'}
  for text in TEXTS + [' '.join(w for w, in lines[:3])]:
    assert theirs.encode(text).ids == ours.encode(text), repr(text)
  assert UNK_ID in ours.encode('漢字')  # the unknown case is exercised
  assert theirs.decode(ours.encode('the  quick fox ')) == ours.decode(
      ours.encode('the  quick fox '))


def test_char_tokenizer_json_gives_the_same_ids():
  ours = tokenizer_lib.CharTokenizer(list('abcé \n\t😀'), 20,
                                     reserved=('<mask>',))
  theirs, specials = tokenizer_json.char_tokenizer(ours)
  assert specials[MASK_ID] == '<mask>' and len(specials) == 5
  assert theirs.get_vocab_size() == 20
  for text in ['abc', 'a b\n\tc', 'e\u0301 é', '😀x😀', 'zz\r\n', '  ', '']:
    assert theirs.encode(text).ids == ours.encode(text), repr(text)
  assert ours.encode('x') == [UNK_ID]
  json_text = tokenizer_json.finish_tokenizer(
      theirs, specials, ExportSpec(export_lib.BERT_MLM, bos=True, eos=True))
  wrapped = tokenizers.Tokenizer.from_str(json_text)
  assert wrapped.encode('ab').ids == [BOS_ID, 4 + 1, 4 + 2, EOS_ID]
  assert wrapped.encode('<mask>').ids == [BOS_ID, MASK_ID, EOS_ID]


def test_heads_fold_into_the_exported_weights():
  """Regression exports values in the targets' units; a one-logit
  classifier two logits whose softmax is its probabilities; post-hoc logit
  adjustment (eval.logit_adjust_tau) shifts the bias."""
  rng = np.random.default_rng(0)
  pooled = rng.standard_normal((5, 4))

  def folded(task, outputs):
    head = {'kernel': rng.standard_normal((4, outputs)).astype(np.float32),
            'bias': rng.standard_normal(outputs).astype(np.float32)}
    ours = pooled @ head['kernel'] + head['bias']
    new = export_lib.fold_head({'head': head}, task.export_spec())['head']
    theirs = pooled @ new['kernel'] + new['bias']
    assert np.all(np.isfinite(ours)) and np.all(np.isfinite(theirs))
    return ours, theirs

  regression = Regression(Config(task='regression'), names=('a', 'b'),
                          mean=(1.0, -2.0), std=(2.0, 0.5))
  ours, theirs = folded(regression, 2)
  np.testing.assert_allclose(theirs, regression.values(ours), atol=1e-5)
  assert regression.export_spec().config['problem_type'] == 'regression'
  sigmoid = Classification(config_lib.override(
      Config(task='classification'), 'train.loss=log_loss'),
                           labels=('no', 'yes'))
  ours, theirs = folded(sigmoid, 1)
  softmax = np.exp(theirs) / np.exp(theirs).sum(axis=1, keepdims=True)
  np.testing.assert_allclose(softmax, sigmoid.probabilities(ours), atol=1e-6)
  adjusted = Classification(config_lib.override(
      Config(task='classification'), 'eval.logit_adjust_tau=1.0'),
                            labels=('a', 'b', 'c'), counts=(8, 4, 1))
  ours, theirs = folded(adjusted, 3)
  softmax = np.exp(theirs) / np.exp(theirs).sum(axis=1, keepdims=True)
  np.testing.assert_allclose(softmax, adjusted.probabilities(ours),
                             atol=1e-6)


def test_a_hugging_face_model_goes_back_as_it_came(tmp_path):
  """Imported (the vocabulary renumbered: [PAD] [UNK] [CLS] [SEP] [MASK]
  to ids 0-4) and exported: the same tensors, the same tokenizer.json."""
  source, out = tmp_path / 'source', tmp_path / 'out'
  words = [f'w{i}' for i in range(20)]
  vocab = {t: i for i, t in enumerate(
      words[:5] + ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + words[5:])}
  tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab,
                                                         unk_token='[UNK]'))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.add_special_tokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'])
  tok.post_processor = tokenizers.processors.TemplateProcessing(
      single='[CLS] $A [SEP]', special_tokens=[('[CLS]', 7), ('[SEP]', 8)])
  source.mkdir()
  tok.save(str(source / 'tokenizer.json'))
  torch.manual_seed(0)
  transformers.BertForSequenceClassification(transformers.BertConfig(
      vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
      num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
      pad_token_id=5, num_labels=2)).save_pretrained(str(source))
  model = huggingface.read_model_config(str(source))
  config = config_lib.override_all(
      Config(task='classification'),
      [f'{k}={v}' for k, v in model.overrides.items()] +
      ['model.pooling=first'])
  hf_tokenizer = huggingface.HuggingFaceTokenizer(
      tokenizers.Tokenizer.from_file(str(source / 'tokenizer.json')),
      huggingface.vocabulary_map(str(source)), str(source / 'tokenizer.json'))
  params = huggingface.load_params(str(source))
  spec = ExportSpec(export_lib.BERT_CLASSIFIER, bos=True, eos=True)
  export_lib.write(config, spec, params, hf_tokenizer, str(out))
  before = safetensors.numpy.load_file(str(source / 'model.safetensors'))
  after = safetensors.numpy.load_file(str(out / 'model.safetensors'))
  before.pop('bert.embeddings.position_ids', None)
  assert sorted(after) == sorted(before)
  for name, array in before.items():
    assert np.all(np.isfinite(array)), name
    np.testing.assert_array_equal(after[name], array, err_msg=name)
  assert (out / 'tokenizer.json').read_text() == (
      source / 'tokenizer.json').read_text()
  with open(out / 'tokenizer_config.json') as f:
    roles = json.load(f)
  assert (roles['cls_token'], roles['mask_token'], roles['pad_token']) == (
      '[CLS]', '[MASK]', '[PAD]')
  with open(out / 'config.json') as f:
    assert json.load(f)['pad_token_id'] == 5
