"""Tests of the labelled-text sources (transformer/tasks/labelled/).

References are independent of the code under test: VADER ratings read back
from the raw archive with tarfile here, class counts recomputed from the
documented cut points, Bible genres of verses looked up by hand, the toy
rule recomputed from each text, and user files written here whose contents
are known. The VADER tests need the vaderSentiment 3.3.2 source archive
that .ci/setup fetches; the Bible tests need diatheke; TFDS is mocked with
tfds.testing.mock_data, which still runs TFDS's real `data_source` code.
"""

import collections
import json
import os
import pickle
import shutil
import tarfile

import pytest
import tensorflow_datasets as tfds

from transformer.config import Config, DataConfig
from transformer.data import bible
from transformer.data.corpus import DataError
from transformer.tasks import labelled
from transformer.tasks.labelled import sources

SPLITS = ('train', 'valid', 'test')
VADER_SDIST = os.path.expanduser(
    '~/.cache/transformer/downloads/vaderSentiment-3.3.2.tar.gz')
PIP_COMMAND = ('python -m pip download --no-binary :all: --no-deps '
               'vaderSentiment==3.3.2 -d')
needs_vader = pytest.mark.skipif(
    not os.path.isfile(VADER_SDIST),
    reason=f'{VADER_SDIST} is missing: run .ci/setup, which fetches it with '
    f'`{PIP_COMMAND} ~/.cache/transformer/downloads`')
needs_diatheke = pytest.mark.skipif(
    shutil.which('diatheke') is None, reason='diatheke is not installed')


def config(source, task='classification', **data):
  return Config(task=task, data=DataConfig(source=source, **data))


def norm(text):
  return ' '.join(text.lower().split())


# ---------------------------------------------------------------------------
# vader
# ---------------------------------------------------------------------------


def vader_dir(root):
  """A data_dir whose downloads/ holds the fetched archive."""
  os.makedirs(os.path.join(root, 'downloads'), exist_ok=True)
  os.symlink(VADER_SDIST, os.path.join(root, 'downloads',
                                       os.path.basename(VADER_SDIST)))
  return str(root)


@pytest.fixture(scope='module')
def vader_root(tmp_path_factory):
  return vader_dir(tmp_path_factory.mktemp('vader'))


@pytest.fixture(scope='module')
def raw_vader():
  """{file name: [(id, rating string, text)]}, read from the archive here."""
  inner_name = ('vaderSentiment-3.3.2/additional_resources/'
                'hutto_ICWSM_2014.tar.gz')
  with tarfile.open(VADER_SDIST) as outer:
    with tarfile.open(fileobj=outer.extractfile(inner_name)) as inner:
      files = {}
      for member in inner.getmembers():
        if member.name.endswith('_GroundTruth.txt'):
          lines = inner.extractfile(member).read().decode('utf-8').splitlines()
          files[os.path.basename(member.name)] = [
              tuple(line.split('\t')) for line in lines if line.strip()]
  return files


def load_all(cfg):
  return {split: labelled.load_split(cfg, split) for split in SPLITS}


@pytest.fixture(scope='module')
def vader_ratings(vader_root):
  return load_all(config('vader', 'regression', data_dir=vader_root))


@needs_vader
def test_vader_splits_are_disjoint_and_cover_every_text(vader_ratings,
                                                        raw_vader):
  texts = {s: {norm(t) for t, _ in ds} for s, ds in vader_ratings.items()}
  assert not texts['train'] & texts['valid']
  assert not texts['train'] & texts['test']
  assert not texts['valid'] & texts['test']
  raw = {norm(text) for rows in raw_vader.values() for _, _, text in rows}
  assert set().union(*texts.values()) == raw
  # Each text once (identical ones merged); case variants ("Anger is UGLY.")
  # are rated differently and stay apart.
  loaded = [t for ds in vader_ratings.values() for t, _ in ds]
  exact = {' '.join(text.split()) for rows in raw_vader.values()
           for _, _, text in rows}
  assert len(loaded) == len(set(loaded)) and set(loaded) == exact
  assert len(exact) > len(raw)
  assert sum(len(rows) for rows in raw_vader.values()) == 4200 + 10605 + \
      3708 + 5190
  total = len(raw)
  assert len(vader_ratings['test']) >= 1000
  for split in ('valid', 'test'):
    assert 0.08 < len(vader_ratings[split]) / total < 0.12


