"""Old tree against new: every experiment's first training steps, bit for bit.

A standalone script (standard library only; it never imports `transformer`):
each run goes through `launch.py` in a subprocess, in the repository root
given by --root, with PYTHONPATH set to that root so that `transformer` and
`experiments` are that tree's (checked before anything runs).

Collect the first steps of every experiment of a tree, one at a time:

  python tests/scripts/first_steps.py --root=/work/old --out=/work/old_first_steps.json
  python tests/scripts/first_steps.py --root=/work/main --out=/work/new_first_steps.json

Each experiment runs `launch.py --experiment=NAME --workdir=TMP` with
COMMON_OVERRIDES (3 steps, a log record per step, no evaluation during or
after training, a checkpoint only at the end, no time limit) and its own
overrides from SPECIAL (below: data that is not offline replaced by the toy
source, users' files generated here, smaller batches for the big models);
every record of kind 'train' in TMP/metrics.jsonl is kept with its numeric
keys (loss, nll, perplexity, learning_rate, grad_norm, accuracy, ...) minus
the wall-clock rates (`*_per_s`). The output is one JSON object
{experiment: [records]} plus one key '_info' holding, per experiment, the
status, the overrides, a note, the time taken, the workdir's config.json and
the SHA-256 of its tokenizer files, and the tail of the log on failure. The
file is rewritten after every experiment; --resume skips those already done.

Compare two such files (exit status 1 on any difference or failure):

  python tests/scripts/first_steps.py --compare /work/old_first_steps.json /work/new_first_steps.json

Per experiment: IDENTICAL when the same steps have the same keys and every
value is exactly equal (float ==, as JSON round-trips floats exactly), else
the largest absolute and relative difference and where; also whether
config.json and the tokenizer are the same.

The key set of `--mode=benchmark`'s benchmark.json (default: tiny,
tiny_classify, tiny_lm, as configured):

  python tests/scripts/first_steps.py --benchmark-keys --root=/work/old --out=/work/old_benchmark_keys.json
  python tests/scripts/first_steps.py --compare /work/old_benchmark_keys.json /work/new_benchmark_keys.json

Both sides must run on the same machine kind with the same environment: the
runs use the CPU (JAX_PLATFORMS=cpu, one device), and XLA_FLAGS and other
JAX_* variables of the caller are removed (--keep-env keeps them).

Cost on the 2-core VM (4a32e4d, shared with other jobs): all 26 experiments
in 12 minutes, one at a time; the benchmark keys in under a minute. Host
memory peaks at up to 12 GiB (wmt_big, wmt_base: 10, lm1b_*: 8); a run that
the kernel's OOM killer ends shows as 'failed (exit -9, SIGKILL: out of
memory?)': rerun it with --resume --only=NAME on a quieter machine. Two runs
of the same tree give identical files (checked on 4a32e4d: every experiment,
and the benchmark keys), so any difference old/new is the code's.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

STEPS = 3
COMMON_OVERRIDES = (
    f'train.steps={STEPS}',
    'train.log_every=1',           # one record per step
    'eval.every=0',                # no evaluation during training
    'eval.final=false',            # nor after it
    'train.checkpoint_every=1000000',  # one checkpoint: the last step's
    'train.time_limit=0',          # bible_lm, text_lm: 15 minutes otherwise
)
DEFAULT_TIMEOUT_S = 900
INFO_KEY = '_info'

TOY = ('{tfds} is not offline: data.source=toy (the task family\'s generated '
       'data) and model.vocab_size={vocab} (the toy corpus allows at most '
       '{limit} SentencePiece pieces); compares the model and the train step, '
       'not the data pipeline of {tfds}')

# Per experiment: overrides after COMMON_OVERRIDES, a note, a timeout.
# '{text_dir:KIND}' is replaced by a directory of generated users' files.
SPECIAL = {
    'wmt_small': dict(
        overrides=['data.source=toy', 'model.vocab_size=200',
                   'data.batch_size=16'],
        note=TOY.format(tfds='TFDS wmt14_translate', vocab=200, limit=226) +
        '; data.batch_size=16 instead of 64 (memory: 64 rows took 17 GiB '
        'of host memory on CPU, 92 s)'),
    'wmt_base': dict(
        overrides=['data.source=toy', 'model.vocab_size=200',
                   'data.batch_size=16'],
        note=TOY.format(tfds='TFDS wmt14_translate', vocab=200, limit=226) +
        '; data.batch_size=16 instead of 96 (time and memory: 16 rows take '
        '10 GiB of host memory on CPU)'),
    'wmt_big': dict(
        overrides=['data.source=toy', 'model.vocab_size=200',
                   'data.batch_size=8'],
        note=TOY.format(tfds='TFDS wmt14_translate', vocab=200, limit=226) +
        '; data.batch_size=8 instead of 96 (time and memory: 8 rows take '
        '8-12 GiB of host memory on CPU)', timeout=1500),
    'lm1b_small': dict(
        overrides=['data.source=toy', 'model.vocab_size=40',
                   'data.batch_size=32'],
        note=TOY.format(tfds='TFDS lm1b', vocab=40, limit=43) +
        '; data.batch_size=32 instead of 256 (time and memory: 32 rows '
        'take 8.5 GiB of host memory on CPU)'),
    'lm1b_base': dict(
        overrides=['data.source=toy', 'model.vocab_size=40',
                   'data.batch_size=1'],
        note=TOY.format(tfds='TFDS lm1b', vocab=40, limit=43) +
        '; data.batch_size=1 instead of 256 (memory: 4 rows of 1,024 '
        'tokens took 22 GB of host memory on CPU)', timeout=1500),
    'imdb': dict(
        overrides=['data.source=toy', 'model.vocab_size=48'],
        note=TOY.format(tfds='TFDS imdb_reviews', vocab=48, limit=58)),
    'sst2': dict(
        overrides=['data.source=toy', 'model.vocab_size=48'],
        note=TOY.format(tfds='TFDS glue/sst2', vocab=48, limit=58)),
    'bench_classify_cpu': dict(
        overrides=['model.vocab_size=48'],
        note='data.source=toy as configured, but its vocabulary of 8,000 is '
        'more than the toy corpus allows (58): model.vocab_size=48'),
    'text_classification': dict(
        overrides=['data.text_dir={text_dir:classification}'],
        note='users\' files generated by this script (train/valid/test.tsv, '
        'text and label columns, 3 class names)'),
    'text_regression': dict(
        overrides=['data.text_dir={text_dir:regression}'],
        note='users\' files generated by this script (train/valid/test.tsv, '
        'text and numeric label columns)'),
    'text_lm': dict(
        overrides=['data.text_dir={text_dir:lm}'],
        note='users\' files generated by this script (train/valid/test.txt)'),
}
BENCHMARK_EXPERIMENTS = ('tiny', 'tiny_classify', 'tiny_lm')
BENCHMARK_OVERRIDES = {}  # experiment -> overrides; these run as configured


# ---------------------------------------------------------------------------
# Generated users' files: a portable PRNG, so every Python gives the same.
# ---------------------------------------------------------------------------


class _Rng:
  """SplitMix64: the same numbers on any platform and Python version."""

  def __init__(self, seed: int):
    self.state = seed & (2**64 - 1)

  def next(self) -> int:
    self.state = (self.state + 0x9E3779B97F4A7C15) & (2**64 - 1)
    z = self.state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return z ^ (z >> 31)

  def below(self, n: int) -> int:
    return self.next() % n


_ONSETS = ('b', 'c', 'd', 'f', 'g', 'h', 'j', 'k', 'l', 'm', 'n', 'p', 'r',
           's', 't', 'v', 'w', 'z', 'br', 'ch', 'st', 'tr', 'pl', 'gr')
_VOWELS = ('a', 'e', 'i', 'o', 'u', 'ai', 'ou', 'ee')
_CODAS = ('', '', '', 'n', 'r', 's', 'l', 't', 'nd', 'st')


def _lexicon(rng: _Rng, size: int) -> list[str]:
  words, seen = [], set()
  while len(words) < size:
    word = ''.join(_ONSETS[rng.below(len(_ONSETS))] +
                   _VOWELS[rng.below(len(_VOWELS))] +
                   _CODAS[rng.below(len(_CODAS))]
                   for _ in range(1 + rng.below(3)))
    if word not in seen:
      seen.add(word)
      words.append(word)
  return words


def _sentence(rng: _Rng, words: list[str], extra: list[str] = ()) -> str:
  tokens = [words[rng.below(len(words))] for _ in range(4 + rng.below(14))]
  for word in extra:
    tokens.insert(rng.below(len(tokens) + 1), word)
  text = ' '.join(tokens)
  return text[0].upper() + text[1:] + ('.', '!', '?', '.')[rng.below(4)]


def write_text_files(directory: str) -> dict[str, str]:
  """Users' files of the three formats; {kind: directory}."""
  rng = _Rng(2024)
  words = _lexicon(rng, 3000)
  sizes = {'train': 3000, 'valid': 300, 'test': 300}
  classes = ('negative', 'neutral', 'positive')
  markers = {'negative': ['bad', 'awful'], 'neutral': ['plain', 'fine'],
             'positive': ['good', 'great']}
  out = {}
  for kind in ('classification', 'regression', 'lm'):
    path = os.path.join(directory, kind)
    os.makedirs(path, exist_ok=True)
    out[kind] = path
  for split, size in sizes.items():
    lines = ['text\tlabel']
    for _ in range(size):
      label = classes[rng.below(3)]
      marker = markers[label][rng.below(2)]
      lines.append(f'{_sentence(rng, words, [marker])}\t{label}')
    with open(os.path.join(out['classification'], f'{split}.tsv'), 'w',
              encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')
    lines = ['text\tlabel']
    for _ in range(size):
      ups = rng.below(4)
      value = ups - 1.5 + rng.below(1000) / 1000.0
      lines.append(f'{_sentence(rng, words, ["up"] * ups)}\t{value:.3f}')
    with open(os.path.join(out['regression'], f'{split}.tsv'), 'w',
              encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')
    paragraphs = []
    for _ in range(size // 3):
      paragraphs.append(' '.join(_sentence(rng, words)
                                 for _ in range(2 + rng.below(5))))
    with open(os.path.join(out['lm'], f'{split}.txt'), 'w',
              encoding='utf-8') as f:
      f.write('\n\n'.join(paragraphs) + '\n')
  return out


# ---------------------------------------------------------------------------
# Running launch.py in a tree.
# ---------------------------------------------------------------------------


def environment(root: str, keep_env: bool) -> dict[str, str]:
  env = dict(os.environ)
  if not keep_env:
    for name in list(env):
      if name.startswith(('JAX_', 'XLA_')) or name in ('LD_PRELOAD',):
        del env[name]
    env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = root
  env['PYTHONHASHSEED'] = '0'
  env['PYTHONUNBUFFERED'] = '1'
  return env


def check_tree(python: str, root: str, env: dict[str, str]) -> dict:
  """Where `transformer` and `experiments` come from: must be `root`."""
  code = ('import json, transformer, experiments; print(json.dumps('
          '[transformer.__file__, experiments.__file__]))')
  out = subprocess.run([python, '-c', code], cwd=root, env=env, text=True,
                       capture_output=True, check=True)
  files = json.loads(out.stdout.strip().splitlines()[-1])
  real_root = os.path.realpath(root)
  for file in files:
    if not os.path.realpath(file).startswith(real_root + os.sep):
      sys.exit(f'{file} is not under --root={root}: PYTHONPATH does not pick '
               'the tree (an installed copy shadows it?)')
  commit = subprocess.run(['git', '-C', root, 'rev-parse', 'HEAD'],
                          text=True, capture_output=True).stdout.strip()
  dirty = subprocess.run(['git', '-C', root, 'status', '--porcelain'],
                         text=True, capture_output=True).stdout.strip()
  return {'root': root, 'transformer': files[0], 'experiments': files[1],
          'commit': commit, 'uncommitted_changes': bool(dirty)}


def experiments_of(root: str) -> list[str]:
  return sorted(os.path.splitext(os.path.basename(p))[0]
                for p in glob.glob(os.path.join(root, 'experiments', '*.py'))
                if not os.path.basename(p).startswith('_'))


def run_launch(python: str, root: str, env: dict[str, str], args: list[str],
               log_path: str, timeout: int) -> tuple[str, float, int | None]:
  """('ok' | 'failed (exit N)' | 'timeout (S s)', seconds, peak RSS bytes);
  the output goes to log_path."""
  start = time.time()
  with open(log_path, 'w', encoding='utf-8') as log:
    log.write(' '.join([python, 'launch.py', *args]) + '\n')
    log.flush()
    process = subprocess.Popen([python, 'launch.py', *args], cwd=root,
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    status, max_rss = None, None
    while status is None:
      pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
      if pid:  # ended; usage is its own (TCMalloc's execve keeps the pid)
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        max_rss = usage.ru_maxrss * 1024  # Linux: kilobytes
        code = process.returncode
        status = 'ok' if code == 0 else (
            f'failed (exit {code}' +
            (', SIGKILL: out of memory?)' if code == -9 else ')'))
      elif time.time() - start > timeout:
        os.killpg(process.pid, 9)  # the run's own process group only
        process.wait()
        status = f'timeout ({timeout} s)'
      else:
        time.sleep(0.5)
  return status, time.time() - start, max_rss


def tail(path: str, chars: int = 3000) -> str:
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read()[-chars:]


def train_records(path: str) -> list[dict]:
  """The numeric keys of every 'train' record, wall-clock rates left out."""
  records = []
  if not os.path.exists(path):
    return records
  with open(path, encoding='utf-8') as f:
    for line in f:
      record = json.loads(line)
      if record.get('kind') != 'train':
        continue
      records.append({k: v for k, v in record.items()
                      if isinstance(v, (int, float))
                      and not isinstance(v, bool)
                      and not k.endswith('_per_s')})
  return records


def file_hashes(workdir: str) -> dict[str, str]:
  """SHA-256 of the vocabulary files. Not of tokenizer.model: its
  TrainerSpec holds the path of the temporary directory it was trained in,
  so it differs from run to run; tokenizer.vocab lists its pieces and scores.
  """
  hashes = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'tokenizer*'))):
    if path.endswith('.model'):
      continue
    with open(path, 'rb') as f:
      hashes[os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
  return hashes


def overrides_for(name: str, text_dirs: dict[str, str]) -> list[str]:
  overrides = list(COMMON_OVERRIDES)
  for override in SPECIAL.get(name, {}).get('overrides', []):
    for kind, directory in text_dirs.items():
      override = override.replace('{text_dir:%s}' % kind, directory)
    overrides.append(override)
  return overrides


def write_json(path: str, value) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=1, sort_keys=False)
    f.write('\n')
  os.replace(tmp, path)


def harness_info(args, tree: dict, kind: str) -> dict:
  return {'kind': kind, 'tree': tree, 'python': args.python,
          'host': platform.node(), 'machine': platform.machine(),
          'date': datetime.datetime.now().isoformat(timespec='seconds'),
          'common_overrides': list(COMMON_OVERRIDES),
          'keep_env': args.keep_env}


def collect(args) -> int:
  env = environment(args.root, args.keep_env)
  tree = check_tree(args.python, args.root, env)
  print(f'tree: {tree}', flush=True)
  names = experiments_of(args.root)
  if args.only:
    names = [n for n in names if n in args.only.split(',')]
  if args.skip:
    names = [n for n in names if n not in args.skip.split(',')]
  result = {}
  if args.resume and os.path.exists(args.out):
    with open(args.out, encoding='utf-8') as f:
      result = json.load(f)
  info = result.setdefault(INFO_KEY, {})
  info['_harness'] = harness_info(args, tree, 'first_steps')
  scratch = tempfile.mkdtemp(prefix='first_steps_', dir=args.tmp)
  text_dirs = write_text_files(os.path.join(scratch, 'text_files'))
  logs = args.logs or os.path.join(scratch, 'logs')
  os.makedirs(logs, exist_ok=True)
  failures = 0
  try:
    for name in names:
      if (args.resume and not args.only and
          info.get(name, {}).get('status') == 'ok'):
        print(f'{name}: done already', flush=True)
        continue
      special = SPECIAL.get(name, {})
      overrides = overrides_for(name, text_dirs)
      workdir = os.path.join(scratch, 'workdirs', name)
      launch_args = [f'--experiment={name}', f'--workdir={workdir}',
                     *[f'--set={o}' for o in overrides]]
      timeout = special.get('timeout', args.timeout)
      print(f'{name}: running ({len(overrides)} overrides, timeout '
            f'{timeout} s)', flush=True)
      log_path = os.path.join(logs, f'{name}.log')
      status, seconds, max_rss = run_launch(args.python, args.root, env, launch_args,
                                   log_path, timeout)
      records = train_records(os.path.join(workdir, 'metrics.jsonl'))
      if status == 'ok' and [r.get('step') for r in records] != list(
          range(1, STEPS + 1)):
        status = f'failed (steps logged: {[r.get("step") for r in records]})'
      entry = {'status': status, 'seconds': round(seconds, 1),
               'max_rss_bytes': max_rss,
               # as written in SPECIAL: the generated files' path differs
               'overrides': list(special.get('overrides', [])),
               'note': special.get('note', 'offline as configured'),
               'tokenizer_sha256': file_hashes(workdir)}
      config_path = os.path.join(workdir, 'config.json')
      if os.path.exists(config_path):
        with open(config_path, encoding='utf-8') as f:
          entry['config'] = json.load(f)
      if status != 'ok':
        failures += 1
        entry['log_tail'] = tail(log_path)
      result[name] = records
      info[name] = entry
      write_json(args.out, result)
      shown = (f'loss {records[-1].get("loss")}' if records else 'no records')
      rss = f', peak RSS {max_rss / 2**30:.1f} GiB' if max_rss else ''
      print(f'{name}: {status} in {seconds:.0f} s{rss}, {len(records)} '
            f'records, {shown}', flush=True)
      if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
  finally:
    if not args.keep:
      shutil.rmtree(os.path.join(scratch, 'workdirs'), ignore_errors=True)
  print(f'Wrote {args.out}; {failures} failed. Logs and files: {scratch}',
        flush=True)
  return 1 if failures else 0


def benchmark_keys(args) -> int:
  env = environment(args.root, args.keep_env)
  tree = check_tree(args.python, args.root, env)
  print(f'tree: {tree}', flush=True)
  names = args.only.split(',') if args.only else list(BENCHMARK_EXPERIMENTS)
  result = {INFO_KEY: {'_harness': harness_info(args, tree,
                                                'benchmark_keys')}}
  scratch = tempfile.mkdtemp(prefix='benchmark_keys_', dir=args.tmp)
  failures = 0
  for name in names:
    workdir = os.path.join(scratch, name)
    overrides = BENCHMARK_OVERRIDES.get(name, [])
    launch_args = [f'--experiment={name}', f'--workdir={workdir}',
                   '--mode=benchmark', *[f'--set={o}' for o in overrides]]
    print(f'{name}: benchmarking', flush=True)
    log_path = os.path.join(scratch, f'{name}.log')
    status, seconds, max_rss = run_launch(args.python, args.root, env, launch_args,
                                 log_path, args.timeout)
    entry = {'status': status, 'seconds': round(seconds, 1),
             'overrides': overrides}
    path = os.path.join(workdir, 'benchmark.json')
    if status == 'ok' and os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        report = json.load(f)
      result[name] = sorted(report)
      entry['types'] = {k: type(v).__name__ for k, v in sorted(report.items())}
    else:
      failures += 1
      result[name] = []
      entry['log_tail'] = tail(log_path)
    result[INFO_KEY][name] = entry
    write_json(args.out, result)
    print(f'{name}: {status} in {seconds:.0f} s, {len(result[name])} keys',
          flush=True)
  print(f'Wrote {args.out}; {failures} failed. Logs: {scratch}', flush=True)
  return 1 if failures else 0


# ---------------------------------------------------------------------------
# Comparing.
# ---------------------------------------------------------------------------


def _same(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
    return math.isnan(b)
  return a == b and type(a) is type(b)


def _flatten(value, prefix: str = '') -> dict:
  if isinstance(value, dict):
    out = {}
    for k, v in value.items():
      out.update(_flatten(v, f'{prefix}{k}.'))
    return out
  return {prefix[:-1]: value}


def compare_steps(old: list[dict], new: list[dict]) -> tuple[bool, str]:
  if not old or not new:
    return False, f'no records ({len(old)} old, {len(new)} new)'
  if [r.get('step') for r in old] != [r.get('step') for r in new]:
    return False, (f'steps differ: {[r.get("step") for r in old]} vs '
                   f'{[r.get("step") for r in new]}')
  problems, worst = [], None  # worst: (abs, rel, key, step, old, new)
  for a, b in zip(old, new):
    if set(a) != set(b):
      problems.append(f'step {a["step"]}: keys only old '
                      f'{sorted(set(a) - set(b))}, only new '
                      f'{sorted(set(b) - set(a))}')
    for key in sorted(set(a) & set(b)):
      if _same(a[key], b[key]):
        continue
      diff = abs(a[key] - b[key])
      rel = diff / max(abs(a[key]), abs(b[key]), 1e-300)
      if worst is None or rel > worst[1]:
        worst = (diff, rel, key, a['step'], a[key], b[key])
  if worst:
    problems.append(
        f'largest difference: {worst[2]} at step {worst[3]}: {worst[4]!r} vs '
        f'{worst[5]!r} (abs {worst[0]:.3g}, rel {worst[1]:.3g})')
  if problems:
    return False, '; '.join(problems)
  keys = sorted(set().union(*old) - {'step'})
  return True, f'{len(old)} steps, keys {",".join(keys)}'


def compare(old_path: str, new_path: str, only: str | None = None) -> int:
  with open(old_path, encoding='utf-8') as f:
    old = json.load(f)
  with open(new_path, encoding='utf-8') as f:
    new = json.load(f)
  old_info, new_info = old.pop(INFO_KEY, {}), new.pop(INFO_KEY, {})
  kind = old_info.get('_harness', {}).get('kind')
  if kind != new_info.get('_harness', {}).get('kind'):
    sys.exit(f'{old_path} and {new_path} are of different kinds')
  for label, info in (('old', old_info), ('new', new_info)):
    tree = info.get('_harness', {}).get('tree', {})
    print(f'{label}: {tree.get("root")} at {tree.get("commit", "?")[:12]}'
          f'{" (with uncommitted changes)" if tree.get("uncommitted_changes") else ""}'
          f', {info.get("_harness", {}).get("date")} on '
          f'{info.get("_harness", {}).get("host")}')
  bad = 0
  names = sorted(set(old) | set(new))
  if only:
    names = [n for n in names if n in only.split(',')]
  for name in names:
    o_info, n_info = old_info.get(name, {}), new_info.get(name, {})
    if name not in old or name not in new:
      bad += 1
      print(f'{name:22s} MISSING in {"new" if name in old else "old"}')
      continue
    failed = [f'{side} {i.get("status")}' for side, i in
              (('old', o_info), ('new', n_info))
              if i.get('status', 'ok') != 'ok']
    if kind == 'benchmark_keys':
      if failed:
        bad += 1
        print(f'{name:22s} FAILED ({", ".join(failed)})')
        continue
      only_old = sorted(set(old[name]) - set(new[name]))
      only_new = sorted(set(new[name]) - set(old[name]))
      types = [k for k in set(old[name]) & set(new[name])
               if o_info.get('types', {}).get(k) !=
               n_info.get('types', {}).get(k)]
      if only_old or only_new:
        bad += 1
        print(f'{name:22s} KEYS DIFFER: only old {only_old}, only new '
              f'{only_new}')
      else:
        print(f'{name:22s} SAME KEYS ({len(old[name])})' +
              (f'; value types differ: {sorted(types)}' if types else ''))
      continue
    if failed:
      bad += 1
      print(f'{name:22s} FAILED ({", ".join(failed)})')
      continue
    same, detail = compare_steps(old[name], new[name])
    extras = []
    if o_info.get('overrides') != n_info.get('overrides'):
      extras.append(f'overrides differ: {o_info.get("overrides")} vs '
                    f'{n_info.get("overrides")}')
    o_config = _flatten(o_info.get('config', {}))
    n_config = _flatten(n_info.get('config', {}))
    for config in (o_config, n_config):  # a path of this run's scratch files
      config.pop('data.text_dir', None)
    if o_config != n_config:
      keys = sorted(k for k in set(o_config) | set(n_config)
                    if o_config.get(k, '<absent>') !=
                    n_config.get(k, '<absent>'))
      extras.append(f'config.json differs at {keys}')
    if o_info.get('tokenizer_sha256') != n_info.get('tokenizer_sha256'):
      extras.append('tokenizer files differ')
    if not same or extras:
      bad += 1
    verdict = 'IDENTICAL' if same else 'DIFFERENT'
    shown = [o.split('={')[0] + '=<generated>' if '={' in o else o
             for o in o_info.get('overrides', [])]
    note = f' [{", ".join(shown)}]' if shown else ''
    print(f'{name:22s} {verdict}{note}: {detail}' +
          ''.join(f'; {e}' for e in extras))
  if kind == 'benchmark_keys':
    print(f'{bad} experiment(s) with other keys or failed' if bad else
          'All experiments report the same keys.')
  else:
    print(f'{bad} experiment(s) not identical' if bad else
          'All experiments identical.')
  return 1 if bad else 0


def main() -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--root', help='repository root to run')
  parser.add_argument('--out', help='output JSON')
  parser.add_argument('--compare', nargs=2, metavar=('OLD', 'NEW'))
  parser.add_argument('--benchmark-keys', action='store_true',
                      help='benchmark.json key sets instead of first steps')
  parser.add_argument('--only', help='comma-separated experiments (also '
                      'with --compare)')
  parser.add_argument('--skip', help='comma-separated experiments')
  parser.add_argument('--resume', action='store_true',
                      help='add to --out: keep its experiments, rerun those '
                      'that failed (with --only: rerun those named)')
  parser.add_argument('--timeout', type=int, default=DEFAULT_TIMEOUT_S,
                      help='seconds per experiment (SPECIAL may say more)')
  parser.add_argument('--python', default=sys.executable)
  parser.add_argument('--tmp', default=None, help='scratch parent directory')
  parser.add_argument('--logs', default=None, help='keep the logs here')
  parser.add_argument('--keep', action='store_true', help='keep workdirs')
  parser.add_argument('--keep-env', action='store_true',
                      help='keep XLA_FLAGS, JAX_* and the platform')
  args = parser.parse_args()
  if args.compare:
    return compare(*args.compare, only=args.only)
  if not args.root or not args.out:
    parser.error('--root and --out are needed (or --compare OLD NEW)')
  args.root = os.path.abspath(args.root)
  args.out = os.path.abspath(args.out)
  return benchmark_keys(args) if args.benchmark_keys else collect(args)


if __name__ == '__main__':
  sys.exit(main())
