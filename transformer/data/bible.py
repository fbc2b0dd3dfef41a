"""Offline Spanish<->English parallel corpus: the Bible, aligned verse by verse.

Source: two SWORD modules read with the `diatheke` command-line front end,
  spaRV1909eb  Reina-Valera 1909 (Spanish, KJV versification, 66 books)
  engWEB2015eb World English Bible (English, NRSVA versification, 66 books
               plus the deuterocanon, which the Spanish module lacks).
Verses are paired on (book, chapter, verse); a verse with text on one side
only is dropped and counted, as are pairs whose numbers match but whose
contents do not (the two modules divide some chapters differently).

`prepare(data_dir)` writes {train,valid,test}.{es,en}: one verse per line,
line i of X.es translating line i of X.en, UTF-8 -- the same layout as users'
own parallel text files, so one reader serves both. Whole chapters go to one
split (chosen by a stable hash), so no chapter is shared between splits.

We read diatheke's `internal` format, i.e. the module's raw OSIS, rather than
`plain`: plain output glues words whose markup has no space between them
(`<w>God</w><w>created</w>` -> "Godcreated") and cannot tell headings from
scripture. From the OSIS we drop headings (<title>), notes (footnotes, cross
references), speaker labels and the glossary appended after Revelation, and
keep only the words.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import html
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ES_MODULE = 'spaRV1909eb'
EN_MODULE = 'engWEB2015eb'
INSTALL_COMMAND = ('sudo apt-get update && sudo apt-get install -y '
                   'diatheke sword-text-web sword-text-sparv')
# Bump when the text cleaning or the split changes: prepare() then rebuilds.
FORMAT_VERSION = 2
SPLITS = ('train', 'valid', 'test')
DIATHEKE = 'diatheke'  # The executable, looked up on PATH at each call.

# Every book of the NRSVA versification, in its order, named as diatheke's
# English locale prints them (and accepts them as keys). The KJV versification
# of the Spanish module is the same list without the deuterocanon.
BOOKS: tuple[str, ...] = (
    'Genesis', 'Exodus', 'Leviticus', 'Numbers', 'Deuteronomy', 'Joshua',
    'Judges', 'Ruth', 'I Samuel', 'II Samuel', 'I Kings', 'II Kings',
    'I Chronicles', 'II Chronicles', 'Ezra', 'Nehemiah', 'Esther', 'Job',
    'Psalms', 'Proverbs', 'Ecclesiastes', 'Song of Solomon', 'Isaiah',
    'Jeremiah', 'Lamentations', 'Ezekiel', 'Daniel', 'Hosea', 'Joel', 'Amos',
    'Obadiah', 'Jonah', 'Micah', 'Nahum', 'Habakkuk', 'Zephaniah', 'Haggai',
    'Zechariah', 'Malachi',
    # Deuterocanon (English module only).
    'Tobit', 'Judith', 'Esther (Greek)', 'Wisdom', 'Sirach', 'Baruch',
    'Prayer of Azariah', 'Susanna', 'Bel and the Dragon', 'I Maccabees',
    'II Maccabees', 'I Esdras', 'Prayer of Manasses', 'Additional Psalm',
    'III Maccabees', 'II Esdras', 'IV Maccabees',
    # New Testament.
    'Matthew', 'Mark', 'Luke', 'John', 'Acts', 'Romans', 'I Corinthians',
    'II Corinthians', 'Galatians', 'Ephesians', 'Philippians', 'Colossians',
    'I Thessalonians', 'II Thessalonians', 'I Timothy', 'II Timothy', 'Titus',
    'Philemon', 'Hebrews', 'James', 'I Peter', 'II Peter', 'I John', 'II John',
    'III John', 'Jude', 'Revelation of John',
)
_BOOK_INDEX = {book: i for i, book in enumerate(BOOKS)}

# Split by chapter: sha256(salt|"book chapter") mod 10000, below _VALID_CUT
# is validation, below _TEST_CUT test, the rest train. 5% each; of the salts
# tried, this one gives the held-out splits closest to 1,500 verses each
# (1,459 and 1,505; the tests require at least 1,000).
_SPLIT_SALT = 'bible-split-v3'
_VALID_CUT = 500
_TEST_CUT = 1000

Key = tuple[str, int, int]  # (book, chapter, verse)


class CorpusUnavailableError(RuntimeError):
  """diatheke or one of the SWORD modules is not installed."""


@dataclasses.dataclass(frozen=True)
class Verse:
  """One aligned verse: its reference and its text in both languages."""
  book: str
  chapter: int
  verse: int
  es: str
  en: str


# ---------------------------------------------------------------------------
# Running diatheke.
# ---------------------------------------------------------------------------


def _unavailable(what: str) -> CorpusUnavailableError:
  return CorpusUnavailableError(
      f'{what}. The Bible corpus is built offline from SWORD modules; '
      f'install them with:\n  {INSTALL_COMMAND}')


def _diatheke(module: str, key: str) -> str:
  """diatheke's raw (`internal`) output for `key`; English locale so that
  book names in the output do not depend on the user's language."""
  exe = shutil.which(DIATHEKE)
  if exe is None:
    raise _unavailable(f'`{DIATHEKE}` was not found on PATH')
  result = subprocess.run(
      [exe, '-b', module, '-l', 'en', '-f', 'internal', '-e', 'UTF8',
       '-k', key],
      capture_output=True, check=False, encoding='utf-8', errors='replace')
  if result.returncode != 0:
    raise RuntimeError(f'diatheke -b {module} -k {key!r} failed '
                       f'({result.returncode}): {result.stderr.strip()}')
  return result.stdout


