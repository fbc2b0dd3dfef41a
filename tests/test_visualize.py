"""Attention pictures and training curves.

The captured attention is checked against NumPy recomputations from the
parameters (float64, written out here), and the greedy translation against a
naive decoding loop of full forward passes; the pictures are checked as PNGs.
"""

import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from transformer import plots
from transformer import visualize
from transformer.config import BOS_ID, EOS_ID, PAD_ID
from transformer.model import Transformer
from transformer.tasks.labelled import pictures as labelled_pictures
from transformer.tasks.translation import pictures as translation_pictures

from conftest import TINY_MODEL

SOURCE = [5, 6, 7, 8, 9, 3]  # EOS last
TARGET = [10, 11, 12, 3]


@pytest.fixture(scope='module')
def params():
  tokens = jnp.ones((1, 4), jnp.int32)
  return Transformer(TINY_MODEL).init(jax.random.key(7), tokens,
                                      tokens)['params']


@pytest.fixture(scope='module')
def captured(params):
  return translation_pictures.capture_attention(params, TINY_MODEL, SOURCE, TARGET)


class FakeTokenizer:
  """Whitespace words <-> ids 4.. ; pieces are '▁word' like SentencePiece's."""
  SPECIAL = {PAD_ID: '<pad>', 1: '<unk>', BOS_ID: '<s>', EOS_ID: '</s>'}

  def __init__(self, vocab_size):
    self.words = [f'w{i}' for i in range(vocab_size)]

  def encode(self, text):
    return [self.words.index(w) for w in text.split()]

  def decode(self, ids):
    ids = list(ids)
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return ' '.join(self.words[i] for i in ids if i >= 4)

  def id_to_piece(self, i):
    return self.SPECIAL.get(int(i), '▁' + self.words[int(i)])


# ---------------------------------------------------------------------------
# NumPy references.
# ---------------------------------------------------------------------------


def assert_finite(*arrays):
  """assert_allclose treats NaN as equal to NaN: check both sides first."""
  for array in arrays:
    assert np.all(np.isfinite(np.asarray(array, np.float64))), array


def np_softmax(logits):
  logits = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(logits)
  return e / e.sum(axis=-1, keepdims=True)