@needs_vader
def test_vader_ratings_match_the_archive(vader_ratings, raw_vader):
  loaded = {t: (r, ds.origin(i)) for ds in vader_ratings.values()
            for i, (t, r) in enumerate(ds)}
  counts = collections.Counter(text for rows in raw_vader.values()
                               for _, _, text in rows)
  known = [('tweets_GroundTruth.txt', '2', 'tweets'),
           ('movieReviewSnippets_GroundTruth.txt', '3', 'movie_reviews'),
           ('amazonReviewSnippets_GroundTruth.txt', '1_1', 'amazon_reviews'),
           ('nytEditorialSnippets_GroundTruth.txt', '1_3', 'nyt_editorials')]
  for filename, item_id, corpus in known:
    (_, rating, text), = [r for r in raw_vader[filename] if r[0] == item_id]
    assert counts[text] == 1
    assert loaded[text] == (float(rating), (corpus, item_id))
  # Spot values, typed from the files.
  assert loaded['Yay. Another good phone interview.'][0] == 1.443298969
  assert loaded['Effective but too tepid biopic'][0] == -0.6
  assert loaded['Anger is UGLY.'][0] == -1.852631579
  assert loaded['Anger is ugly.'][0] == -1.010526316
  for ds in vader_ratings.values():
    assert all(isinstance(r, float) and -4 <= r <= 4 for _, r in ds)


def cut_points_label(rating, classes):
  """The module docstring's cut points, written out independently."""
  if classes == 2:
    return None if -0.5 < rating < 0.5 else (
        'positive' if rating > 0 else 'negative')
  edges = {3: [(-0.5, 'negative', False), (0.5, 'neutral', True)],
           5: [(-2, 'very negative', True), (-0.5, 'negative', False),
               (0.5, 'neutral', True), (2, 'positive', False)]}[classes]
  for edge, name, inclusive in edges:
    if rating < edge or (inclusive and rating == edge):
      return name
  return 'positive' if classes == 3 else 'very positive'


@needs_vader
@pytest.mark.parametrize('classes', [2, 3, 5])
def test_vader_class_counts_follow_the_cut_points(vader_root, vader_ratings,
                                                  classes):
  splits = load_all(config('vader', sentiment_classes=classes,
                           data_dir=vader_root))
  for split, ds in splits.items():
    expected = collections.Counter(
        cut_points_label(r, classes) for _, r in vader_ratings[split])
    expected.pop(None, None)
    assert collections.Counter(label for _, label in ds) == expected
    assert all(isinstance(t, str) and isinstance(l, str) for t, l in ds)
  assert set(expected) == set(sources.SENTIMENT_CLASSES[classes])


@needs_vader
def test_vader_cache_is_reused_and_rebuilt_on_a_new_format(tmp_path,
                                                           monkeypatch):
  root = vader_dir(tmp_path)
  cfg = config('vader', 'regression', data_dir=root)
  first = labelled.load_split(cfg, 'test')
  cache = os.path.join(root, 'vader_sentiment')
  mtimes = {f: os.stat(os.path.join(cache, f)).st_mtime_ns
            for f in os.listdir(cache)}
  assert set(mtimes) == {'train.tsv', 'valid.tsv', 'test.tsv', 'meta.json'}

  def fail(sdist):
    raise AssertionError(f'read {sdist} again')
  monkeypatch.setattr(sources, 'read_vader', fail)
  second = labelled.load_split(cfg, 'test')
  assert list(second) == list(first)
  assert mtimes == {f: os.stat(os.path.join(cache, f)).st_mtime_ns
                    for f in os.listdir(cache)}
  # A changed preparation (format version) rebuilds.
  monkeypatch.setattr(sources, 'VADER_FORMAT_VERSION', 99)
  with pytest.raises(AssertionError, match='again'):
    labelled.load_split(cfg, 'test')


def test_vader_missing_archive_says_how_to_fetch_it(tmp_path):
  cfg = config('vader', 'regression', data_dir=str(tmp_path))
  with pytest.raises(DataError) as error:
    labelled.load_split(cfg, 'train')
  message = str(error.value)
  downloads = os.path.join(str(tmp_path), 'downloads')
  assert os.path.join(downloads, 'vaderSentiment-3.3.2.tar.gz') in message
  assert f'{PIP_COMMAND} "{downloads}"' in message