def _check_module(module: str) -> None:
  # diatheke prints nothing (and exits 0) for an unknown module, which would
  # look like an empty Bible: ask for the module list instead.
  listing = _diatheke('system', 'modulelist')
  names = {line.split(' : ', 1)[0].strip()
           for line in listing.splitlines() if ' : ' in line}
  if module not in names:
    raise _unavailable(f'SWORD module {module!r} is not installed')


# ---------------------------------------------------------------------------
# Cleaning one verse's OSIS.
# ---------------------------------------------------------------------------

# Elements whose content is not scripture: headings, notes (footnotes and
# cross references), speaker labels in the Song of Solomon.
_DROPPED = re.compile(
    r'<(title|note|speaker)\b[^>]*(?<!/)>.*?</\1\s*>', re.S)
# Milestone-style divisions (<div sID=x/> ... <div eID=x/>) that are not
# scripture: the glossary and its introduction, appended to Revelation 22:21.
_DROPPED_DIV = re.compile(
    r'<div(?=[^>]*\btype="(?:glossary|introduction)")(?=[^>]*\bsID="([^"]*)")'
    r'[^>]*>.*?(?:<div(?=[^>]*\beID="\1")[^>]*>|\Z)', re.S)
# Line, stanza, paragraph and division marks: always a word boundary.
_BREAK = re.compile(r'</?(?:l|lb|lg|p|div|milestone|chapter)\b[^>]*>')
# Markup between two letters with no space: a word boundary in the OSIS
# (`<w>God</w><w>created</w>`, `born</q><q><w>Son`), except Spanish enclitics.
# (Patterns start with a literal '<', which the regex engine scans for fast.)
_LETTER_TAGS_LETTER = re.compile(r'(<(?<=\w<)[^>]*>(?:<[^>]*>)*)(?=(\w+))')
# Markup right after a comma/stop (and closing quotes) and before a word:
# `conceived</w>,<w>and` reads "conceived, and". Dashes stay unspaced.
_PUNCT_TAGS_LETTER = re.compile(
    r'(<(?:(?<=[,.;:!?]<)|(?<=[,.;:!?][”’]<))[^>]*>(?:<[^>]*>)*)(?=\w)')
_TAG = re.compile(r'<[^>]*>')
_PREV_WORD = re.compile(r'\w+$')
# Spanish object pronouns that RV1909 sometimes adds (in italics) to a verb:
# `házme<transChange>lo</transChange>` is "házmelo".
_CLITICS = frozenset({'lo', 'la', 'le', 'los', 'las', 'les', 'me', 'te', 'se',
                      'nos', 'os'})
_VERB_ENDING = re.compile(r'(?:[aeií]r|[aeií]d|ndo)$')
_SHORT_IMPERATIVES = frozenset({'di', 'dí', 'da', 'haz', 'vi', 'he'})
_ACCENTED = re.compile(r'[áéíóú]')
# Accented words seen before such an addition that are not verbs.
_NOT_HOSTS = frozenset({'jehová', 'josué', 'cuánto', 'ejército'})


