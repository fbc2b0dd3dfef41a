"""Tests of the n-gram baseline (transformer/tasks/language_model/ngram.py).

References: probabilities worked out by hand on a two-document corpus, the
empirical unigram entropy computed here with collections.Counter, and sums
over the whole vocabulary.
"""

import collections
import json
import math
import os

import numpy as np
import pytest

from transformer.config import Config, DataConfig, ModelConfig
from transformer.tasks.language_model import data as lm
from transformer.tasks.language_model import ngram

BOS, EOS = 2, 3


def random_documents(seed, count=40, vocab=12):
  rng = np.random.default_rng(seed)
  # Skewed, with repeated patterns, so that all orders have work to do.
  return [np.concatenate([rng.choice(np.arange(4, vocab), rng.integers(1, 15),
                                     p=np.linspace(1, 3, vocab - 4) /
                                     np.linspace(1, 3, vocab - 4).sum()),
                          [EOS]]) for _ in range(count)]


def test_hand_computed_bigram_kneser_ney():
  # Documents "a b" and "a a" (a=4, b=5), each ending with EOS (3); V = 6.
  docs = [np.array([4, 5, 3]), np.array([4, 4, 3])]
  model = ngram.KneserNey(docs, order=2, vocab_size=6, discount=0.5, bos=BOS)
  # Continuation counts N1+(. w): a after {BOS, a} = 2, b after {a} = 1,
  # EOS after {b, a} = 2: total 5, 3 types. Unigram level:
  # P1(w) = (max(N1+(. w) - 0.5, 0) + 0.5 * 3 / 6) / 5.
  p1 = {4: (1.5 + 0.25) / 5, 5: (0.5 + 0.25) / 5, 3: (1.5 + 0.25) / 5,
        0: 0.25 / 5, 1: 0.25 / 5, 2: 0.25 / 5}
  assert p1[4] == pytest.approx(0.35) and sum(p1.values()) == pytest.approx(1)
  # Bigram level, raw counts: BOS -> a twice; a -> b, a, EOS once each.
  np.testing.assert_allclose(model.distribution([]),
                             [(0.5 * p1[w]) / 2 + (1.5 / 2 if w == 4 else 0)
                              for w in range(6)], rtol=1e-12)
  assert model.distribution([])[4] == pytest.approx(0.8375, abs=1e-12)
  after_a = model.distribution([4])
  assert after_a[5] == pytest.approx((0.5 + 1.5 * 0.15) / 3, abs=1e-12)
  assert after_a[4] == pytest.approx((0.5 + 1.5 * 0.35) / 3, abs=1e-12)
  assert after_a[0] == pytest.approx(1.5 * 0.05 / 3, abs=1e-12)
  assert model.distribution([5])[3] == pytest.approx(0.5 + 0.5 * 0.35)
  # An unseen context backs off to the unigram level entirely.
  np.testing.assert_allclose(model.distribution([4, 3]),
                             [p1[w] for w in range(6)], rtol=1e-12)
  np.testing.assert_allclose(
      model.log_probs([np.array([4, 5, 3])]),
      np.log([0.8375, 0.725 / 3, 0.675]), rtol=1e-12)


@pytest.mark.parametrize('order', [1, 2, 3, 5])
def test_probabilities_sum_to_one(order):
  docs = random_documents(0)
  model = ngram.KneserNey(docs, order=order, vocab_size=12)
  contexts = [[], [4], [4, 5], list(docs[0][:-1]), list(docs[3]),
              [11, 11, 11, 11], [0, 1, 9], [6, 7, 8, 9, 10]]
  for context in contexts:
    p = model.distribution(context)
    assert p.shape == (12,) and (p > 0).all()
    assert abs(p.sum() - 1) < 1e-9, context
  assert all(0 < level.discount <= 1 for level in model.levels)


def test_unsmoothed_unigram_is_the_empirical_entropy():
  docs = random_documents(1)
  tokens = [int(t) for d in docs for t in d]
  counts = collections.Counter(tokens)
  entropy = -sum(c / len(tokens) * math.log(c / len(tokens))
                 for c in counts.values())
  model = ngram.KneserNey(docs, order=1, vocab_size=12, discount=0.0)
  assert -model.log_probs(docs).mean() == pytest.approx(entropy, abs=1e-12)


def test_higher_orders_learn_structure():
  train = [lm.document_ids(ngram.char_tokenizer(['ab']), 'ab' * 20, False)
           for _ in range(5)]
  valid = train[:1]
  nll = [-ngram.KneserNey(train, n, 8).log_probs(valid).mean()
         for n in (1, 2, 3)]
  assert nll[0] > 0.5 > nll[1] and nll[2] <= nll[1] + 1e-9


def test_too_high_an_order_is_refused():
  with pytest.raises(ValueError, match='2\\*\\*63'):
    ngram.ngram_codes([np.array([4])], order=5, vocab_size=8000)
  assert ngram.max_order(8000) == 4 and ngram.max_order(100) == 9


def toy_config(**data):
  return Config(task='language_model',
                model=ModelConfig(vocab_size=40),
                data=DataConfig(source='toy', tokenizer='char', **data))


def test_run_on_toy_counts_the_same_characters():
  result = ngram.run(toy_config(), order=4)
  size = lm.eval_text_size(toy_config(), 'test')
  assert result['characters']['test'] == size['characters']
  for level in ('char', 'token'):  # the token level is the char tokenizer
    r = result['levels'][level]
    assert r['test']['tokens'] == size['characters']  # one per character
    assert r['order'] >= 3  # counting: context helps
    m = r['test']
    assert m['bits_per_character'] == pytest.approx(
        m['nll'] / math.log(2) / size['characters'])
    assert m['perplexity'] == pytest.approx(math.exp(m['nll'] / m['tokens']))
  assert result['levels']['char']['test']['bits_per_character'] < 1.5


def test_stream_text_has_no_end_tokens(tmp_path):
  text = ''.join(f'line {i % 7} of the stream\n' for i in range(500))
  for split in ('train', 'valid', 'test'):
    with open(os.path.join(tmp_path, f'{split}.txt'), 'w') as f:
      f.write(text)
  cfg = Config(task='language_model', data=DataConfig(
      source='text', text_dir=str(tmp_path), documents='stream'))
  r = ngram.run(cfg, levels=('char',), order=3)['levels']['char']
  assert r['test']['tokens'] == r['test']['characters'] == len(text)


def test_cli_writes_json(tmp_path, capsys):
  output = os.path.join(tmp_path, 'ngram.json')
  ngram.main(['--experiment=tiny', '--set=task=language_model',
              '--set=data.source=toy', '--order=3', '--level=char',
              f'--output={output}'])
  with open(output, encoding='utf-8') as f:
    result = json.load(f)
  assert result['levels']['char']['order'] <= 3
  assert 'bits/char' in capsys.readouterr().out
  with pytest.raises(SystemExit, match='error: .*expected one of'):
    ngram.main(['--experiment=tiny', '--set=task=language_model',
                '--set=data.source=vader'])