def np_positions(length, d_model):
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
  pe = np.zeros((length, d_model))
  for pos in range(length):
    for i in range(d_model // 2):
      angle = pos / 10_000 ** (2 * i / d_model)
      pe[pos, 2 * i], pe[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
  return pe


def np_embed(params, ids):
  table = np.asarray(params['embedding']['embedding'], np.float64)
  d = TINY_MODEL.d_model
  return table[ids] * math.sqrt(d) + np_positions(len(ids), d)


def np_attention(module, queries_in, keys_in, mask=None):
  """softmax(x_q W_q (x_k W_k)^T / sqrt(H)) per head: [heads, T, S]."""
  p = lambda name, part: np.asarray(module[name][part], np.float64)
  q = np.einsum('td,dnh->nth', queries_in, p('query', 'kernel')) + p(
      'query', 'bias')[:, None, :]
  k = np.einsum('sd,dnh->nsh', keys_in, p('key', 'kernel')) + p(
      'key', 'bias')[:, None, :]
  logits = np.einsum('nth,nsh->nts', q, k) / math.sqrt(q.shape[-1])
  if mask is not None:
    logits = np.where(mask, logits, -np.inf)
  return np_softmax(logits)


# ---------------------------------------------------------------------------
# Captured attention.
# ---------------------------------------------------------------------------


def test_shapes_and_rows_are_distributions(captured):
  heads, s, t = TINY_MODEL.num_heads, len(SOURCE), len(TARGET)
  shapes = {'encoder_self': (heads, s, s), 'decoder_self': (heads, t, t),
            'cross': (heads, t, s)}
  layers = {'encoder_self': TINY_MODEL.num_encoder_layers,
            'decoder_self': TINY_MODEL.num_decoder_layers,
            'cross': TINY_MODEL.num_decoder_layers}
  for kind in plots.KINDS:
    assert len(captured[kind]) == layers[kind]
    for weights in captured[kind]:
      assert weights.shape == shapes[kind]
      assert_finite(weights)
      assert np.all(weights >= 0)
      np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


def test_decoder_self_attention_is_causal(captured):
  t = len(TARGET)
  above = np.triu(np.ones((t, t), bool), k=1)
  for weights in captured['decoder_self']:
    assert np.all(weights[:, above] == 0.0)  # exactly
    assert np.all(weights[:, ~above] > 0.0)  # the rest is really attended
  # The first position sees only itself.
  np.testing.assert_array_equal(captured['decoder_self'][0][:, 0, 0], 1.0)


def test_first_layers_match_numpy_from_embeddings(params, captured):
  """Layer 0 self-attention recomputed from the embedding table up."""
  x = np_embed(params, SOURCE)
  expected = np_attention(params['encoder_0']['self_attention'], x, x)
  assert_finite(captured['encoder_self'][0], expected)
  np.testing.assert_allclose(captured['encoder_self'][0], expected, atol=2e-5)

  y = np_embed(params, [BOS_ID] + TARGET[:-1])
  causal = np.tril(np.ones((len(TARGET), len(TARGET)), bool))
  expected = np_attention(params['decoder_0']['self_attention'], y, y, causal)
  assert_finite(captured['decoder_self'][0], expected)
  np.testing.assert_allclose(captured['decoder_self'][0], expected, atol=2e-5)


def test_cross_attention_matches_numpy(params, captured):
  """Every layer's cross-attention from its actual inputs: the decoder
  stream after self-attention (post-LN: the self_attention_norm output) as
  queries, the encoder output as keys."""
  assert TINY_MODEL.norm_position == 'post'
  model = Transformer(TINY_MODEL)
  inputs = jnp.asarray([SOURCE])
  targets = jnp.asarray([TARGET])
  encoded = np.asarray(model.apply({'params': params}, inputs,
                                   method=Transformer.encode)[0], np.float64)
  _, state = model.apply(
      {'params': params}, inputs, targets, capture_intermediates=True,
      mutable=['intermediates'])
  found = state['intermediates']
  for layer in range(TINY_MODEL.num_decoder_layers):
    name = f'decoder_{layer}'
    queries_in = np.asarray(found[name]['self_attention_norm']['__call__'][0][0],
                            np.float64)
    expected = np_attention(params[name]['cross_attention'], queries_in,
                            encoded)
    # Both sides come from the model's own activations: NaN would pass.
    assert_finite(captured['cross'][layer], expected)
    np.testing.assert_allclose(captured['cross'][layer], expected, atol=2e-5)
  # Not trivially uniform: the check above would be weak otherwise.
  assert np.ptp(captured['cross'][-1]) > 1e-3


# ---------------------------------------------------------------------------
# The sentence -> translation -> maps path.
# ---------------------------------------------------------------------------


def naive_greedy(params, source, max_extra_length):
  """A full forward pass per step, the most probable allowed token.

  The targets buffer has a fixed length (one compilation); causality keeps
  the PAD after the prefix from mattering.
  """
  model = Transformer(TINY_MODEL)
  limit = len(source) + max_extra_length
  forward = jax.jit(lambda p, x, y: model.apply({'params': p}, x, y))
  output = []
  while len(output) < limit:
    targets = np.full((1, limit), PAD_ID, np.int32)
    targets[0, :len(output)] = output
    logits = np.array(forward(params, jnp.asarray([source]),
                              targets))[0, len(output)]
    logits[[PAD_ID, BOS_ID]] = -np.inf
    token = EOS_ID if len(output) == limit - 1 else int(np.argmax(logits))
    output.append(token)
    if token == EOS_ID:
      break
  return output


@pytest.fixture(scope='module')
def maps(params):
  return translation_pictures.attention_maps(
      params, TINY_MODEL, FakeTokenizer(TINY_MODEL.vocab_size),
      '  w5 w6 w7 w8 ', max_extra_length=3)


def test_attention_maps_of_a_sentence(params, maps):
  tokenizer = FakeTokenizer(TINY_MODEL.vocab_size)
  assert maps.source_ids == [5, 6, 7, 8, EOS_ID]
  assert maps.source_pieces == ['▁w5', '▁w6', '▁w7', '▁w8', '</s>']
  assert maps.target_ids == naive_greedy(params, maps.source_ids, 3)
  assert maps.target_ids[-1] == EOS_ID
  assert maps.decoder_input_ids == [BOS_ID] + maps.target_ids[:-1]
  assert maps.decoder_input_pieces[0] == '<s>'
  assert maps.target_pieces[-1] == '</s>'
  assert maps.translation == tokenizer.decode(maps.target_ids)
  again = translation_pictures.capture_attention(params, TINY_MODEL, maps.source_ids,
                                      maps.target_ids)
  for kind in plots.KINDS:
    for ours, reference in zip(maps.maps(kind), again[kind]):
      assert_finite(ours, reference)
      np.testing.assert_array_equal(ours, reference)
  rows, columns = maps.axis_pieces('cross')
  assert (len(rows), len(columns)) == maps.cross[0].shape[1:]


@pytest.mark.parametrize('sentence', ['', '   \n'])
def test_empty_sentence(params, sentence):
  with pytest.raises(ValueError, match='empty'):
    translation_pictures.attention_maps(params, TINY_MODEL, FakeTokenizer(37), sentence)
  with pytest.raises(ValueError, match='empty'):  # before the workdir is read
    visualize.run(_config(), '/nonexistent', sentence=sentence, layers=None,
                  heads=None)


# ---------------------------------------------------------------------------
# Layer and head choices.
# ---------------------------------------------------------------------------


def test_layer_and_head_resolution():
  assert plots.resolve_layers(None, 2, 2) == {'encoder': [0, 1],
                                                  'decoder': [0, 1]}
  assert plots.resolve_layers(None, 1, 1) == {'encoder': [0],
                                                  'decoder': [0]}
  assert plots.resolve_layers([-1, 1, 0], 6, 2) == {
      'encoder': [5, 1, 0], 'decoder': [1, 0]}
  # Layer 4 exists in the encoder only: the decoder skips it.
  assert plots.resolve_layers([4], 6, 2) == {'encoder': [4],
                                                 'decoder': []}
  assert plots.resolve_heads(None, 4) == [0, 1, 2, 3]
  assert plots.resolve_heads([-1, 0, 3], 4) == [3, 0]


@pytest.mark.parametrize('layers', [[2], [-3], [0, 7]])
def test_invalid_layer(layers):
  with pytest.raises(ValueError, match=r'-2\.\.1'):
    plots.resolve_layers(layers, 2, 2)
  with pytest.raises(ValueError, match=r'-2\.\.1'):  # before the workdir
    visualize.run(_config(), '/nonexistent', sentence='w5', layers=layers,
                  heads=None)


@pytest.mark.parametrize('heads', [[4], [-5], [0, 9]])
def test_invalid_head(heads):
  with pytest.raises(ValueError, match=r'-4\.\.3'):
    plots.resolve_heads(heads, 4)
  with pytest.raises(ValueError, match=r'-4\.\.3'):
    visualize.run(_config(), '/nonexistent', sentence='w5', layers=None,
                  heads=heads)


def _config():
  from transformer.config import Config
  return Config(model=TINY_MODEL)


# ---------------------------------------------------------------------------
# Pictures.
# ---------------------------------------------------------------------------


def check_png(path, min_width=300, min_height=200):
  with Image.open(path) as image:
    assert image.format == 'PNG'
    width, height = image.size
    pixels = np.asarray(image.convert('L'), np.float32)
  assert width >= min_width and height >= min_height, (path, image.size)
  assert pixels.std() > 10  # not a blank canvas
  return width, height


def test_draw_writes_one_png_per_kind_and_layer(maps, tmp_path):
  written = translation_pictures.draw(maps, str(tmp_path))
  names = ['encoder_self_layer0.png', 'encoder_self_layer1.png',
           'decoder_self_layer0.png', 'decoder_self_layer1.png',
           'cross_layer0.png', 'cross_layer1.png']
  assert written == [str(tmp_path / n) for n in names]
  sizes = [check_png(p) for p in written]
  # Two heads in one row are narrower than four.
  narrow = translation_pictures.draw(maps, str(tmp_path / 'two'), layers=[-1],
                          heads=[0, -1])
  assert [os.path.basename(p) for p in narrow] == [
      'encoder_self_layer1.png', 'decoder_self_layer1.png', 'cross_layer1.png']
  assert check_png(narrow[0])[0] < sizes[1][0]


def synthetic_maps(source_length, target_length, heads=2, layers=1):
  """Random distributions of the right shapes (drawing needs no model)."""
  rng = np.random.default_rng(0)
  rows = lambda t, s: [rng.dirichlet(np.ones(s), size=(heads, t))
                       for _ in range(layers)]
  source = [4 + i % 30 for i in range(source_length - 1)] + [EOS_ID]
  target = [4 + i % 30 for i in range(target_length - 1)] + [EOS_ID]
  inputs = [BOS_ID] + target[:-1]
  tok = FakeTokenizer(37)
  pieces = lambda ids: [tok.id_to_piece(i) for i in ids]
  return translation_pictures.AttentionMaps(
      source, target, inputs, pieces(source), pieces(target), pieces(inputs),
      tok.decode(target), rows(source_length, source_length),
      [np.tril(w) for w in rows(target_length, target_length)],
      rows(target_length, source_length))


def test_long_sentence_picture(tmp_path):
  """60 tokens: the labels shrink and the figure grows."""
  short = translation_pictures.draw(synthetic_maps(5, 4), str(tmp_path / 'short'),
                         layers=[0], heads=[0])[2]
  long = translation_pictures.draw(synthetic_maps(60, 50), str(tmp_path / 'long'),
                        layers=[0], heads=[0])[2]
  assert os.path.basename(long) == 'cross_layer0.png'
  short_size, long_size = check_png(short), check_png(long)
  assert long_size[0] > 2 * short_size[0] and long_size[1] > 1200
  assert plots._tick_fontsize(60) < plots._tick_fontsize(6)


# ---------------------------------------------------------------------------
# Training curves.
# ---------------------------------------------------------------------------


def write_metrics(workdir, records, extra_lines=()):
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for record in records:
      f.write(json.dumps(record) + '\n')
    for line in extra_lines:
      f.write(line + '\n')


def test_training_curves_keep_the_last_record_per_step(tmp_path):
  records = [
      {'step': 10, 'kind': 'train', 'loss': 5.0},
      {'step': 20, 'kind': 'train', 'loss': 4.0},
      {'step': 20, 'kind': 'eval', 'loss': 4.5, 'bleu': 1.0},
      {'step': 30, 'kind': 'train', 'loss': 3.5},  # lost: resumed from 20
      # The resumed run writes 30 again, and evaluates 20 again.
      {'step': 30, 'kind': 'train', 'loss': 3.0},
      {'step': 20, 'kind': 'eval', 'loss': 4.25, 'bleu': 2.0},
      {'step': 40, 'kind': 'train', 'loss': 2.0},
      {'step': 40, 'kind': 'eval', 'loss': 2.5, 'bleu': 7.5},
  ]
  write_metrics(tmp_path, records, ['{"step": 50, "kind": "tra'])  # cut off
  series = plots.curve_series(str(tmp_path / 'metrics.jsonl'))
  assert series == {'train_loss': ([10, 20, 30, 40], [5.0, 4.0, 3.0, 2.0]),
                    'eval_loss': ([20, 40], [4.25, 2.5]),
                    'bleu': ([20, 40], [2.0, 7.5])}
  path = plots.training_curves(str(tmp_path), str(tmp_path / 'c.png'))
  assert path == str(tmp_path / 'c.png')
  with_bleu = check_png(path)
  # Without eval records: only the training loss, one panel.
  write_metrics(tmp_path, [r for r in records if r['kind'] == 'train'])
  series = plots.curve_series(str(tmp_path / 'metrics.jsonl'))
  assert series['eval_loss'] == ([], []) and series['bleu'] == ([], [])
  alone = check_png(plots.training_curves(str(tmp_path),
                                              str(tmp_path / 'd.png')))
  assert alone[0] < with_bleu[0]  # BLEU has its own subplot


def test_training_curves_errors(tmp_path):
  with pytest.raises(FileNotFoundError):
    plots.training_curves(str(tmp_path), str(tmp_path / 'c.png'))
  write_metrics(tmp_path, [{'step': 1, 'kind': 'eval', 'bleu': 3.0}])
  with pytest.raises(ValueError, match='no loss'):
    plots.training_curves(str(tmp_path), str(tmp_path / 'c.png'))


# ---------------------------------------------------------------------------
# Classification and regression: the encoder's attention, the prediction.
# ---------------------------------------------------------------------------

CLASSES = ('a', 'b', 'c')
ENCODER_ONLY = dataclasses.replace(TINY_MODEL, num_decoder_layers=0)


def labelled_config(task='classification', pooling='mean', eval_max_length=16):
  from transformer.config import Config, DataConfig
  return Config(task=task,
                model=dataclasses.replace(ENCODER_ONLY, pooling=pooling),
                data=DataConfig(source='toy', eval_max_length=eval_max_length))


def classification(**kwargs):
  from transformer.tasks import labelled
  return labelled.Classification(labelled_config(**kwargs), CLASSES)


@pytest.fixture(scope='module')
def classifier_params():
  """Random parameters, the (zero-initialised) head made random too: the
  prediction is not the same for every text."""
  params = classification().init_params(jax.random.key(3))
  kernel = params['head']['kernel']
  params['head']['kernel'] = jax.random.normal(jax.random.key(4),
                                               kernel.shape, kernel.dtype) * 0.3
  return params


TEXT_IDS = [5, 6, 7, 8, EOS_ID]


def test_encoder_attention_rows_are_distributions_over_the_real_tokens(
    classifier_params):
  task = classification()
  n, length = len(TEXT_IDS), 8
  scores, weights = labelled_pictures.capture_encoder_attention(
      task, classifier_params, TEXT_IDS, length)
  assert len(weights) == ENCODER_ONLY.num_encoder_layers
  for layer in weights:
    assert layer.shape == (ENCODER_ONLY.num_heads, length, length)
    assert_finite(layer)
    assert np.all(layer >= 0)
    # Every query (padded ones too) spreads 1 over the real tokens...
    np.testing.assert_allclose(layer[:, :, :n].sum(-1), 1.0, atol=1e-5)
    # ...and nothing on the padding, exactly.
    assert np.all(layer[:, :, n:] == 0.0)
    assert np.all(layer[:, :n, :n] > 0.0)
  # The scores are the task's own, from the same pass.
  row = np.full((1, length), PAD_ID, np.int32)
  row[0, :n] = TEXT_IDS
  expected = np.asarray(task.scores(classifier_params, jnp.asarray(row)))[0]
  assert_finite(scores, expected)
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
  assert np.ptp(scores) > 1e-3  # the random head makes them differ


def test_encoder_attention_matches_numpy_and_ignores_padding(
    classifier_params):
  """Layer 0 recomputed from the classifier's embedding table, padding keys
  masked; more padding changes no probability of the real tokens."""
  encoder = classifier_params['encoder']
  _, padded = labelled_pictures.capture_encoder_attention(
      classification(), classifier_params, TEXT_IDS, 8)
  ids = TEXT_IDS + [PAD_ID] * 3
  x = np_embed(encoder, ids)
  keys = np.asarray(ids) != PAD_ID
  expected = np_attention(encoder['encoder_0']['self_attention'], x, x,
                          keys[None, None, :])
  assert_finite(padded[0], expected)
  np.testing.assert_allclose(padded[0], expected, atol=2e-5)
  _, unpadded = labelled_pictures.capture_encoder_attention(
      classification(), classifier_params, TEXT_IDS)
  n = len(TEXT_IDS)
  for ours, reference in zip(padded, unpadded):
    assert reference.shape[1:] == (n, n)
    np.testing.assert_allclose(ours[:, :n, :n], reference, atol=1e-5)


@pytest.mark.parametrize('pooling', ['mean', 'first'])
def test_encoder_maps_encode_the_text_as_evaluation_does(classifier_params,
                                                         pooling):
  task = classification(pooling=pooling)
  maps = labelled_pictures.encoder_maps(task, classifier_params,
                                        FakeTokenizer(37), '  w5 w6 w7 w8 ')
  bos = [BOS_ID] if pooling == 'first' else []
  assert maps.ids == bos + [5, 6, 7, 8, EOS_ID]
  assert maps.pieces == ['<s>'] * len(bos) + ['▁w5', '▁w6', '▁w7', '▁w8',
                                               '</s>']
  assert maps.dropped == 0
  n = len(maps.ids)
  for layer in maps.encoder_self:
    assert layer.shape == (ENCODER_ONLY.num_heads, n, n)
    assert_finite(layer)
    np.testing.assert_allclose(layer.sum(-1), 1.0, atol=1e-5)
  assert maps.prediction == task.format_prediction(maps.scores)
  label, probability = maps.prediction.split('\t')
  assert label in CLASSES and 1 / 3 < float(probability) <= 1


def test_encoder_maps_cut_a_long_text_and_refuse_an_empty_one(
    classifier_params):
  task = classification(eval_max_length=6)
  words = ' '.join(f'w{i}' for i in range(4, 14))  # 10 pieces
  maps = labelled_pictures.encoder_maps(task, classifier_params,
                                        FakeTokenizer(37), words)
  assert maps.ids == [4, 5, 6, 7, 8, EOS_ID] and maps.dropped == 5
  assert maps.encoder_self[0].shape[1:] == (6, 6)
  for sentence in ('', '  '):
    with pytest.raises(ValueError, match='empty.*to label'):
      labelled_pictures.encoder_maps(task, classifier_params,
                                     FakeTokenizer(37), sentence)


def test_encoder_pictures_carry_the_prediction(classifier_params, tmp_path):
  maps = labelled_pictures.encoder_maps(classification(), classifier_params,
                                        FakeTokenizer(37), 'w5 w6 w7')
  written = plots.draw_layers(
      'encoder_self', maps.encoder_self, [1], [0, 2], maps.pieces,
      maps.pieces, str(tmp_path), row_label='token (query)',
      column_label='token (key)', note='prediction: b (probability 0.5)')
  assert written == [str(tmp_path / 'encoder_self_layer1.png')]
  check_png(written[0])


def test_what_each_task_draws():
  """What the driver asks of each family: the layers --layers picks from,
  the scores beside the loss, what --sentence is for."""
  from transformer.tasks import labelled, translation  # pylint: disable=g-import-not-at-top
  config = labelled_config()
  task = translation.Translation(_config())
  assert task.attention_layers() == (TINY_MODEL.num_encoder_layers,
                                     TINY_MODEL.num_decoder_layers)
  assert task.CURVE_SCORES == ('bleu',)
  assert task.SENTENCE_PURPOSE == 'to translate'
  task = labelled.Classification(config, CLASSES)
  assert task.attention_layers() == (config.model.num_encoder_layers, 0)
  assert task.CURVE_SCORES == ('accuracy', 'macro_f1')
  task = labelled.Regression(labelled_config(task='regression'))
  assert task.attention_layers()[1] == 0
  assert task.CURVE_SCORES == ('pearson', 'spearman')
  assert task.SENTENCE_PURPOSE == 'to label'


def test_encoder_only_layers(capsys):
  assert plots.resolve_layers(None, 2, 0) == {'encoder': [0, 1],
                                                  'decoder': []}
  assert plots.resolve_layers([-1], 3, 0) == {'encoder': [2],
                                                  'decoder': []}
  assert capsys.readouterr().err == ''  # no note about a missing decoder
  with pytest.raises(ValueError, match=r'the encoder has 2 layers; valid '
                     r'layer indices are -2\.\.1'):
    plots.resolve_layers([2], 2, 0)



# ---------------------------------------------------------------------------
# The language model's attention.
# ---------------------------------------------------------------------------

LM_TEXT = [5, 6, 7, 8, 9, 10, 11]


@pytest.fixture(scope='module')
def lm_task_and_params():
  from transformer.config import Config, DataConfig  # pylint: disable=g-import-not-at-top
  from transformer.tasks import language_model  # pylint: disable=g-import-not-at-top
  model = dataclasses.replace(TINY_MODEL, num_encoder_layers=0,
                              norm_position='pre')
  task = language_model.LanguageModelTask(Config(
      task='language_model', model=model,
      data=DataConfig(source='toy', tokenizer='char')))
  return task, jax.jit(task.init_params)(jax.random.key(3))


def np_layer_norm(x, norm):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean)**2).mean(-1, keepdims=True)
  return ((x - mean) / np.sqrt(var + 1e-6) * np.asarray(norm['scale'])
          + np.asarray(norm['bias']))