def _attaches(prev_word: str, next_word: str) -> bool:
  """Whether an added clitic `next_word` is written joined to `prev_word`.

  RV1909 writes enclitics after infinitives (`ver[me]`), imperatives
  (`alabad[le]`, `haz[lo]`) and gerunds, and a finite verb carrying one has a
  written accent (`oyéndo[lo]`, `púso[les]`, `vió[lo]`). Elsewhere the
  addition is a separate word (`que[la]`, `no[lo]`).
  """
  if next_word.lower() not in _CLITICS:
    return False
  prev = prev_word.lower()
  return bool(_VERB_ENDING.search(prev) or prev in _SHORT_IMPERATIVES or
              (_ACCENTED.search(prev) and prev not in _NOT_HOSTS))


def _word_boundary(m: re.Match) -> str:
  tags = m.group(1)
  if '<transChange' in tags:
    prev = _PREV_WORD.search(m.string, 0, m.start())
    if prev and _attaches(prev.group(0), m.group(2)):
      return tags
  return ' ' + tags


def _clean(osis: str) -> str:
  """Scripture text of one verse's OSIS: markup stripped, words kept apart."""
  text = _DROPPED.sub(' ', osis)
  text = _DROPPED_DIV.sub(' ', text)
  text = _BREAK.sub(' ', text)
  text = _LETTER_TAGS_LETTER.sub(_word_boundary, text)
  text = _PUNCT_TAGS_LETTER.sub(r' \1', text)
  text = html.unescape(_TAG.sub('', text))
  return ' '.join(text.split())


# ---------------------------------------------------------------------------
# Reading modules.
# ---------------------------------------------------------------------------


# diatheke is slow to start and slow per verse (README, "Data"), so it is
# called once per group of books (not per verse, nor per book) and the
# groups run in parallel. Groups start and end on books of the module's
# versification: a range naming a book the module lacks prints nothing, which
# is what the deuterocanon groups do for the Spanish module.
_BOOK_RANGES: tuple[str, ...] = (
    'Genesis-Leviticus', 'Numbers-Judges', 'Ruth-II Kings',
    'I Chronicles-Job', 'Psalms-Song of Solomon', 'Isaiah-Ezekiel',
    'Daniel-Malachi', 'Tobit-Baruch', 'Prayer of Azariah-IV Maccabees',
    'Matthew-Luke', 'John-II Corinthians', 'Galatians-Revelation of John',
)
# Each entry is printed as `[preverse]Book C:V: text`: the text may run over
# several lines, the preverse holds headings.
_VERSE_MARKER = re.compile(
    r'^.*?(' + '|'.join(re.escape(b) for b in
                        sorted(BOOKS, key=len, reverse=True)) +
    r') (\d+):(\d+): ', re.M)


def _parse(raw: str, module: str) -> dict[Key, str]:
  """Splits diatheke output into clean verse texts (empty verses omitted).

  diatheke repeats the last preverse it saw in front of later verses (Psalms
  3:2 is printed after the title of 3:1, every verse after Psalm 151 after
  its title), so the preverse is never scripture and is dropped.
  """
  raw = raw.rstrip()
  trailer = f'({module})'  # diatheke ends its output with this line.
  if raw.endswith(trailer):
    raw = raw[:-len(trailer)]
  matches = list(_VERSE_MARKER.finditer(raw))
  verses: dict[Key, str] = {}
  for m, nxt in zip(matches, matches[1:] + [None]):
    text = _clean(raw[m.end():nxt.start() if nxt else len(raw)])
    if text:
      verses[(m.group(1), int(m.group(2)), int(m.group(3)))] = text
  return verses


def _read_modules(modules: list[str]) -> dict[str, dict[Key, str]]:
  """Clean verse texts of several modules, read in parallel threads."""
  for module in modules:
    _check_module(module)
  jobs = [(module, key) for module in modules for key in _BOOK_RANGES]
  workers = min(len(jobs), max(2, os.cpu_count() or 2))
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    # Parsing in the worker too: it overlaps with other diatheke processes.
    parsed = list(pool.map(lambda job: _parse(_diatheke(*job), job[0]),
                           jobs))
  result: dict[str, dict[Key, str]] = {module: {} for module in modules}
  for (module, _), verses in zip(jobs, parsed):
    result[module].update(verses)
  return result


def read_module(module: str) -> dict[Key, str]:
  """Clean text of every non-empty verse of one SWORD module.

  Keys are (book, chapter, verse) with book names as in `BOOKS`, in canonical
  order. Raises CorpusUnavailableError if diatheke or the module is missing.
  """
  return _read_modules([module])[module]