def test_vader_corrupt_archive(tmp_path):
  os.makedirs(tmp_path / 'downloads')
  path = tmp_path / 'downloads' / 'vaderSentiment-3.3.2.tar.gz'
  path.write_bytes(b'not a tarball')
  with pytest.raises(DataError, match=f'{path}.*fetch it again'):
    labelled.load_split(config('vader', 'regression',
                               data_dir=str(tmp_path)), 'train')


@pytest.mark.parametrize('task, classes, match', [
    ('classification', 4, 'expected 0'),
    ('regression', 3, 'sentiment_classes=0'),
    ('classification', 0, 'classification needs 2, 3 or 5'),
])
def test_vader_rejects_bad_classes(tmp_path, task, classes, match):
  with pytest.raises(DataError, match=match):
    labelled.load_split(config('vader', task, sentiment_classes=classes,
                               data_dir=str(tmp_path)), 'train')


# ---------------------------------------------------------------------------
# bible_genre
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def genre_splits(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('bible_genre'))
  return load_all(config('bible_genre', data_dir=root))


@needs_diatheke
def test_bible_genre_is_imbalanced(genre_splits):
  counts = collections.Counter(label for _, label in genre_splits['train'])
  assert set(counts) == {g for g, _, _ in sources.GENRES}
  assert max(counts.values()) >= 10 * min(counts.values())
  assert counts.most_common(1)[0][0] == 'history'
  assert min(counts, key=counts.get) == 'apocalypse'
  for split in ('valid', 'test'):
    assert len(genre_splits[split]) >= 1000


@needs_diatheke
def test_bible_genre_splits_by_chapter_as_translation_does(genre_splits):
  chapters = {s: {ds.origin(i)[:2] for i in range(len(ds))}
              for s, ds in genre_splits.items()}
  assert not chapters['train'] & chapters['valid']
  assert not chapters['train'] & chapters['test']
  assert not chapters['valid'] & chapters['test']
  for split, keys in chapters.items():
    assert all(bible.split_of(book, chapter) == split
               for book, chapter in keys)


@needs_diatheke
def test_bible_genre_of_verses_by_hand(genre_splits):
  by_ref = {ds.origin(i): ds[i] for ds in genre_splits.values()
            for i in range(len(ds))}
  assert by_ref[('Genesis', 1, 1)] == (
      'In the beginning, God created the heavens and the earth.', 'law')
  assert by_ref[('John', 11, 35)] == ('Jesus wept.', 'gospels')
  assert by_ref[('Revelation of John', 22, 21)][1] == 'apocalypse'
  assert by_ref[('Revelation of John', 22, 21)][0].startswith(
      'The grace of the Lord Jesus Christ be with all')
  for ref, genre in [(('Ruth', 1, 1), 'history'), (('Psalms', 23, 1), 'wisdom'),
                     (('Malachi', 4, 6), 'prophets'), (('Acts', 1, 1), 'acts'),
                     (('Jude', 1, 25), 'epistles'),
                     (('Deuteronomy', 34, 12), 'law')]:
    assert by_ref[ref][1] == genre, ref
  assert not any(ref[0] in ('Tobit', 'Sirach', 'I Maccabees')
                 for ref in by_ref)


def test_bible_genre_is_classification_only():
  with pytest.raises(DataError, match="task='classification'"):
    labelled.load_split(config('bible_genre', 'regression'), 'train')


# ---------------------------------------------------------------------------
# text: the user's files
# ---------------------------------------------------------------------------


def write(directory, name, content):
  path = directory / name
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content, encoding='utf-8', newline='')
  return str(path)


def text_config(directory, task='classification', **data):
  return config('text', task, text_dir=str(directory), **data)