def test_language_model_attention_is_causal_and_matches_numpy(
    lm_task_and_params):
  """decoder_only_attention (what --mode=visualize draws for task=
  language_model): per layer [heads, n, n] distributions, causal, layer 0
  recomputed from the embedding table through pre-LN's LayerNorm."""
  task, params = lm_task_and_params
  assert task.config.model.layer_norm_epsilon == 1e-6  # np_layer_norm's
  from transformer.tasks.language_model import pictures  # pylint: disable=g-import-not-at-top
  weights = pictures.decoder_only_attention(task, params, LM_TEXT)
  n, m = len(LM_TEXT), task.config.model
  assert len(weights) == m.num_decoder_layers
  above = np.triu(np.ones((n, n), bool), k=1)
  for w in weights:
    assert w.shape == (m.num_heads, n, n)
    assert_finite(w)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w[:, above] == 0.0)
  decoder = params['decoder']
  fed = [BOS_ID] + LM_TEXT[:-1]
  x = np_embed(decoder, fed)
  layer = decoder['decoder_0']
  h = np_layer_norm(x, layer['self_attention_norm'])
  expected = np_attention(layer['self_attention'], h, h,
                          np.tril(np.ones((n, n), bool)))
  assert_finite(expected)
  np.testing.assert_allclose(weights[0], expected, atol=2e-5)

