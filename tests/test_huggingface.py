"""Importing Hugging Face BERT and GPT-2 checkpoints (transformer/huggingface/).

The reference is `transformers` itself (a test-only dependency): tiny
randomly initialised BertForMaskedLM, BertForSequenceClassification,
BertModel and GPT2LMHeadModel saved with `save_pretrained`, their
tokenizers built with the `tokenizers` library and read back by
`transformers`' own tokenizer classes (BertTokenizerLegacy, pure Python,
from vocab.txt; GPT2Tokenizer from the vocabulary and merges). Nothing is
downloaded.
"""

import dataclasses
import json
import os
import pickle

import jax
import numpy as np
import pytest
import torch
import transformers
from tokenizers.implementations import (BertWordPieceTokenizer,
                                        ByteLevelBPETokenizer)

from transformer import config as config_lib
from transformer import huggingface
from transformer.config import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID
from transformer.data import tokenizer as tokenizer_lib
from transformer.data.corpus import DataError
from transformer.huggingface import vocabulary, weights
from transformer.model import (EncoderClassifier, LanguageModel,
                               MaskedLanguageModel, Transformer)
from transformer.tasks.labelled import pipeline as labelled_pipeline

CORPUS = [
    'The quick brown fox jumps over the lazy dog.',
    'A journey of a thousand miles begins with a single step!',
    'To be, or not to be: that is the question.',
    'She sells sea shells by the sea shore, said the teacher.',
    'Numbers like 3.14 and 42 appear; so do commas, dots and dashes - too.',
    'What is the answer? Nobody knows the answer to the question.',
]
# Unknown words and characters, punctuation, accents, digits.
TEXTS = [
    'The quick fox, the lazy dog!',
    'Café naïve RÉSUMÉ: façade?',
    'zebras quixotically jump ☃ 🙂',
    "it's 3.14 -- isn't it",
    'question',
]
TOLERANCE = 1e-5  # float32, max abs difference of outputs


def assert_finite(*arrays):
  for array in arrays:
    assert np.all(np.isfinite(np.asarray(array))), array


def randomize(model: torch.nn.Module, seed: int) -> None:
  """Every parameter random (biases and LayerNorms included: a mapping that
  mixes them up must show), of a scale that makes outputs O(1)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=generator) * 0.2
      p.copy_(1.0 + noise if 'LayerNorm.weight' in name or
              '.ln_' in name else noise)
  model.eval()


def model_config(directory: str, **changes) -> config_lib.ModelConfig:
  overrides = huggingface.read_model_config(directory).overrides
  return config_lib.ModelConfig(**{
      key.split('.', 1)[1]: value for key, value in overrides.items()
      if key.startswith('model.')}, **changes)


def same_structure(ours: dict, reference: dict) -> None:
  """The imported params have the modules' own names and shapes."""
  shapes = lambda tree: jax.tree.map(np.shape, tree)
  assert shapes(ours) == shapes(reference)


# ---------------------------------------------------------------------------
# The vocabulary map, hand-computed.
# ---------------------------------------------------------------------------


def test_bert_map_is_the_permutation_of_the_specials():
  ids = {'[PAD]': 0, '[UNK]': 100, '[CLS]': 101, '[SEP]': 102, '[MASK]': 103}
  vocab_map = vocabulary.for_bert(110, ids.get)
  expected = list(range(110))
  expected[100:104] = [1, 2, 3, 4]  # [UNK] [CLS] [SEP] [MASK]
  expected[1:5] = [100, 101, 102, 103]  # [unused0..3] take their ids
  assert vocab_map.size == 110
  assert list(vocab_map.forward) == expected
  assert vocab_map.ids_to_hf([PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID]) == [
      0, 100, 101, 102, 103]
  rows = np.arange(110.0)[:, None]
  np.testing.assert_array_equal(vocab_map.to_hf(vocab_map.to_project(rows)),
                                rows)
  assert vocab_map.to_project(rows)[BOS_ID, 0] == 101


def test_gpt2_map_appends_pad_unk_bos():
  vocab_map = vocabulary.for_gpt2(10, {'<|endoftext|>': 9}.get)
  assert vocab_map.size == 13
  # <|endoftext|> -> EOS; HF 0..3 to the vacated 9 and the new 10, 11, 12.
  assert list(vocab_map.forward) == [9, 10, 11, 12, 4, 5, 6, 7, 8, 3]
  assert vocab_map.ids_to_hf([0, 1, 2, 3]) == [-1, -1, -1, 9]
  rows = np.arange(20.0).reshape(10, 2)
  table = vocab_map.to_project(rows)
  np.testing.assert_array_equal(table[[PAD_ID, UNK_ID]], [[9.0, 10.0]] * 2)
  np.testing.assert_array_equal(table[BOS_ID], rows[9])  # a copy of <|eot|>
  np.testing.assert_array_equal(table[EOS_ID], rows[9])
  np.testing.assert_array_equal(vocab_map.to_hf(table), rows)
  again = vocabulary.VocabularyMap.from_json(vocab_map.to_json())
  assert list(again.forward) == list(vocab_map.forward)
  assert again.new == vocab_map.new