def test_tsv_has_no_quote_processing(tmp_path):
  write(tmp_path, 'train.tsv',
        '\ufefftext\tlabel\r\n"quoted" start\tpos\r\na "b, c\tneg\r\n\r\n'
        'last, no newline\t neg ')
  write(tmp_path, 'valid.tsv', 'text\tlabel\nv\tpos\n')
  ds = labelled.load_split(text_config(tmp_path), 'train')
  assert list(ds) == [('"quoted" start', 'pos'), ('a "b, c', 'neg'),
                      ('last, no newline', 'neg')]
  assert ds[-1] == ds[2]
  with pytest.raises(IndexError):
    ds[3]  # pylint: disable=pointless-statement
  assert list(labelled.load_split(text_config(tmp_path), 'valid')) == [
      ('v', 'pos')]


def test_csv_quoted_commas_quotes_and_newlines(tmp_path):
  write(tmp_path, 'train.csv',
        'id,label,text\r\n'
        '1,pos,"hello, world"\r\n'
        '2,neg,"line one\nline two, still"\n'
        '\n'
        '3,pos,"she said ""hi"""\n'
        '4,neg,plain')
  write(tmp_path, 'valid.csv', 'id,label,text\n9,pos,x\n')
  ds = labelled.load_split(text_config(tmp_path), 'train')
  assert len(ds) == 4
  # Random access, out of order.
  assert ds[2] == ('she said "hi"', 'pos')
  assert ds[1] == ('line one\nline two, still', 'neg')
  assert ds[0] == ('hello, world', 'pos')
  assert ds[3] == ('plain', 'neg')
  restored = pickle.loads(pickle.dumps(ds))
  assert list(restored) == list(ds)


def test_jsonl_with_other_keys_and_integer_labels(tmp_path):
  rows = [{'sentence': 'a, "b"\tc', 'y': 1, 'idx': 0},
          {'sentence': 'ünïcödé', 'y': 'zero'}]
  write(tmp_path, 'train.jsonl',
        '\n'.join(json.dumps(r, ensure_ascii=i == 0) for i, r in
                  enumerate(rows)) + '\n\n')
  write(tmp_path, 'valid.jsonl', '{"sentence": "v", "y": 2}\n')
  cfg = text_config(tmp_path, text_column='sentence', label_column='y')
  assert list(labelled.load_split(cfg, 'train')) == [('a, "b"\tc', '1'),
                                                     ('ünïcödé', 'zero')]


@pytest.mark.parametrize('fmt', ['tsv', 'csv', 'jsonl'])
def test_regression_labels_are_floats(tmp_path, fmt):
  values = ['0.5', '-2', '1e3', ' 7 ']
  if fmt == 'jsonl':
    content = ''.join(json.dumps({'text': f't{i}', 'label': float(v)}) + '\n'
                      for i, v in enumerate(values))
  else:
    sep = '\t' if fmt == 'tsv' else ','
    content = f'text{sep}label\n' + ''.join(
        f't{i}{sep}{v}\n' for i, v in enumerate(values))
  write(tmp_path, f'train.{fmt}', content)
  write(tmp_path, f'valid.{fmt}', content)
  ds = labelled.load_split(text_config(tmp_path, 'regression'), 'train')
  assert [label for _, label in ds] == [0.5, -2.0, 1000.0, 7.0]
  assert all(isinstance(label, float) for _, label in ds)


def test_held_out_validation_slice(tmp_path, capsys):
  rows = [f'sentence number {i}\t{"pos" if i % 3 else "neg"}'
          for i in range(300)]
  write(tmp_path, 'train.tsv', 'text\tlabel\n' + '\n'.join(rows) + '\n')
  cfg = text_config(tmp_path)
  train = list(labelled.load_split(cfg, 'train'))
  valid = list(labelled.load_split(cfg, 'valid'))
  output = capsys.readouterr().out
  assert output.count('holding out') == 1 and 'valid.tsv' in output
  assert str(tmp_path) in output and f'{len(valid)} of 300' in output
  everything = [(f'sentence number {i}', 'pos' if i % 3 else 'neg')
                for i in range(300)]
  assert not set(train) & set(valid)
  assert sorted(train + valid) == sorted(everything)
  # File order is kept within each part.
  assert train == [e for e in everything if e in set(train)]
  assert 15 <= len(valid) <= 45
  # Deterministic, and printed once per process.
  assert list(labelled.load_split(cfg, 'valid')) == valid
  assert list(labelled.load_split(cfg, 'train')) == train
  assert capsys.readouterr().out == ''
  # With a valid file, nothing is held out.
  write(tmp_path, 'valid.tsv', 'text\tlabel\nv\tpos\n')
  assert len(labelled.load_split(cfg, 'train')) == 300