# ---------------------------------------------------------------------------
# The confusion matrix.
# ---------------------------------------------------------------------------

MATRIX = [[5, 1, 0], [2, 3, 1], [0, 0, 0]]  # class 'c' has no test example


def write_evaluation(workdir, name='test_step5', matrix=MATRIX,
                     classes=CLASSES, mtime=None, per_class=True):
  os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
  metrics = {'loss': 0.5, 'examples': int(np.sum(matrix)), 'accuracy': 0.667,
             'macro_f1': 0.5, 'confusion_matrix': matrix,
             'checkpoint_steps': [5]}
  if per_class:
    metrics['per_class'] = {c: {'precision': 0.5, 'recall': 0.5, 'f1': 0.5,
                                'support': int(sum(row))}
                            for c, row in zip(classes, matrix)}
  path = os.path.join(workdir, 'eval', f'{name}.json')
  with open(path, 'w') as f:
    json.dump(metrics, f)
  if mtime is not None:
    os.utime(path, (mtime, mtime))
  return path


def test_confusion_matrix_cells_and_shading(tmp_path):
  path = str(tmp_path / 'cm.png')
  picture = plots.draw_confusion_matrix(MATRIX, CLASSES, path)
  assert picture.path == path
  np.testing.assert_array_equal(picture.counts, MATRIX)
  row_normalised = np.array([[5 / 6, 1 / 6, 0], [2 / 6, 3 / 6, 1 / 6],
                             [0, 0, 0]])
  np.testing.assert_allclose(picture.shading, row_normalised, atol=1e-12)
  width, height = plots.confusion_figsize(CLASSES)
  expected = (round(width * 100), round(height * 100))
  assert check_png(path) == expected == picture.size
  # More classes, longer names: a bigger picture.
  names = [f'class number {i}' for i in range(12)]
  big = plots.draw_confusion_matrix(np.eye(12, dtype=int) * 3, names,
                                        str(tmp_path / 'big.png'))
  assert big.size[0] > expected[0] and big.size[1] > expected[1]
  np.testing.assert_array_equal(big.shading, np.eye(12))
  with pytest.raises(ValueError, match='not 2x2'):
    plots.draw_confusion_matrix(MATRIX, ('a', 'b'), path)