def test_map_refuses_a_missing_special():
  with pytest.raises(DataError, match=r'tokenizer\.json has no \[MASK\]'):
    vocabulary.for_bert(20, {'[PAD]': 0, '[UNK]': 1, '[CLS]': 2,
                             '[SEP]': 3}.get)
  with pytest.raises(DataError, match='outside'):
    vocabulary.for_gpt2(10, {'<|endoftext|>': 10}.get)


# ---------------------------------------------------------------------------
# BERT.
# ---------------------------------------------------------------------------

BERT_SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=40)


@pytest.fixture(scope='module')
def bert(tmp_path_factory):
  """Directories of BertForMaskedLM, BertForSequenceClassification and its
  BertModel (no 'bert.' prefix, with the pooler), sharing a WordPiece
  tokenizer whose specials sit where BERT's do: [PAD] 0, [unused*], then
  [UNK] [CLS] [SEP] [MASK]."""
  root = tmp_path_factory.mktemp('bert')
  trainer = BertWordPieceTokenizer(lowercase=True)
  trainer.train_from_iterator(CORPUS, vocab_size=150, show_progress=False)
  specials = ['[PAD]', '[unused0]', '[unused1]', '[unused2]', '[unused3]',
              '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  pieces = sorted(trainer.get_vocab(), key=trainer.get_vocab().get)
  vocab = specials + [p for p in pieces if p not in specials]
  vocab_file = root / 'vocab.txt'
  vocab_file.write_text('\n'.join(vocab) + '\n', encoding='utf-8')
  tokenizer = BertWordPieceTokenizer(str(vocab_file), lowercase=True)
  reference = transformers.BertTokenizerLegacy(str(vocab_file),
                                               do_lower_case=True)
  config = transformers.BertConfig(vocab_size=len(vocab), **BERT_SHAPE)
  torch.manual_seed(0)
  models = {'mlm': transformers.BertForMaskedLM(config),
            'classifier': transformers.BertForSequenceClassification(
                transformers.BertConfig(vocab_size=len(vocab), num_labels=3,
                                        **BERT_SHAPE))}
  randomize(models['mlm'], 1)
  randomize(models['classifier'], 2)
  models['base'] = models['classifier'].bert
  for name, model in models.items():
    model.save_pretrained(root / name)
    tokenizer.save(str(root / name / 'tokenizer.json'))
  return {'root': root, 'models': models, 'reference': reference,
          'dirs': {name: str(root / name) for name in models}}


def bert_batch(bert):
  """TEXTS as HF's tokenizer makes them ([CLS] ... [SEP], padded with
  [PAD]): HF ids, the attention mask, and the project's ids."""
  batch = bert['reference'](TEXTS, padding=True, return_tensors='np')
  vocab_map = huggingface.vocabulary_map(bert['dirs']['mlm'])
  ours = np.asarray([vocab_map.ids_to_project(row)
                     for row in batch['input_ids']], np.int32)
  return batch['input_ids'], batch['attention_mask'], ours, vocab_map


def test_read_model_config_bert(bert):
  model = huggingface.read_model_config(bert['dirs']['mlm'])
  assert model.arch == 'bert'
  assert set(model.families) == {'classification', 'regression', 'masked_lm'}
  o = model.overrides
  assert (o['model.d_model'], o['model.d_ff'], o['model.num_heads'],
          o['model.num_encoder_layers'], o['model.max_length']) == (
              32, 64, 4, 2, 40)
  assert (o['model.activation'], o['model.norm_position'],
          o['model.layer_norm_epsilon'], o['model.token_types']) == (
              'gelu_exact', 'post', 1e-12, 2)
  assert o['model.vocab_size'] == bert['models']['mlm'].config.vocab_size
  assert o['data.tokenizer'] == 'huggingface'
  assert o['model.pooler'] is False  # BertForMaskedLM has no pooler
  assert huggingface.read_model_config(
      bert['dirs']['base']).overrides['model.pooler'] is True
  assert huggingface.is_model_dir(bert['dirs']['mlm'])
  assert not huggingface.is_model_dir(str(bert['root']))


def test_bert_masked_lm_logits_equal_transformers(bert):
  hf_ids, attention_mask, ids, vocab_map = bert_batch(bert)
  assert (ids[attention_mask == 0] == PAD_ID).all()
  assert (ids[:, 0] == BOS_ID).all()  # [CLS]
  with torch.no_grad():
    expected = bert['models']['mlm'](
        input_ids=torch.tensor(hf_ids),
        attention_mask=torch.tensor(attention_mask)).logits.numpy()
  params = huggingface.load_params(bert['dirs']['mlm'])
  model = MaskedLanguageModel(model_config(bert['dirs']['mlm']))
  same_structure(params, model.init(jax.random.key(0), ids)['params'])
  logits = np.asarray(model.apply({'params': params}, ids))
  got = logits[..., vocab_map.forward]  # HF's columns
  real = attention_mask == 1
  difference = np.abs(got[real] - expected[real]).max()
  print(f'BERT masked-LM logits: max abs difference {difference:.2e}, '
        f'logits up to {np.abs(expected).max():.1f}')
  assert_finite(logits)
  assert difference < TOLERANCE


def test_bert_encoder_and_classifier_equal_transformers(bert):
  hf_ids, attention_mask, ids, _ = bert_batch(bert)
  hf = bert['models']['classifier']
  with torch.no_grad():
    inputs = dict(input_ids=torch.tensor(hf_ids),
                  attention_mask=torch.tensor(attention_mask))
    hidden = hf.bert(**inputs).last_hidden_state.numpy()
    expected = hf(**inputs).logits.numpy()
  # BertModel's own directory: names without the 'bert.' prefix.
  base = huggingface.load_params(bert['dirs']['base'])
  encoder_config = dataclasses.replace(
      model_config(bert['dirs']['base']), num_decoder_layers=0)
  encoded = np.asarray(Transformer(encoder_config).apply(
      {'params': base['encoder']}, ids, method=Transformer.encode))
  real = attention_mask == 1
  hidden_difference = np.abs(encoded[real] - hidden[real]).max()
  params = huggingface.load_params(bert['dirs']['classifier'])
  config = model_config(bert['dirs']['classifier'], pooling='first')
  assert config.pooler
  classifier = EncoderClassifier(config, num_outputs=3)
  same_structure(params, classifier.init(jax.random.key(0), ids)['params'])
  logits = np.asarray(classifier.apply({'params': params}, ids))
  logit_difference = np.abs(logits - expected).max()
  print(f'BERT encoder outputs: max abs difference {hidden_difference:.2e}; '
        f'classifier logits: {logit_difference:.2e}')
  assert_finite(encoded, logits)
  assert hidden_difference < TOLERANCE
  assert logit_difference < TOLERANCE


def test_bert_round_trip(bert):
  for name in ('mlm', 'classifier'):
    directory = bert['dirs'][name]
    tensors = {k: v.numpy() for k, v in
               bert['models'][name].state_dict().items()
               if k != 'cls.predictions.decoder.weight'}  # tied, not saved
    tensors.pop('cls.predictions.decoder.bias', None)
    vocab_map = huggingface.vocabulary_map(directory)
    back = huggingface.to_hf(
        weights.to_project(tensors, 'bert', vocab_map, num_heads=4),
        'bert', vocab_map)
    assert set(back) == set(tensors)
    for key, value in tensors.items():
      assert_finite(value)
      assert_finite(value)
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_bert_tokenizer_ids_equal_transformers(bert, tmp_path):
  vocab_map = huggingface.vocabulary_map(bert['dirs']['mlm'])
  huggingface.install_tokenizer(bert['dirs']['mlm'], str(tmp_path))
  config = config_lib.override_all(config_lib.Config(), [
      'data.tokenizer=huggingface', f'model.vocab_size={vocab_map.size}'])
  assert tokenizer_lib.filename(config) == 'tokenizer.json'
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path))
  reference = bert['reference']
  batch = tokenizer.encode_batch(TEXTS)
  for text, encoded in zip(TEXTS, batch):
    expected = reference(text, add_special_tokens=False)['input_ids']
    assert tokenizer.encode(text) == encoded
    assert encoded == vocab_map.ids_to_project(expected), text
    # The pipelines' BOS ... EOS is BERT's [CLS] ... [SEP].
    assert [BOS_ID] + encoded + [EOS_ID] == vocab_map.ids_to_project(
        reference(text)['input_ids'])
  # The labelled pipeline gives a BERT-family model [CLS] ... [SEP] with
  # either pooling: sentence-transformers' mean pools over [CLS] too.
  for pooling in ('first', 'mean'):
    labelled = config_lib.override_all(config, [
        f'model.pooling={pooling}', 'task=classification'])
    rows = labelled_pipeline.eval_batches(
        labelled, tokenizer, [(t, None) for t in TEXTS])[0].inputs
    for text, row in zip(TEXTS, rows):
      want = vocab_map.ids_to_project(reference(text)['input_ids'])
      assert list(row[:len(want)]) == want and not row[len(want):].any()
  assert UNK_ID in tokenizer.encode('zebras ☃')
  assert tokenizer.decode(tokenizer.encode('The quick fox, the lazy dog!') +
                          [EOS_ID, 7]) == 'the quick fox, the lazy dog!'
  assert tokenizer.normalize('Café naïve') == 'cafe naive'
  assert [tokenizer.id_to_piece(i) for i in range(5)] == [
      '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  again = pickle.loads(pickle.dumps(tokenizer))
  assert again.encode_batch(TEXTS) == batch
  assert again.vocab_size == tokenizer.vocab_size == vocab_map.size


# ---------------------------------------------------------------------------
# GPT-2.
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def gpt2(tmp_path_factory):
  """GPT2LMHeadModel with a byte-level BPE tokenizer whose only special
  token, <|endoftext|>, is the last id (as GPT-2's 50256)."""
  root = tmp_path_factory.mktemp('gpt2')
  tokenizer = ByteLevelBPETokenizer()
  tokenizer.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                                show_progress=False)
  tokenizer.add_special_tokens(['<|endoftext|>'])
  vocab_size = tokenizer.get_vocab_size()
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=40,
      bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1))
  randomize(model, 3)
  directory = root / 'gpt2'
  model.save_pretrained(directory)
  tokenizer.save(str(directory / 'tokenizer.json'))
  state = json.loads((directory / 'tokenizer.json').read_text())
  reference = transformers.GPT2Tokenizer(
      vocab=state['model']['vocab'],
      merges=[tuple(merge) for merge in state['model']['merges']])
  return {'model': model, 'dir': str(directory), 'reference': reference,
          'end': vocab_size - 1}