# Misalignment checks (see _misaligned). A pair whose length ratio is this
# many times off the usual es/en ratio holds more (or less) than one verse.
_MAX_LENGTH_FACTOR = 3.0
# A chapter is shifted if moving the Spanish verse numbers by up to this many
# verses makes the lengths agree clearly better (mean |log ratio| below
# _SHIFT_GAIN times that of the unshifted pairing).
_MAX_SHIFT = 6
_SHIFT_GAIN = 0.7


def _misaligned(es: dict[Key, str], en: dict[Key, str]) -> set[Key]:
  """Keys present in both modules whose texts are not translations.

  The English module uses NRSVA versification; the Spanish one keeps
  RV1909's own verse division squeezed into KJV numbering. Where they differ,
  the Spanish module leaves a slot empty, lumps several verses into one
  (Job 39:30 holds 39:27-40:5) and numbers a whole chapter one or more verses
  off (Numbers 13:1 there is 12:16 in English). Length is the signal:
  - a pair whose length ratio is far off the usual one is dropped;
  - a chapter that sits next to a verse missing on one side, and whose
    lengths match much better with the Spanish numbering shifted, is
    dropped whole. (Only such chapters are tested: with lengths alone, short
    poetic chapters can look shifted by chance.)
  Partial shifts inside a chapter (e.g. I Kings 22:43-53) are not caught.
  """
  common = es.keys() & en.keys()
  log_ratio = {k: math.log(len(es[k]) / len(en[k])) for k in common}
  typical = statistics.median(log_ratio.values())
  bad = {k for k, r in log_ratio.items()
         if abs(r - typical) > math.log(_MAX_LENGTH_FACTOR)}

  books = {k[0] for k in es} & {k[0] for k in en}
  gaps = {k for k in es.keys() ^ en.keys() if k[0] in books}
  suspects = {(b, c + d) for b, c, _ in gaps for d in (0, 1)}
  es_len: dict[tuple[str, int], dict[int, int]] = {}
  en_len: dict[tuple[str, int], dict[int, int]] = {}
  for texts, lengths in ((es, es_len), (en, en_len)):
    for (b, c, v), t in texts.items():
      if (b, c) in suspects:
        lengths.setdefault((b, c), {})[v] = len(t)

  def cost(chapter: tuple[str, int], shift: int) -> float:
    e, n = es_len.get(chapter, {}), en_len.get(chapter, {})
    devs = [abs(math.log(le / n[v + shift]) - typical)
            for v, le in e.items() if v + shift in n]
    return statistics.mean(devs) if len(devs) >= 3 else math.inf

  for chapter in suspects:
    unshifted = cost(chapter, 0)
    best = min(cost(chapter, s) for s in range(-_MAX_SHIFT, _MAX_SHIFT + 1)
               if s)
    if best < _SHIFT_GAIN * unshifted:
      bad |= {k for k in common if k[:2] == chapter}
  return bad


def aligned_verses() -> tuple[list[Verse], dict]:
  """Verse pairs of the two modules, in canonical order, and statistics.

  A verse is kept if both modules have text for it and the texts translate
  each other (see _misaligned).

  Headings asymmetry: the Spanish module has Psalm titles inside verse 1
  ("Salmo de David, ... ¡OH Jehová..."), with no markup to separate them, so
  they stay there; the English module marks them as <title>, which is
  dropped. Spanish verse 1 of a Psalm is thus longer than its English pair.

  Stats: verses_es, verses_en (non-empty verses per module), aligned,
  dropped_only_es, dropped_only_en (verses in one module only: mostly the
  deuterocanon, also verses one translation omits), dropped_misaligned
  (pairs on both sides whose verse numbers do not match in content).
  """
  texts = _read_modules([ES_MODULE, EN_MODULE])
  es, en = texts[ES_MODULE], texts[EN_MODULE]
  misaligned = _misaligned(es, en)
  keys = sorted((es.keys() & en.keys()) - misaligned,
                key=lambda k: (_BOOK_INDEX[k[0]], k[1], k[2]))
  verses = [Verse(b, c, v, es[(b, c, v)], en[(b, c, v)]) for b, c, v in keys]
  stats = {
      'modules': {'es': ES_MODULE, 'en': EN_MODULE},
      'verses_es': len(es),
      'verses_en': len(en),
      'aligned': len(verses),
      'dropped_only_es': len(es.keys() - en.keys()),
      'dropped_only_en': len(en.keys() - es.keys()),
      'dropped_misaligned': len(misaligned),
  }
  return verses, stats