def test_confusion_matrix_of_the_newest_evaluation(tmp_path):
  workdir, out = str(tmp_path), str(tmp_path / 'pictures')
  write_evaluation(workdir, 'valid_step5', matrix=[[1, 0, 0]] * 3,
                   mtime=1_000)
  write_evaluation(workdir, 'test_step5', mtime=2_000)
  # Newer files that are not classification evaluations are passed over.
  with open(os.path.join(workdir, 'eval', 'notes.json'), 'w') as f:
    f.write('{"bleu": 3')
  with open(os.path.join(workdir, 'eval', 'test_step9.json'), 'w') as f:
    json.dump({'bleu': 3.0}, f)
  found = plots.latest_evaluation(workdir)
  assert found[0].endswith('test_step5.json')
  assert found[1]['confusion_matrix'] == MATRIX
  path = labelled_pictures.confusion_matrix_picture(workdir, out, CLASSES)
  assert path == os.path.join(out, plots.CONFUSION_FILENAME)
  size = plots.confusion_figsize(CLASSES)
  assert check_png(path) == (round(size[0] * 100), round(size[1] * 100))


def test_confusion_labels_order():
  metrics = {'confusion_matrix': MATRIX,
             'per_class': {'z': {}, 'y': {}, 'x': {}}}
  assert plots.confusion_labels(metrics, CLASSES) == ['z', 'y', 'x']
  # Without per_class: labels.json's order, else the indices.
  assert plots.confusion_labels({'confusion_matrix': MATRIX},
                                    CLASSES) == list(CLASSES)
  assert plots.confusion_labels({'confusion_matrix': MATRIX}) == [
      '0', '1', '2']


