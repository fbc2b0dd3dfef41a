"""Tests of the Spanish-English Bible corpus (transformer/data/bible.py).

References are independent of the code: verse texts checked by hand against
published editions of the World English Bible and the Reina-Valera 1909, and
corpus files read back with plain `open()`. The whole Bible is read once per
module (fixture `corpus`); a machine without diatheke skips all but the
error-message tests.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from transformer.data import bible

INSTALL = ('sudo apt-get update && sudo apt-get install -y '
           'diatheke sword-text-web sword-text-sparv')
needs_diatheke = pytest.mark.skipif(
    shutil.which('diatheke') is None, reason='diatheke is not installed')


@pytest.fixture(scope='module')
def corpus():
  verses, stats = bible.aligned_verses()
  return verses, stats, {(v.book, v.chapter, v.verse): v for v in verses}


@pytest.fixture(scope='module')
def prepared(corpus, tmp_path_factory):
  """prepare() into a fresh directory, reusing the fixture's reading of the
  modules (the real aligned_verses() output) so the Bible is read once."""
  verses, stats, _ = corpus
  data_dir = str(tmp_path_factory.mktemp('bible'))
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(bible, 'aligned_verses', lambda: (verses, dict(stats)))
    result = bible.prepare(data_dir)
  return data_dir, result


def read_lines(path):
  with open(path, encoding='utf-8') as f:
    return f.read().split('\n')[:-1]  # Every line ends with '\n'.


# ---------------------------------------------------------------------------
# Verse texts.
# ---------------------------------------------------------------------------


@needs_diatheke
def test_genesis_1_1_words_stay_apart(corpus):
  # The module has <w>God</w><w>created</w>; plain output reads "Godcreated".
  v = corpus[2][('Genesis', 1, 1)]
  assert v.en == 'In the beginning, God created the heavens and the earth.'
  assert v.es == 'EN el principio crió Dios los cielos y la tierra.'


@needs_diatheke
def test_john_3_16_both_languages(corpus):
  v = corpus[2][('John', 3, 16)]
  assert v.en == ('For God so loved the world, that he gave his only born '
                  'Son, that whoever believes in him should not perish, but '
                  'have eternal life.')
  assert v.es == ('Porque de tal manera amó Dios al mundo, que ha dado á su '
                  'Hijo unigénito, para que todo aquel que en él cree, no se '
                  'pierda, mas tenga vida eterna.')


@needs_diatheke
def test_psalm_title_in_spanish_verse_1_only(corpus):
  by_key = corpus[2]
  v = by_key[('Psalms', 3, 1)]
  assert v.es.startswith('Salmo de David, cuando huía de delante de Absalom '
                         'su hijo. ¡OH Jehová')
  assert v.en == ('Yahweh, how my adversaries have increased! Many are those '
                  'who rise up against me.')
  # diatheke prints 3:1's title again before 3:2; it must not leak in.
  # Also without its footnote on "God" (Elohim).
  assert by_key[('Psalms', 3, 2)].en == (
      'Many there are who say of my soul, “There is no help for him in God.”'
      ' Selah.')


@needs_diatheke
def test_punctuation_and_spanish_enclitics(corpus):
  by_key = corpus[2]
  # `conceived</w>,<w>and`: a space after the comma.
  assert by_key[('Genesis', 4, 1)].en == (
      'The man knew Eve his wife. She conceived, and gave birth to Cain, and '
      'said, “I have gotten a man with Yahweh’s help.”')
  assert by_key[('Genesis', 2, 7)].en.startswith(
      'Yahweh God formed man from the dust')  # <w>Yahweh</w><w>God</w>
  # Words added in italics (<transChange>): an enclitic joins its verb, any
  # other word stands apart.
  assert 'házmelo saber' in by_key[('Job', 38, 4)].es
  assert 'alabadle; glorificadle' in by_key[('Psalms', 22, 23)].es
  assert 'la verdad de Jehová es para siempre' in (
      by_key[('Psalms', 117, 2)].es)


@needs_diatheke
def test_glossary_and_speakers_dropped(corpus):
  by_key = corpus[2]
  # The glossary follows Revelation 22:21 in the English module.
  assert by_key[('Revelation of John', 22, 21)].en == (
      'The grace of the Lord Jesus Christ be with all the saints. Amen.')
  # Song of Solomon has speaker labels ("Beloved", "Friends") as markup.
  assert by_key[('Song of Solomon', 1, 4)].en.startswith(
      'Take me away with you. Let’s hurry. The king has brought me')
  assert 'Friends' not in by_key[('Song of Solomon', 1, 4)].en


@needs_diatheke
def test_no_markup_or_strongs_anywhere(corpus):
  bad = re.compile(r'[<>]|&\w+;|&#|\b[HG]\d{3,5}\b|strong:|\s\s|\n')
  for v in corpus[0]:
    for text in (v.es, v.en):
      assert text and text == text.strip(), v
      assert not bad.search(text), v


# ---------------------------------------------------------------------------
# Alignment and statistics.
# ---------------------------------------------------------------------------


@needs_diatheke
def test_alignment_stats(corpus):
  verses, stats, by_key = corpus
  assert stats['aligned'] == len(verses) == len(by_key) > 30_000
  es_only, en_only = stats['dropped_only_es'], stats['dropped_only_en']
  misaligned = stats['dropped_misaligned']
  assert stats['verses_es'] == len(verses) + es_only + misaligned
  assert stats['verses_en'] == len(verses) + en_only + misaligned
  # The deuterocanon is English only: thousands of verses, none aligned.
  assert en_only > 5_000
  assert not {'Tobit', 'Sirach', 'I Maccabees'} & {v.book for v in verses}
  # Acts 8:37 is in the RV1909 but not the WEB.
  assert ('Acts', 8, 37) not in by_key and es_only >= 1
  # Canonical order.
  order = [(bible.BOOKS.index(v.book), v.chapter, v.verse) for v in verses]
  assert order == sorted(order)


@needs_diatheke
def test_versification_mismatches_dropped(corpus):
  by_key = corpus[2]
  # The Spanish module numbers Numbers 13 one verse later (its 13:1 is the
  # WEB's 12:16); Job 39:30 there holds Job 39:27-40:5.
  assert not any((('Numbers', 13, v) in by_key) for v in range(1, 34))
  assert ('Job', 39, 30) not in by_key
  assert ('Numbers', 12, 15) in by_key and ('Numbers', 14, 1) in by_key
  assert corpus[1]['dropped_misaligned'] < 500


# ---------------------------------------------------------------------------
# Split.
# ---------------------------------------------------------------------------


def test_split_of_is_fixed_across_processes():
  chapters = [('Genesis', 9), ('Genesis', 26), ('Genesis', 1), ('John', 3),
              ('Psalms', 119), ('Revelation of John', 22)]
  expected = ['valid', 'test', 'train', 'train', bible.split_of('Psalms', 119),
              bible.split_of('Revelation of John', 22)]
  assert [bible.split_of(b, c) for b, c in chapters] == expected
  code = ('from transformer.data import bible; '
          f'print([bible.split_of(b, c) for b, c in {chapters!r}])')
  for seed in ('1', '2'):  # hash() differs between these; split_of must not.
    out = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        check=True, env={**os.environ, 'PYTHONHASHSEED': seed},
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == repr(expected)


@needs_diatheke
def test_split_by_whole_chapters_with_enough_held_out(corpus):
  splits_of_chapter = collections.defaultdict(set)
  counts = collections.Counter()
  for v in corpus[0]:
    split = bible.split_of(v.book, v.chapter)
    splits_of_chapter[(v.book, v.chapter)].add(split)
    counts[split] += 1
  assert all(len(s) == 1 for s in splits_of_chapter.values())
  assert counts['valid'] >= 1000 and counts['test'] >= 1000
  assert counts['train'] > 10 * (counts['valid'] + counts['test']) / 2


# ---------------------------------------------------------------------------
# prepare().
# ---------------------------------------------------------------------------


@needs_diatheke
def test_prepare_writes_parallel_files(corpus, prepared):
  verses = corpus[0]
  data_dir, stats = prepared
  assert sorted(os.listdir(data_dir)) == sorted(
      [f'{s}.{l}' for s in bible.SPLITS for l in ('es', 'en')] +
      ['stats.json'])  # No temporary files left behind.
  with open(os.path.join(data_dir, 'stats.json'), encoding='utf-8') as f:
    assert json.load(f) == stats
  assert stats['format_version'] == bible.FORMAT_VERSION
  for split in bible.SPLITS:
    es = read_lines(os.path.join(data_dir, f'{split}.es'))
    en = read_lines(os.path.join(data_dir, f'{split}.en'))
    assert len(es) == len(en) == stats['splits'][split]
    assert all(line.strip() for line in es + en)
    expected = [v for v in verses if bible.split_of(v.book, v.chapter) == split]
    assert es == [v.es for v in expected] and en == [v.en for v in expected]
  assert sum(stats['splits'].values()) == stats['aligned']


@needs_diatheke
def test_prepare_again_reads_nothing(prepared, monkeypatch):
  data_dir, stats = prepared

  def fail(*args, **kwargs):
    raise AssertionError('diatheke was called again')

  monkeypatch.setattr(subprocess, 'run', fail)
  monkeypatch.setattr(bible, 'aligned_verses', fail)
  assert bible.prepare(data_dir) == stats


def test_prepare_rebuilds_other_format_and_survives_interruption(
    tmp_path, monkeypatch):
  tiny = [bible.Verse('Genesis', 1, 1, 'uno', 'one'),
          bible.Verse('Genesis', 9, 1, 'dos', 'two')]  # Genesis 9 is valid.
  monkeypatch.setattr(bible, 'aligned_verses', lambda: (tiny, {'aligned': 2}))
  data_dir = str(tmp_path)
  stats_path = os.path.join(data_dir, 'stats.json')
  with open(stats_path, 'w', encoding='utf-8') as f:
    json.dump({'format_version': -1}, f)
  for name in ('train', 'valid', 'test'):
    for lang in ('es', 'en'):
      (tmp_path / f'{name}.{lang}').write_text('old\n', encoding='utf-8')

  stats = bible.prepare(data_dir)  # Old format: rebuilt.
  assert stats['splits'] == {'train': 1, 'valid': 1, 'test': 0}
  assert read_lines(os.path.join(data_dir, 'valid.es')) == ['dos']
  assert read_lines(os.path.join(data_dir, 'test.en')) == []

  # Interrupted while renaming files into place: no stats.json, so the next
  # call does not take the half-replaced corpus for a finished one.
  os.remove(stats_path)
  real_replace = os.replace

  def replace_then_crash(src, dst):
    real_replace(src, dst)
    raise KeyboardInterrupt

  monkeypatch.setattr(os, 'replace', replace_then_crash)
  with pytest.raises(KeyboardInterrupt):
    bible.prepare(data_dir)
  monkeypatch.setattr(os, 'replace', real_replace)
  assert not os.path.exists(stats_path)
  assert sorted(p.name for p in tmp_path.iterdir()
                if p.name.startswith('.')) == []  # Temp dir removed.
  assert bible.prepare(data_dir)['splits'] == stats['splits']


# ---------------------------------------------------------------------------
# Missing software.
# ---------------------------------------------------------------------------


def test_missing_diatheke_names_install_command(tmp_path, monkeypatch):
  monkeypatch.setenv('PATH', str(tmp_path))  # An empty directory.
  with pytest.raises(bible.CorpusUnavailableError) as err:
    bible.read_module(bible.EN_MODULE)
  assert INSTALL in str(err.value)
  assert isinstance(err.value, RuntimeError)
  with pytest.raises(bible.CorpusUnavailableError, match='diatheke'):
    bible.prepare(str(tmp_path / 'corpus'))


@needs_diatheke
def test_missing_module_names_install_command():
  with pytest.raises(bible.CorpusUnavailableError) as err:
    bible.read_module('noSuchModule')
  assert INSTALL in str(err.value) and 'noSuchModule' in str(err.value)


@needs_diatheke
def test_chapter_text_files_hold_each_chapter_once_in_its_split(tmp_path):
  texts = bible.read_module(bible.ES_MODULE)
  sizes = bible.write_chapter_text(str(tmp_path))
  lines = {s: read_lines(tmp_path / f'{s}.txt') for s in bible.SPLITS}
  chapters = {(book, chapter) for book, chapter, _ in texts}
  assert sum(len(v) for v in lines.values()) == len(chapters)
  for split in bible.SPLITS:
    assert sizes[split] == sum(len(line) + 1 for line in lines[split])
  # Genesis 1 is the first line of its split: its verses in order.
  split = bible.split_of('Genesis', 1)
  verses = [texts['Genesis', 1, v] for v in range(1, 32)]
  assert lines[split][0] == ' '.join(verses)
