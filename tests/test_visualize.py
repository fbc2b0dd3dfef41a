"""Attention pictures and training curves.

The captured attention is checked against NumPy recomputations from the
parameters (float64, written out here), and the greedy translation against a
naive decoding loop of full forward passes; the pictures are checked as PNGs.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from transformer import visualize
from transformer.config import BOS_ID, EOS_ID, PAD_ID
from transformer.model import Transformer

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
  return visualize.capture_attention(params, TINY_MODEL, SOURCE, TARGET)


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
  for kind in visualize.KINDS:
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
  return visualize.attention_maps(
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
  again = visualize.capture_attention(params, TINY_MODEL, maps.source_ids,
                                      maps.target_ids)
  for kind in visualize.KINDS:
    for ours, reference in zip(maps.maps(kind), again[kind]):
      assert_finite(ours, reference)
      np.testing.assert_array_equal(ours, reference)
  rows, columns = maps.axis_pieces('cross')
  assert (len(rows), len(columns)) == maps.cross[0].shape[1:]


@pytest.mark.parametrize('sentence', ['', '   \n'])
def test_empty_sentence(params, sentence):
  with pytest.raises(ValueError, match='empty'):
    visualize.attention_maps(params, TINY_MODEL, FakeTokenizer(37), sentence)
  with pytest.raises(ValueError, match='empty'):  # before the workdir is read
    visualize.run(_config(), '/nonexistent', sentence=sentence, layers=None,
                  heads=None)


# ---------------------------------------------------------------------------
# Layer and head choices.
# ---------------------------------------------------------------------------


def test_layer_and_head_resolution():
  assert visualize.resolve_layers(None, 2, 2) == {'encoder': [0, 1],
                                                  'decoder': [0, 1]}
  assert visualize.resolve_layers(None, 1, 1) == {'encoder': [0],
                                                  'decoder': [0]}
  assert visualize.resolve_layers([-1, 1, 0], 6, 2) == {
      'encoder': [5, 1, 0], 'decoder': [1, 0]}
  # Layer 4 exists in the encoder only: the decoder skips it.
  assert visualize.resolve_layers([4], 6, 2) == {'encoder': [4],
                                                 'decoder': []}
  assert visualize.resolve_heads(None, 4) == [0, 1, 2, 3]
  assert visualize.resolve_heads([-1, 0, 3], 4) == [3, 0]


@pytest.mark.parametrize('layers', [[2], [-3], [0, 7]])
def test_invalid_layer(layers):
  with pytest.raises(ValueError, match=r'-2\.\.1'):
    visualize.resolve_layers(layers, 2, 2)
  with pytest.raises(ValueError, match=r'-2\.\.1'):  # before the workdir
    visualize.run(_config(), '/nonexistent', sentence='w5', layers=layers,
                  heads=None)


@pytest.mark.parametrize('heads', [[4], [-5], [0, 9]])
def test_invalid_head(heads):
  with pytest.raises(ValueError, match=r'-4\.\.3'):
    visualize.resolve_heads(heads, 4)
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
  written = visualize.draw(maps, str(tmp_path))
  names = ['encoder_self_layer0.png', 'encoder_self_layer1.png',
           'decoder_self_layer0.png', 'decoder_self_layer1.png',
           'cross_layer0.png', 'cross_layer1.png']
  assert written == [str(tmp_path / n) for n in names]
  sizes = [check_png(p) for p in written]
  # Two heads in one row are narrower than four.
  narrow = visualize.draw(maps, str(tmp_path / 'two'), layers=[-1],
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
  return visualize.AttentionMaps(
      source, target, inputs, pieces(source), pieces(target), pieces(inputs),
      tok.decode(target), rows(source_length, source_length),
      [np.tril(w) for w in rows(target_length, target_length)],
      rows(target_length, source_length))


def test_long_sentence_picture(tmp_path):
  """60 tokens: the labels shrink and the figure grows."""
  short = visualize.draw(synthetic_maps(5, 4), str(tmp_path / 'short'),
                         layers=[0], heads=[0])[2]
  long = visualize.draw(synthetic_maps(60, 50), str(tmp_path / 'long'),
                        layers=[0], heads=[0])[2]
  assert os.path.basename(long) == 'cross_layer0.png'
  short_size, long_size = check_png(short), check_png(long)
  assert long_size[0] > 2 * short_size[0] and long_size[1] > 1200
  assert visualize._tick_fontsize(60) < visualize._tick_fontsize(6)


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
  series = visualize.curve_series(str(tmp_path / 'metrics.jsonl'))
  assert series == {'train_loss': ([10, 20, 30, 40], [5.0, 4.0, 3.0, 2.0]),
                    'eval_loss': ([20, 40], [4.25, 2.5]),
                    'bleu': ([20, 40], [2.0, 7.5])}
  path = visualize.training_curves(str(tmp_path), str(tmp_path / 'c.png'))
  assert path == str(tmp_path / 'c.png')
  with_bleu = check_png(path)
  # Without eval records: only the training loss, one panel.
  write_metrics(tmp_path, [r for r in records if r['kind'] == 'train'])
  series = visualize.curve_series(str(tmp_path / 'metrics.jsonl'))
  assert series['eval_loss'] == ([], []) and series['bleu'] == ([], [])
  alone = check_png(visualize.training_curves(str(tmp_path),
                                              str(tmp_path / 'd.png')))
  assert alone[0] < with_bleu[0]  # BLEU has its own subplot


def test_training_curves_errors(tmp_path):
  with pytest.raises(FileNotFoundError):
    visualize.training_curves(str(tmp_path), str(tmp_path / 'c.png'))
  write_metrics(tmp_path, [{'step': 1, 'kind': 'eval', 'bleu': 3.0}])
  with pytest.raises(ValueError, match='no loss'):
    visualize.training_curves(str(tmp_path), str(tmp_path / 'c.png'))