# ---------------------------------------------------------------------------
# Splitting and writing.
# ---------------------------------------------------------------------------


def split_of(book: str, chapter: int) -> str:
  """'train', 'valid' or 'test' for a whole chapter.

  A stable hash (sha256, not Python's per-process randomised hash()), so the
  split is the same on every machine and run, and a chapter never straddles
  splits (neighbouring verses are too alike to keep apart otherwise).
  """
  digest = hashlib.sha256(
      f'{_SPLIT_SALT}|{book} {chapter}'.encode('utf-8')).digest()
  bucket = int.from_bytes(digest[:8], 'big') % 10_000
  if bucket < _VALID_CUT:
    return 'valid'
  if bucket < _TEST_CUT:
    return 'test'
  return 'train'


def _corpus_files(data_dir: str) -> list[str]:
  return [os.path.join(data_dir, f'{split}.{lang}')
          for split in SPLITS for lang in ('es', 'en')]


def prepare(data_dir: str) -> dict:
  """Writes data_dir/{train,valid,test}.{es,en} and data_dir/stats.json.

  Idempotent: if all files exist and stats.json has this FORMAT_VERSION, the
  recorded stats are returned without running diatheke. Files are written to
  a temporary directory and renamed into place, stats.json last, so an
  interrupted run never leaves a corpus that looks complete.
  """
  stats_path = os.path.join(data_dir, 'stats.json')
  files = _corpus_files(data_dir)
  if all(os.path.exists(p) for p in files + [stats_path]):
    try:
      with open(stats_path, encoding='utf-8') as f:
        stats = json.load(f)
      if stats.get('format_version') == FORMAT_VERSION:
        return stats
    except (OSError, ValueError):
      pass  # Unreadable stats: rebuild.

  verses, stats = aligned_verses()
  by_split: dict[str, list[Verse]] = {split: [] for split in SPLITS}
  for v in verses:
    by_split[split_of(v.book, v.chapter)].append(v)
  stats = {'format_version': FORMAT_VERSION, **stats,
           'splits': {split: len(vs) for split, vs in by_split.items()}}

  os.makedirs(data_dir, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix='.bible-tmp-', dir=data_dir)
  try:
    for split, vs in by_split.items():
      for lang in ('es', 'en'):
        with open(os.path.join(tmp_dir, f'{split}.{lang}'), 'w',
                  encoding='utf-8', newline='\n') as f:
          f.writelines(getattr(v, lang) + '\n' for v in vs)
    with open(os.path.join(tmp_dir, 'stats.json'), 'w',
              encoding='utf-8') as f:
      json.dump(stats, f, indent=2, ensure_ascii=False)
      f.write('\n')
    # Invalidate the old corpus first: until the new stats.json lands, the
    # directory does not pass the completeness check above.
    if os.path.exists(stats_path):
      os.remove(stats_path)
    for path in files:
      os.replace(os.path.join(tmp_dir, os.path.basename(path)), path)
    os.replace(os.path.join(tmp_dir, 'stats.json'), stats_path)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return stats


def write_chapter_text(directory: str, module: str = ES_MODULE) -> dict:
  """Writes directory/{train,valid,test}.txt: one chapter of `module` per
  line (its verses joined by spaces), each chapter in its split (`split_of`,
  as the translation corpus): users' text files for the language models'
  measurements (experiments/text_lm.py). Returns characters per split."""
  texts = read_module(module)
  chapters: dict[tuple[str, int], list[str]] = {}
  for book, chapter, verse in sorted(
      texts, key=lambda k: (_BOOK_INDEX[k[0]], k[1], k[2])):
    chapters.setdefault((book, chapter), []).append(texts[book, chapter,
                                                          verse])
  lines: dict[str, list[str]] = {split: [] for split in SPLITS}
  for (book, chapter), verses in chapters.items():
    lines[split_of(book, chapter)].append(' '.join(verses) + '\n')
  os.makedirs(directory, exist_ok=True)
  for split, split_lines in lines.items():
    with open(os.path.join(directory, f'{split}.txt'), 'w', encoding='utf-8',
              newline='\n') as f:
      f.writelines(split_lines)
  return {split: sum(map(len, split_lines))
          for split, split_lines in lines.items()}


if __name__ == '__main__':
  # python -m transformer.data.bible DIR [MODULE]: the chapter text files.
  print(write_chapter_text(*sys.argv[1:3]))