def test_no_evaluation_says_how_to_make_one(tmp_path, capsys):
  workdir = str(tmp_path)
  for _ in range(2):  # no eval/ at all, then one without a classification
    assert plots.latest_evaluation(workdir) is None
    assert labelled_pictures.confusion_matrix_picture(
        workdir, str(tmp_path / 'pictures'), CLASSES) is None
    err = capsys.readouterr().err
    assert 'no confusion matrix' in err and '--mode=evaluate' in err
    assert f'--workdir={workdir}' in err and '--experiment=NAME' in err
    os.makedirs(tmp_path / 'eval', exist_ok=True)
    with open(tmp_path / 'eval' / 'test_step3.json', 'w') as f:
      json.dump({'bleu': 1.0}, f)
  assert not os.path.exists(tmp_path / 'pictures')
  labelled_pictures.confusion_matrix_picture(
      workdir, str(tmp_path / 'pictures'),
      command='python launch.py --experiment=tiny_classify --workdir=W')
  assert ('python launch.py --experiment=tiny_classify --workdir=W '
          '--mode=evaluate') in capsys.readouterr().err


def test_training_curves_of_labelled_tasks(tmp_path):
  records = [
      {'step': 10, 'kind': 'train', 'loss': 1.0, 'accuracy': 0.5},
      {'step': 10, 'kind': 'eval', 'loss': 0.9, 'accuracy': 0.6,
       'macro_f1': 0.55, 'pearson': None},
      {'step': 20, 'kind': 'train', 'loss': 0.5},
      {'step': 20, 'kind': 'eval', 'loss': 0.4, 'accuracy': 0.8,
       'macro_f1': 0.75, 'pearson': 0.7},
  ]
  write_metrics(tmp_path, records)
  metrics_path = str(tmp_path / 'metrics.jsonl')
  series = plots.curve_series(metrics_path, ('accuracy', 'macro_f1'))
  assert series == {'train_loss': ([10, 20], [1.0, 0.5]),
                    'eval_loss': ([10, 20], [0.9, 0.4]),
                    'accuracy': ([10, 20], [0.6, 0.8]),
                    'macro_f1': ([10, 20], [0.55, 0.75])}
  # An undefined correlation (None) is left out, not plotted as 0.
  assert plots.curve_series(metrics_path, ('pearson',))['pearson'] == (
      [20], [0.7])
  both = check_png(plots.training_curves(
      str(tmp_path), str(tmp_path / 'c.png'), ('accuracy', 'macro_f1')))
  # No eval score logged: one panel.
  alone = check_png(plots.training_curves(
      str(tmp_path), str(tmp_path / 'd.png'), ('spearman',)))
  assert alone[0] < both[0]