def test_read_model_config_gpt2(gpt2):
  model = huggingface.read_model_config(gpt2['dir'])
  assert model.arch == 'gpt2' and model.families == ('language_model',)
  o = model.overrides
  assert (o['model.num_decoder_layers'], o['model.num_encoder_layers'],
          o['model.d_ff'], o['model.activation'], o['model.norm_position'],
          o['model.layer_norm_epsilon']) == (2, 0, 128, 'gelu', 'pre', 1e-5)
  assert o['model.vocab_size'] == gpt2['end'] + 1 + 3  # PAD, UNK, BOS added


def gpt2_lm(gpt2):
  params = huggingface.load_params(gpt2['dir'])
  model = LanguageModel(model_config(gpt2['dir']))
  tokens = np.ones((1, 4), np.int32)
  same_structure(params, model.init(jax.random.key(0), tokens)['params'])
  return model, params, huggingface.vocabulary_map(gpt2['dir'])


def test_gpt2_logits_equal_transformers(gpt2):
  model, params, vocab_map = gpt2_lm(gpt2)
  rows = [gpt2['reference'](text)['input_ids'] for text in TEXTS]
  length = max(map(len, rows))
  hf_ids = np.full((len(rows), length), gpt2['end'])
  attention_mask = np.zeros_like(hf_ids)
  for i, row in enumerate(rows):
    hf_ids[i, :len(row)], attention_mask[i, :len(row)] = row, 1
  with torch.no_grad():
    expected = gpt2['model'](
        input_ids=torch.tensor(hf_ids),
        attention_mask=torch.tensor(attention_mask)).logits.numpy()
  ids = np.asarray([vocab_map.ids_to_project(row) for row in hf_ids],
                   np.int32)
  ids[attention_mask == 0] = PAD_ID
  # The decoder itself, on the ids as they are (no shift).
  logits = np.asarray(model.apply(
      {'params': params}, ids,
      method=lambda m, x: m.decoder.decode(None, None, x)))
  real = attention_mask == 1
  difference = np.abs(logits[..., vocab_map.forward][real] -
                      expected[real]).max()
  print(f'GPT-2 logits: max abs difference {difference:.2e}, logits up to '
        f'{np.abs(expected).max():.1f}')
  assert_finite(logits)
  assert difference < TOLERANCE