def test_missing_test_file(tmp_path):
  write(tmp_path, 'train.csv', 'text,label\na,b\n')
  with pytest.raises(DataError, match=r'no test\.csv.*eval\.final=false'):
    labelled.load_split(text_config(tmp_path), 'test')


def test_missing_text_dir_and_training_file(tmp_path):
  with pytest.raises(DataError, match='needs data.text_dir'):
    labelled.load_split(config('text'), 'train')
  with pytest.raises(DataError, match='is not a directory'):
    labelled.load_split(text_config(tmp_path / 'nowhere'), 'train')
  write(tmp_path, 'valid.tsv', 'text\tlabel\na\tb\n')
  with pytest.raises(DataError, match=f'{tmp_path}: no training file.*'
                     r'train\.tsv, train\.csv or train\.jsonl'):
    labelled.load_split(text_config(tmp_path), 'valid')


def test_two_training_files_or_mixed_formats(tmp_path):
  write(tmp_path, 'train.tsv', 'text\tlabel\na\tb\n')
  write(tmp_path, 'valid.csv', 'text,label\na,b\n')
  with pytest.raises(DataError, match=r'valid\.csv: expected valid\.tsv'):
    labelled.load_split(text_config(tmp_path), 'train')
  write(tmp_path, 'train.jsonl', '{"text": "a", "label": "b"}\n')
  with pytest.raises(DataError, match=r'train\.tsv and train\.jsonl'):
    labelled.load_split(text_config(tmp_path), 'train')


ERROR_CASES = {
    'missing columns': (
        'train.tsv', 'sentence\tlabel\na\tb\n',
        r"train\.tsv: line 1: the header has no column 'text' "
        r"\(data\.text_column\); its columns are 'sentence', 'label'"),
    'csv named tsv': (
        'train.tsv', 'txt,label\na,b\n',
        r"no column 'text'.*and no 'label'.*looks like CSV"),
    'empty file': ('train.csv', '', r'train\.csv: empty file'),
    'header only': ('train.csv', 'text,label\n', r'train\.csv: no examples'),
    'invalid utf-8': ('train.tsv', b'text\tlabel\na\tb\n\xff\xfe\tb\n',
                      r'train\.tsv: line 3: invalid UTF-8'),
    'invalid utf-8 csv': ('train.csv', b'text,label\n"a\n\xffb",c\n',
                          r'train\.csv: line 3: invalid UTF-8'),
    'tsv field count': ('train.tsv', 'text\tlabel\na\tb\nc\td\te\n',
                        r'train\.tsv: line 3: 3 fields, but the header '
                        r'\(line 1\) has 2'),
    'csv field count': ('train.csv', 'text,label\n"a\nb",c\nx, y,z\n',
                        r'train\.csv: line 4: 3 fields.*double quotes'),
    'csv unclosed quote': ('train.csv', 'text,label\na,b\n"c,d\ne,f\n',
                           r'train\.csv: line 3: .*unclosed quote'),
    'jsonl not json': ('train.jsonl', '{"text": "a", "label": "b"}\n{oops\n',
                       r'train\.jsonl: line 2: not valid JSON'),
    'jsonl missing key': ('train.jsonl',
                          '{"text": "a", "label": "b"}\n{"text": "c"}\n',
                          r"train\.jsonl: line 2: the object has no key "
                          r"'label'.*its keys are 'text'"),
    'jsonl not an object': ('train.jsonl', '["a", "b"]\n',
                            r'train\.jsonl: line 1: expected a JSON object'),
    'empty label': ('train.tsv', 'text\tlabel\na\tb\nc\t \n',
                    r'train\.tsv: line 3: label .* is not a class name'),
    'empty text': ('train.csv', 'text,label\na,b\n"",c\n',
                   r'train\.csv: line 3: the text .* is empty'),
    'list label': ('train.jsonl', '{"text": "a", "label": [1]}\n',
                   r'train\.jsonl: line 1: label \[1\]'),
}