# ---------------------------------------------------------------------------
# run() on a trained classification workdir.
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def classify_workdir(tmp_path_factory):
  """tiny_classify trained 4 steps in-process: labels.json, the tokenizer,
  a checkpoint and metrics.jsonl, no evaluation."""
  import importlib
  from transformer import config as config_lib, loop
  config = importlib.import_module('experiments.tiny_classify').get_config()
  for assignment in ('train.steps=4', 'train.checkpoint_every=4',
                     'train.log_every=2', 'eval.final=false'):
    config = config_lib.override(config, assignment)
  workdir = str(tmp_path_factory.mktemp('classify'))
  loop.train(config, workdir)
  return config, workdir


@pytest.mark.slow
def test_run_draws_a_classification_workdir(classify_workdir, capsys):
  config, workdir = classify_workdir
  pictures = os.path.join(workdir, 'pictures')
  written = visualize.run(config, workdir, sentence='red red blue green',
                          layers=None, heads=[0, -1])
  assert written == [os.path.join(pictures, name) for name in (
      'encoder_self_layer0.png', 'encoder_self_layer1.png',
      'training_curves.png')]
  for path in written:
    check_png(path)
  out, err = capsys.readouterr()
  assert '--mode=evaluate' in err  # no evaluation yet
  prediction = [line for line in out.splitlines()
                if line.strip().startswith('prediction:')]
  label = prediction[0].split()[1]
  assert label in ('red', 'green', 'blue')
  with open(os.path.join(workdir, 'labels.json')) as f:
    labels = json.load(f)['labels']
  write_evaluation(workdir, matrix=[[3, 0, 1], [0, 4, 0], [1, 1, 2]],
                   classes=labels)
  written = visualize.run(config, workdir, sentence='red', layers=[-1],
                          heads=None)
  assert [os.path.basename(p) for p in written] == [
      'encoder_self_layer1.png', 'confusion_matrix.png',
      'training_curves.png']
  assert check_png(written[1]) == tuple(
      round(v * 100) for v in plots.confusion_figsize(labels))
  # Layers are checked against the encoder alone, before anything slow.
  with pytest.raises(ValueError, match='the encoder has 2 layers;'):
    visualize.run(config, workdir, sentence='red', layers=[2], heads=None)
  with pytest.raises(ValueError, match='empty: give the text to label'):
    visualize.run(config, workdir, sentence=' ', layers=None, heads=None)