def test_gpt2_bos_is_endoftext(gpt2):
  """Teacher forcing reads BOS, then the text: BOS's row is
  <|endoftext|>'s, so the logits are HF's on <|endoftext|> + text."""
  model, params, vocab_map = gpt2_lm(gpt2)
  hf_text = gpt2['reference'](TEXTS[0])['input_ids']
  targets = np.asarray([vocab_map.ids_to_project(hf_text) + [EOS_ID]],
                       np.int32)
  with torch.no_grad():
    expected = gpt2['model'](
        input_ids=torch.tensor([[gpt2['end']] + hf_text])).logits.numpy()
  logits = np.asarray(model.apply({'params': params}, targets))
  difference = np.abs(logits[..., vocab_map.forward] - expected).max()
  assert_finite(logits)
  assert difference < TOLERANCE
  table = params['decoder']['embedding']['embedding']
  assert_finite(table)
  np.testing.assert_array_equal(table[BOS_ID], table[EOS_ID])
  np.testing.assert_allclose(table[PAD_ID], table[vocab_map.forward].mean(0),
                             rtol=1e-6)


def test_gpt2_round_trip(gpt2):
  tensors = {k: v.numpy() for k, v in gpt2['model'].state_dict().items()
             if k != 'lm_head.weight'}  # tied, not saved
  vocab_map = huggingface.vocabulary_map(gpt2['dir'])
  back = huggingface.to_hf(
      weights.to_project(tensors, 'gpt2', vocab_map, num_heads=4), 'gpt2',
      vocab_map)
  assert set(back) == set(tensors)
  for key, value in tensors.items():
    assert_finite(value)
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_gpt2_tokenizer_ids_equal_transformers(gpt2, tmp_path):
  huggingface.install_tokenizer(gpt2['dir'], str(tmp_path))
  vocab_map = huggingface.vocabulary_map(gpt2['dir'])
  config = config_lib.override_all(config_lib.Config(), [
      'data.tokenizer=huggingface', f'model.vocab_size={vocab_map.size}'])
  tokenizer = tokenizer_lib.load_or_train(config, str(tmp_path))
  for text, encoded in zip(TEXTS, tokenizer.encode_batch(TEXTS)):
    expected = gpt2['reference'](text)['input_ids']
    assert encoded == tokenizer.encode(text) == vocab_map.ids_to_project(
        expected), text
    assert tokenizer.decode(encoded) == text  # byte-level: lossless
  end = tokenizer.encode('<|endoftext|>')
  assert end == [EOS_ID]
  assert tokenizer.decode([BOS_ID] + tokenizer.encode('fox') + [EOS_ID, 9]) \
      == 'fox'
  assert tokenizer.decode(tokenizer.encode('a') + [UNK_ID]) == 'a\ufffd'
  assert [tokenizer.id_to_piece(i) for i in range(4)] == [
      '<pad>', '<unk>', '<s>', '<|endoftext|>']