@pytest.mark.parametrize('case', ERROR_CASES)
def test_file_errors_name_file_and_line(tmp_path, case):
  name, content, match = ERROR_CASES[case]
  write(tmp_path, name, content)
  with pytest.raises(DataError, match=match):
    labelled.load_split(text_config(tmp_path), 'train')


@pytest.mark.parametrize('value', ['abc', 'nan', 'inf', ''])
def test_regression_rejects_non_numbers(tmp_path, value):
  write(tmp_path, 'train.tsv', f'text\tlabel\na\t1\nb\t{value}\n')
  with pytest.raises(DataError, match=r"train\.tsv: line 3: label .* is not "
                     'a finite number'):
    labelled.load_split(text_config(tmp_path, 'regression'), 'train')


def test_regression_rejects_json_booleans(tmp_path):
  write(tmp_path, 'train.jsonl', '{"text": "a", "label": 1}\n'
        '{"text": "b", "label": true}\n')
  with pytest.raises(DataError, match=r'train\.jsonl: line 2: label True'):
    labelled.load_split(text_config(tmp_path, 'regression'), 'train')


# ---------------------------------------------------------------------------
# tfds (mocked: TFDS's own data_source code on generated records)
# ---------------------------------------------------------------------------

@pytest.fixture
def tfds_splits(monkeypatch):
  """Records which TFDS split each tfds.data_source call asked for."""
  asked = []
  original = tfds.data_source

  def data_source(name, split, **kwargs):
    asked.append((name, split))
    return original(name, split=split, **kwargs)
  monkeypatch.setattr(tfds, 'data_source', data_source)
  return asked


@pytest.mark.parametrize('name, names, test_split', [
    ('imdb_reviews', ['neg', 'pos'], 'test'),
    ('glue/sst2', ['negative', 'positive'], 'validation'),
    ('ag_news_subset', ['World', 'Sports', 'Business', 'Sci/Tech'], 'test'),
])
def test_tfds_mocked(tfds_splits, name, names, test_split):
  cfg = config('tfds', tfds_name=name)
  with tfds.testing.mock_data(num_examples=80,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    splits = load_all(cfg)
    items = {s: list(ds) for s, ds in splits.items()}
  assert tfds_splits == [(name, 'train'), (name, 'train'), (name, test_split)]
  assert len(items['train']) + len(items['valid']) == 80
  assert 2 <= len(items['valid']) <= 20 and len(items['test']) == 80
  for split_items in items.values():
    for text, label in split_items:
      assert isinstance(text, str)
      assert label in names
  # train and valid are disjoint record sets of TFDS's train split.
  train_ids = set(splits['train'].indices)
  valid_ids = set(splits['valid'].indices)
  assert not train_ids & valid_ids and train_ids | valid_ids == set(range(80))


def test_tfds_missing_dataset_fails_fast(tmp_path):
  cfg = config('tfds', tfds_name='imdb_reviews', tfds_data_dir=str(tmp_path))
  with pytest.raises(DataError) as error:
    labelled.load_split(cfg, 'train')
  message = str(error.value)
  assert 'tfds build imdb_reviews --file_format=array_record' in message
  assert f'--data_dir={tmp_path}' in message


def test_tfds_rejects_unknown_sets_and_regression():
  with pytest.raises(DataError, match='imdb_reviews, .*glue/sst2'):
    labelled.load_split(config('tfds'), 'train')  # wmt14 is the default
  with pytest.raises(DataError, match='no regression labels'):
    labelled.load_split(config('tfds', 'regression',
                               tfds_name='imdb_reviews'), 'train')


# ---------------------------------------------------------------------------
# toy
# ---------------------------------------------------------------------------


def test_toy_classification_is_deterministic_and_separable():
  cfg = config('toy')
  splits = load_all(cfg)
  assert {s: len(ds) for s, ds in splits.items()} == {
      'train': 5000, 'valid': 500, 'test': 500}
  assert list(labelled.load_split(cfg, 'valid')) == list(splits['valid'])
  assert list(splits['valid'])[:20] != list(splits['test'])[:20]
  colours = ('red', 'green', 'blue')
  for ds in splits.values():
    for text, label in ds:
      words = text.split()
      assert 4 <= len(words) <= 12
      counts = {c: words.count(c) for c in colours}
      winner = max(counts, key=counts.get)
      assert label == winner
      assert counts[winner] > sum(counts.values()) - counts[winner]
  labels = collections.Counter(label for _, label in splits['train'])
  assert set(labels) == set(colours) and min(labels.values()) > 1500


def test_toy_regression_counts_up_minus_down():
  cfg = config('toy', 'regression')
  train = labelled.load_split(cfg, 'train')
  assert list(train) == list(labelled.load_split(cfg, 'train'))
  targets = set()
  for text, target in train:
    words = text.split()
    assert target == float(words.count('up') - words.count('down'))
    targets.add(target)
  assert len(targets) > 8


# ---------------------------------------------------------------------------
# The interface.
# ---------------------------------------------------------------------------


def test_bad_split_task_or_source():
  with pytest.raises(DataError, match='split'):
    labelled.load_split(config('toy'), 'dev')
  with pytest.raises(DataError, match='classification and regression'):
    labelled.load_split(config('toy', 'translation'), 'train')
  with pytest.raises(DataError, match="data.source='bible' is not a source "
                     'of labelled text.*bible_genre'):
    labelled.load_split(config('bible'), 'train')


@pytest.mark.parametrize('source', ['vader', 'bible_genre', 'text', 'tfds',
                                    'toy'])
def test_describe_is_one_line(source):
  line = labelled.describe(config(source, tfds_name='glue/sst2',
                                  sentiment_classes=3))
  assert line and '\n' not in line


def test_examples_pickle():
  ds = labelled.load_split(config('toy'), 'test')
  assert list(pickle.loads(pickle.dumps(ds))) == list(ds)


# ---------------------------------------------------------------------------
# Several labels per text, several regression targets.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('fmt, content', [
    ('tsv', 'text\tlabel\none\tb,a\ntwo\t\nthree\tc , a,a\n'),
    ('csv', 'text,label\none,"b,a"\ntwo,\nthree,"c , a,a"\n'),
    ('jsonl', '{"text": "one", "label": ["b", "a"]}\n'
              '{"text": "two", "label": []}\n'
              '{"text": "three", "label": "c , a,a"}\n'),
])
def test_multi_label_fields_are_sorted_sets(tmp_path, fmt, content):
  write(tmp_path, f'train.{fmt}', content)
  write(tmp_path, f'test.{fmt}', content)
  cfg = text_config(tmp_path, multi_label=True)
  assert list(labelled.load_split(cfg, 'test')) == [
      ('one', ('a', 'b')), ('two', ()), ('three', ('a', 'c'))]


def test_multi_label_separator_and_bad_fields(tmp_path):
  write(tmp_path, 'train.tsv', 'text\tlabel\none\tx|y\n')
  write(tmp_path, 'test.tsv', 'text\tlabel\none\tx|y\n')
  cfg = text_config(tmp_path, multi_label=True, label_separator='|')
  assert labelled.load_split(cfg, 'test')[0] == ('one', ('x', 'y'))
  write(tmp_path, 'test.tsv', 'text\tlabel\none\tx||y\n')
  with pytest.raises(DataError, match=r'test\.tsv: line 2: .*label_separator'):
    labelled.load_split(cfg, 'test')
  (tmp_path / 'j').mkdir()
  write(tmp_path / 'j', 'train.jsonl', '{"text": "a", "label": [true]}\n')
  with pytest.raises(DataError, match=r'train\.jsonl: line 1: .*JSON list'):
    labelled.load_split(text_config(tmp_path / 'j', multi_label=True), 'train')


def test_multi_label_is_refused_where_it_has_no_meaning(tmp_path):
  with pytest.raises(DataError, match='multi_label.*classification'):
    labelled.load_split(config('toy', 'regression', multi_label=True), 'test')
  with pytest.raises(DataError, match='multi_label.*vader, text, toy'):
    labelled.load_split(config('bible_genre', multi_label=True), 'test')
  with pytest.raises(DataError, match='sentiment_classes 2 or 3'):
    labelled.load_split(config('vader', multi_label=True, sentiment_classes=5,
                               data_dir=str(tmp_path)), 'test')
  with pytest.raises(ValueError, match='label_separator'):
    DataConfig(label_separator='\t')