# ---------------------------------------------------------------------------
# What the import refuses.
# ---------------------------------------------------------------------------


def test_unsupported_config_is_refused(bert, tmp_path):
  source = bert['dirs']['mlm']
  for name in ('config.json', 'model.safetensors', 'tokenizer.json'):
    (tmp_path / name).write_bytes(open(os.path.join(source, name),
                                       'rb').read())
  hf = json.loads((tmp_path / 'config.json').read_text())
  for key, value in (('position_embedding_type', 'relative_key'),
                     ('model_type', 'roberta'), ('hidden_act', 'swish')):
    (tmp_path / 'config.json').write_text(json.dumps({**hf, key: value}))
    with pytest.raises(DataError, match=rf'config\.json: {key}=.*accepts'):
      huggingface.read_model_config(str(tmp_path))
  (tmp_path / 'config.json').write_text(json.dumps(hf))
  os.remove(tmp_path / 'tokenizer.json')
  with pytest.raises(DataError, match='has no tokenizer.json'):
    huggingface.load_params(str(tmp_path))


def test_unknown_tensor_and_missing_tokenizer_are_refused(bert, tmp_path):
  vocab_map = huggingface.vocabulary_map(bert['dirs']['mlm'])
  tensors = {k: v.numpy() for k, v in
             bert['models']['mlm'].state_dict().items()}
  with pytest.raises(DataError, match="'encoder.layer.0.extra.weight'"):
    weights.to_project({**tensors, 'bert.encoder.layer.0.extra.weight':
                        np.zeros(3)}, 'bert', vocab_map, num_heads=4)
  del tensors['bert.encoder.layer.1.output.dense.bias']
  with pytest.raises(DataError, match='lacks 1 tensors'):
    weights.to_project(tensors, 'bert', vocab_map, num_heads=4)
  config = config_lib.override_all(config_lib.Config(), [
      'data.tokenizer=huggingface'])
  with pytest.raises(DataError, match='train.init_from'):
    tokenizer_lib.load_or_train(config, str(tmp_path))