def test_toy_multi_label_holds_every_colour_of_the_text():
  single = sources.toy_examples('valid', 'classification')
  multi = sources.toy_examples('valid', 'classification', multi_label=True)
  assert [t for t, _ in single] == [t for t, _ in multi]
  for (text, label), (_, labels) in zip(single, multi):
    assert labels == tuple(sorted({w for w in text.split()} &
                                  {'red', 'green', 'blue'}))
    assert label in labels
  assert sum(len(labels) > 1 for _, labels in multi) > 100


@pytest.mark.parametrize('fmt', ['tsv', 'csv', 'jsonl'])
def test_several_regression_targets(tmp_path, fmt):
  rows = [('a', 1.5, -2), ('b', 0, 3.25)]
  if fmt == 'jsonl':
    content = ''.join(json.dumps({'text': t, 'x': x, 'y': y}) + '\n'
                      for t, x, y in rows)
  else:
    sep = '\t' if fmt == 'tsv' else ','
    content = f'y{sep}text{sep}x\n' + ''.join(
        f'{y}{sep}{t}{sep}{x}\n' for t, x, y in rows)
  write(tmp_path, f'train.{fmt}', content)
  write(tmp_path, f'test.{fmt}', content)
  cfg = text_config(tmp_path, 'regression', label_column='x, y')
  assert list(labelled.load_split(cfg, 'test')) == [
      ('a', (1.5, -2.0)), ('b', (0.0, 3.25))]
  missing = text_config(tmp_path, 'regression', label_column='x,z')
  with pytest.raises(DataError, match=r"no (column|key) 'z'"):
    labelled.load_split(missing, 'test')
  with pytest.raises(DataError, match='several separated by commas'):
    labelled.load_split(text_config(tmp_path, label_column='x,y'), 'test')


@pytest.fixture(scope='module')
def raw_rater_ratings():
  """{(corpus file stem, id): [ratings]} of the *_anonDataRatings.txt
  files, parsed here with ast.literal_eval."""
  import ast  # pylint: disable=import-outside-toplevel
  inner_name = ('vaderSentiment-3.3.2/additional_resources/'
                'hutto_ICWSM_2014.tar.gz')
  ratings = {}
  with tarfile.open(VADER_SDIST) as outer:
    with tarfile.open(fileobj=outer.extractfile(inner_name)) as inner:
      for member in inner.getmembers():
        if member.name.endswith('_anonDataRatings.txt'):
          stem = os.path.basename(member.name).split('_')[0]
          for line in inner.extractfile(member).read().decode(
              'utf-8-sig').splitlines():
            if line.strip():
              item_id, _, std, values = line.split('\t')
              ratings[stem, item_id] = (float(std),
                                        ast.literal_eval(values))
  return ratings


STEMS = {'tweets': 'tweets', 'movie_reviews': 'movieReviewSnippets',
         'amazon_reviews': 'amazonReviewSnippets',
         'nyt_editorials': 'nytEditorialSnippets'}


@needs_vader
def test_vader_rater_spread_and_perceived_sentiments(vader_root,
                                                     raw_rater_ratings):
  spread = labelled.load_split(
      config('vader', 'regression', data_dir=vader_root, rater_spread=True),
      'valid')
  perceived = labelled.load_split(
      config('vader', data_dir=vader_root, multi_label=True,
             sentiment_classes=3), 'valid')
  assert [t for t, _ in spread] == [t for t, _ in perceived]
  checked = 0
  for i, ((_, (_, std)), (_, labels)) in enumerate(zip(spread, perceived)):
    corpora, ids = (x.split(',') for x in spread.origin(i))
    if len(ids) > 1:
      continue  # merged duplicates pool their raters; checked below
    file_std, ratings = raw_rater_ratings[STEMS[corpora[0]], ids[0]]
    assert abs(std - file_std) < 1e-5  # the file's population deviation
    n = len(ratings)
    want = tuple(name for name, share in (
        ('negative', sum(r < 0 for r in ratings) / n),
        ('neutral', sum(r == 0 for r in ratings) / n),
        ('positive', sum(r > 0 for r in ratings) / n)) if share >= 0.25)
    assert labels == want
    checked += 1
  assert checked > 2000
  counts = collections.Counter(len(labels) for _, labels in perceived)
  assert counts[2] + counts[3] > 0.15 * len(perceived)  # sets, not classes
