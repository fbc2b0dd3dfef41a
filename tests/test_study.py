"""--mode=study: the statistics against scipy on hand-made numbers, the
grid, named variants (imbalance_study's, and a study of variants end to end
with a stand-in for launch.py), the report's tables, and a study of
tiny_classify end to end (2 losses x 2 seeds): its files, skipping what is
finished, resuming what is not, and the definitions it refuses before
anything runs."""

import csv
import glob
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
import scipy.stats

from experiments import imbalance_study
from experiments import tiny_classify
from scripts import launching
from scripts.launching import finish, start
from transformer import study
from transformer import study_report
from transformer import study_runs
from transformer import study_stats
from transformer.tasks.labelled import Classification

# ---------------------------------------------------------------------------
# The statistics, against scipy and NumPy written out here.
# ---------------------------------------------------------------------------

SCORES = [0.712, 0.745, 0.688, 0.803, 0.731]


@pytest.mark.parametrize('values', [SCORES, SCORES[:2], [3.0, 3.5, 2.0]])
def test_interval_is_the_student_t_interval_of_the_mean(values):
  got = study_stats.describe(values)
  n = len(values)
  mean = sum(values) / n
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
  low, high = scipy.stats.t.interval(0.95, n - 1, loc=mean,
                                     scale=std / math.sqrt(n))
  assert got.n == n
  np.testing.assert_allclose([got.mean, got.std, got.low, got.high],
                             [mean, std, low, high], rtol=1e-12)


def test_interval_leaves_out_missing_values_and_needs_two():
  assert study_stats.describe([0.5, None, math.nan]) == (
      study_stats.Interval(1, 0.5, None, None, None))
  assert study_stats.describe([]) == study_stats.Interval(
      0, None, None, None, None)
  assert study_stats.describe([None, 1.0, 3.0]).n == 2


def test_paired_difference_is_scipys_paired_t_test():
  reference = dict(enumerate(SCORES))
  other = {0: 0.731, 1: 0.760, 2: 0.701, 3: 0.799, 4: 0.750}
  got = study_stats.paired(other, reference)
  d = np.array([other[s] - reference[s] for s in range(5)])
  t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
  assert got.n == 5
  assert got.mean == pytest.approx(d.mean(), rel=1e-12)
  assert got.p_value == pytest.approx(
      2 * scipy.stats.t.sf(abs(t), len(d) - 1), rel=1e-10)
  assert got.p_value == pytest.approx(scipy.stats.ttest_rel(
      [other[s] for s in range(5)], SCORES).pvalue, rel=1e-12)


def test_paired_difference_pairs_by_seed_and_needs_two_pairs():
  # Seed 2 is missing from one side and seed 3 undefined: pairs 0 and 1.
  got = study_stats.paired({0: 1.0, 1: 3.0, 3: math.nan, 9: 5.0},
                           {0: 0.5, 1: 2.0, 2: 7.0, 3: 1.0})
  assert got.n == 2 and got.mean == pytest.approx(0.75)
  assert got.p_value == pytest.approx(
      scipy.stats.ttest_rel([1.0, 3.0], [0.5, 2.0]).pvalue)
  one = study_stats.paired({0: 1.0}, {0: 0.5, 1: 2.0})
  assert one == study_stats.PairedDifference(1, 0.5, None)


def test_best_follows_the_metrics_direction():
  means = {'a': 0.7, 'b': 0.9, 'c': None, 'd': 0.6}
  assert study_stats.best(means, 'max') == 'b'
  assert study_stats.best(means, 'min') == 'd'
  assert study_stats.best(means, None) is None
  assert study_stats.best({'a': None}, 'max') is None


# ---------------------------------------------------------------------------
# The grid, and where a run stands.
# ---------------------------------------------------------------------------


def test_combinations_are_the_product_in_the_order_given():
  vary = study.parse_vary(['train.loss=cross_entropy,focal',
                           'train.class_weights=none, balanced'])
  names = [c.name for c in study.combinations(vary)]
  assert names == ['loss=cross_entropy,class_weights=none',
                   'loss=cross_entropy,class_weights=balanced',
                   'loss=focal,class_weights=none',
                   'loss=focal,class_weights=balanced']
  assert study.combinations(vary)[2].assignments == (
      'train.loss=focal', 'train.class_weights=none')


def test_directory_names_are_safe_and_distinct():
  # Two keys ending alike keep their whole paths; '/' and ' ' are replaced;
  # ';' separates values that hold commas.
  vary = study.parse_vary(['data.max_length=16', 'model.max_length=64',
                           'data.text_dir=/a b/c',
                           'train.class_weights=1,2,3;none'])
  assert [c.name for c in study.combinations(vary)] == [
      'data.max_length=16,model.max_length=64,text_dir=_a_b_c,'
      'class_weights=1_2_3',
      'data.max_length=16,model.max_length=64,text_dir=_a_b_c,'
      'class_weights=none']
  assert study.combinations(())[0].name == 'default'
  # A lone value that holds commas ends with ';'.
  assert study.parse_vary(['train.class_weights=1,2,4;']) == (
      ('train.class_weights', ('1,2,4',)),)


@pytest.mark.parametrize('specs,message', [
    (['train.loss'], 'expected KEY=VALUE,VALUE'),
    (['seed=0,1'], 'give the number of seeds with --seeds=N'),
    (['train.loss=focal', 'train.loss=hinge'], 'train.loss is varied twice'),
    (['train.loss=focal,focal'], "'focal' given more than once"),
])
def test_vary_syntax_errors_name_the_flag(specs, message):
  with pytest.raises(study.StudyError, match='--vary=') as error:
    study.parse_vary(specs)
  assert message in str(error.value)


def definition(*vary, sets=('train.steps=20',), seeds=2):
  return study.Definition('tiny_classify', tuple(sets),
                          study.parse_vary(list(vary)), seeds)


@pytest.mark.parametrize('vary,sets,message', [
    (['train.los=focal'], (), 'train.los is no config key. Did you mean '
     'train.loss'),
    (['train.loss=cross_entropy,focul'], (), "the value 'focul' is refused: "
     'must be one of cross_entropy'),
    (['train.steps=10,many'], (), "the value 'many' is refused: expected int"),
    (['train.loss=focal,hinge'], ('train.loss=focal',),
     '--vary=train.loss=focal,hinge and --set=train.loss=focal both set'),
    (['train.loss=focal'], ('seed=4',), '--set=seed=4: each run of a study '
     'gets its own seed'),
])
def test_bad_definitions_are_refused_with_the_flag(vary, sets, message):
  with pytest.raises(study.StudyError) as error:
    study.check(definition(*vary, sets=sets))
  assert message in str(error.value)
  assert '\n' not in str(error.value)


def test_check_returns_the_task_classes_metrics():
  measures = study.check(definition('train.loss=cross_entropy,focal'))
  assert measures.headline == Classification.HEADLINE_METRICS
  assert measures.directions['balanced_accuracy'] == 'max'


def write_records(workdir, *records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for record in records:
      f.write(json.dumps(record) + '\n')


TRAIN = {'step': 20, 'kind': 'train', 'loss': 0.5}


def stop(reason, step=20, wall_s=3.0):
  return {'step': step, 'kind': 'stop', 'stop_reason': reason,
          'wall_s': wall_s}


def test_next_step_reads_the_stop_record_and_the_test_evaluation(tmp_path):
  workdir = str(tmp_path / 'run')
  assert study_runs.next_step(workdir) == 'train'  # nothing yet
  write_records(workdir, TRAIN, stop('SIGTERM'))
  assert study_runs.next_step(workdir) == 'train'  # preempted: resume
  write_records(workdir, TRAIN, stop('done'), TRAIN)
  assert study_runs.next_step(workdir) == 'train'  # resumed, then killed
  for reason in study_runs.FINISHED:
    write_records(workdir, TRAIN, stop(reason))
    assert study_runs.next_step(workdir) == 'evaluate'
  os.makedirs(os.path.join(workdir, 'eval'))
  with open(os.path.join(workdir, 'eval', 'valid_step20.json'), 'w') as f:
    f.write('{}')
  assert study_runs.next_step(workdir) == 'evaluate'  # not the test split
  with open(os.path.join(workdir, 'eval', 'test_step20_beam4.json'), 'w') as f:
    f.write('{}')
  assert study_runs.next_step(workdir) is None


def test_cpu_slots_are_disjoint_shares():
  assert study_runs.cpu_slots(2, [0, 1, 2, 3, 4]) == [(0, 1, 2), (3, 4)]
  assert study_runs.cpu_slots(1, [3, 1]) == [(1, 3)]
  assert study_runs.cpu_slots(3, [0, 1]) == [(0,), (1,), (0,)]


def test_a_slot_of_one_core_runs_xla_on_one_thread():
  base = {'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  assert study_runs.slot_environment(base, 2, 1)['XLA_FLAGS'] == base['XLA_FLAGS']
  one = study_runs.slot_environment(base, 1, 2)
  assert one['XLA_FLAGS'] == (base['XLA_FLAGS'] +
                              ' --xla_cpu_multi_thread_eigen=false')
  assert one['OMP_NUM_THREADS'] == one['OPENBLAS_NUM_THREADS'] == '1'
  assert 'xla_cpu_multi_thread_eigen' not in study_runs.slot_environment(
      base, 3, 2)['XLA_FLAGS']


# ---------------------------------------------------------------------------
# Named variants: imbalance_study's VARIANTS, and tiny_classify given some.
# ---------------------------------------------------------------------------


def with_variants(experiment, *vary, sets=(), seeds=1):
  return study.with_variants(study.Definition(
      experiment, tuple(sets), study.parse_vary(list(vary)), seeds))


def test_variants_stand_for_their_assignments_and_combine_with_a_key():
  got = with_variants('imbalance_study', 'variant=cross_entropy,ldam_drw',
                      'train.learning_rate=1e-3,3e-4')
  assert got.variants == (
      ('cross_entropy', imbalance_study.VARIANTS['cross_entropy']),
      ('ldam_drw', imbalance_study.VARIANTS['ldam_drw']))
  combinations = got.combinations()
  assert [c.name for c in combinations] == [
      'variant=cross_entropy,learning_rate=1e-3',
      'variant=cross_entropy,learning_rate=3e-4',
      'variant=ldam_drw,learning_rate=1e-3',
      'variant=ldam_drw,learning_rate=3e-4']
  assert combinations[3].settings == (('variant', 'ldam_drw'),
                                      ('train.learning_rate', '3e-4'))
  assert combinations[3].assignments == (
      *imbalance_study.VARIANTS['ldam_drw'], 'train.learning_rate=3e-4')
  run = study.runs(got, '/s')[3]
  assert study.step_args(got, run, 'train')[-3:] == [
      f'--set={imbalance_study.VARIANTS["ldam_drw"][-1]}',
      '--set=train.learning_rate=3e-4', '--set=seed=0']


def test_every_imbalance_study_variant_passes_the_check():
  got = with_variants('imbalance_study',
                      'variant=' + ','.join(imbalance_study.VARIANTS))
  assert study.check(got).headline[0] == 'balanced_accuracy'
  assert len(got.combinations()) == 8
  assert imbalance_study.get_config().train.loss == 'cross_entropy'


@pytest.fixture
def tiny_variants(monkeypatch):
  """tiny_classify with VARIANTS (the dict, for the test to change)."""
  variants = {'plain': ('train.loss=cross_entropy',),
              'weighted_focal': ('train.loss=focal',
                                 'train.class_weights=balanced')}
  monkeypatch.setattr(tiny_classify, 'VARIANTS', variants, raising=False)
  return variants


@pytest.mark.parametrize('vary,sets,extra,message', [
    (['variant=plain,focl'], (), {}, "--vary=variant=plain,focl: 'focl': "
     'no such variant in experiments/tiny_classify.py. Its VARIANTS: plain, '
     'weighted_focal.'),
    (['variant=plain,weighted_focal', 'train.class_weights=none,balanced'],
     (), {}, '--vary=variant=plain,weighted_focal: the variant '
     'weighted_focal '
     '(train.loss=focal train.class_weights=balanced, from '
     "experiments/tiny_classify.py's VARIANTS) sets train.class_weights, "
     'and --vary=train.class_weights=none,balanced also varies it'),
    (['variant=plain'], ('train.loss=focal',), {}, 'the variant plain '
     '(train.loss=cross_entropy, from experiments/tiny_classify.py\'s '
     'VARIANTS) sets train.loss, and --set=train.loss=focal also sets it'),
    (['variant=odd'], (), {'odd': ('train.los=focal',)},
     'train.los is no config key. Did you mean train.loss'),
    (['variant=odd'], (), {'odd': ('train.steps=many',)},
     'the variant odd (train.steps=many, from experiments/tiny_classify.py\'s'
     " VARIANTS) is refused: expected int"),
    (['variant=odd'], (), {'odd': ('seed=3',)},
     'sets seed, and each run of a study gets its own'),
    (['variant=odd'], (), {'odd': ('train.loss=focal', 'train.loss=hinge')},
     'sets train.loss, and it sets it twice'),
    (['variant=odd'], (), {'odd': 'train.loss=focal'},
     "VARIANTS['odd'] = 'train.loss=focal': each variant maps its name to a "
     "tuple of 'KEY=VALUE' strings"),
])
def test_bad_variants_are_refused_naming_the_variant(
    tiny_variants, vary, sets, extra, message):
  tiny_variants.update(extra)
  with pytest.raises(study.StudyError) as error:
    study.check(study.Definition('tiny_classify', sets,
                                 study.parse_vary(vary), 1))
  assert message in str(error.value)
  assert '\n' not in str(error.value)


def test_an_experiment_without_variants_says_so():
  with pytest.raises(study.StudyError, match=(
      '--vary=variant=a,b: experiments/tiny_classify.py defines no '
      'VARIANTS, so there is no variant to pick')):
    with_variants('tiny_classify', 'variant=a,b')


def test_study_json_records_the_variants_and_refuses_a_changed_one(
    tiny_variants, tmp_path):
  study_dir = str(tmp_path)
  first = with_variants('tiny_classify', 'variant=weighted_focal,plain')
  study.record_definition(first, study_dir)
  with open(os.path.join(study_dir, study.DEFINITION_FILE)) as f:
    recorded = json.load(f)
  assert recorded['variants'] == [
      {'name': 'weighted_focal',
       'set': ['train.loss=focal', 'train.class_weights=balanced']},
      {'name': 'plain', 'set': ['train.loss=cross_entropy']}]
  assert study.Definition.from_json(recorded) == first
  study.record_definition(first, study_dir)  # the same: goes on
  tiny_variants['plain'] = ('train.loss=hinge',)
  with pytest.raises(study.StudyError) as error:
    study.record_definition(
        with_variants('tiny_classify', 'variant=weighted_focal,plain'),
        study_dir)
  assert ('the variant plain: recorded train.loss=cross_entropy, '
          'experiments/tiny_classify.py now gives train.loss=hinge'
          in str(error.value))
  assert ("restore experiments/tiny_classify.py's VARIANTS as recorded and "
          'run python launch.py') in str(error.value)
  # A study without variants records what it did before they existed.
  assert 'variants' not in definition('train.loss=focal').to_json()


# Stands in for launch.py: a run's "training" writes the records and the
# test evaluation a finished run has, its score from the --set flags.
FAKE_LAUNCHER = """
import json, os, sys
args = sys.argv[1:]
workdir = [a.split('=', 1)[1] for a in args if a.startswith('--workdir=')][0]
values = dict(a[len('--set='):].split('=', 1) for a in args
              if a.startswith('--set='))
os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
with open(os.path.join(workdir, 'args.json'), 'w') as f:
  json.dump(args, f)
with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
  f.write(json.dumps({'step': 10, 'kind': 'stop', 'stop_reason': 'done',
                      'wall_s': 0.5}) + '\\n')
score = (0.5 + 0.2 * (values['train.loss'] == 'focal') +
         0.01 * int(values['seed']))
with open(os.path.join(workdir, 'eval', 'test_step10.json'), 'w') as f:
  json.dump({'balanced_accuracy': score, 'checkpoint_steps': [10]}, f)
"""


def test_a_study_of_variants_end_to_end(tiny_variants, tmp_path, capsys):
  launcher = tmp_path / 'fake_launch.py'
  launcher.write_text(FAKE_LAUNCHER)
  study_dir = str(tmp_path / 'study')
  given = study.Definition(  # as launch.py makes it: no variants yet
      'tiny_classify', ('train.steps=10',),
      study.parse_vary(['variant=plain,weighted_focal']), 2)
  assert study.run(given, study_dir, parallel=2,
                   launcher=[sys.executable, str(launcher)]) == 0
  names = ['variant=plain', 'variant=weighted_focal']
  with open(os.path.join(study_dir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [(r['combination'], r['variant'], r['seed']) for r in rows] == [
      (f'variant={v}', v, str(s)) for v in tiny_variants for s in range(2)]
  assert [float(r['balanced_accuracy']) for r in rows] == [
      0.5, 0.51, 0.7, 0.71]
  with open(os.path.join(study_dir, names[1], 'seed1', 'args.json')) as f:
    args = json.load(f)
  assert args[2:] == ['--set=train.steps=10', '--set=train.loss=focal',
                      '--set=train.class_weights=balanced', '--set=seed=1']
  with open(os.path.join(study_dir, study.DEFINITION_FILE)) as f:
    assert json.load(f)['variants'][1] == {
        'name': 'weighted_focal',
        'set': ['train.loss=focal', 'train.class_weights=balanced']}
  with open(os.path.join(study_dir, 'summary.md')) as f:
    summary = f.read()
  assert ('- **weighted_focal**: `train.loss=focal` '
          '`train.class_weights=balanced`') in summary
  assert '**variant=weighted_focal** (best)' in summary
  assert 'Best by balanced_accuracy' in capsys.readouterr().out


def test_a_bad_variant_is_refused_before_anything_runs(tmp_path):
  study_dir = str(tmp_path / 'never')
  given = study.Definition('imbalance_study', (),
                           study.parse_vary(['variant=ldam']), 1)
  with pytest.raises(study.StudyError, match="'ldam': no such variant"):
    study.run(given, study_dir, parallel=1, launcher=['false'])
  assert not os.path.exists(study_dir)


# ---------------------------------------------------------------------------
# The report's tables, on hand-made results.
# ---------------------------------------------------------------------------


def result(combination, seed, metrics, problem=''):
  return study_report.RunResult(
      combination=combination, settings=(('train.loss', combination),),
      seed=seed, workdir=f'/w/{combination}/seed{seed}', problem=problem,
      steps=20, wall_s=1.5, checkpoint_step=20, evaluation=None,
      metrics=metrics, recall={})


def hand_made_results():
  a = [0.61, 0.65, 0.58]
  b = [0.70, 0.69, 0.66]
  return ([result('ce', s, {'score': v, 'loss': 1.0})
           for s, v in enumerate(a)] +
          [result('focal', s, {'score': v}) for s, v in enumerate(b)] +
          [result('hinge', 0, {'score': 0.5}),
           result('hinge', 1, {}, problem='train failed (exit status 1)')],
          a, b)


def test_metric_table_holds_the_statistics_and_marks_the_best():
  results, a, b = hand_made_results()
  table = study_report.metric_table(results, 'score', 'max')
  rows = {line.split(' | ')[0].lstrip('| '): line.split(' | ')
          for line in table.splitlines()[2:]}
  mean, sem = np.mean(b), np.std(b, ddof=1) / math.sqrt(3)
  low, high = scipy.stats.t.interval(0.95, 2, loc=mean, scale=sem)
  focal = rows['**focal** (best)']
  assert focal[1:5] == ['3', f'{mean:.4g}', f'{np.std(b, ddof=1):.4g}',
                        f'[{low:.4g}, {high:.4g}]']
  p = scipy.stats.ttest_rel(b, a).pvalue
  assert focal[5:7] == [f'{np.mean(np.subtract(b, a)):+.4g}',
                        f'{p:.3g} |']
  assert rows['ce'][5] == '(reference)'
  # One seed: no interval; one pair: no test.
  assert rows['hinge'][1:3] == ['1', '0.5'] and rows['hinge'][4] == 'n/a'
  assert rows['hinge'][6] == 'n/a |'


def test_csv_leaves_missing_metrics_empty():
  results, _, _ = hand_made_results()
  header, *rows = study_report.csv_table(results, ('score', 'absent'))
  assert header[:7] == ['combination', 'train.loss', 'seed', 'status',
                        'steps', 'wall_s', 'checkpoint_step']
  assert header[7:] == ['score', 'absent', 'loss', 'workdir']
  assert rows[0][7:10] == ['0.61', '', '1.0']
  assert rows[3][7:10] == ['0.7', '', '']  # focal reports no loss
  assert rows[-1][3] == 'train failed (exit status 1)'


def test_ranking_falls_back_to_a_reported_headline_metric():
  results, _, b = hand_made_results()
  line = study_report.ranking_line(results, ('unreported', 'score'),
                                   {'score': 'max'})
  assert line.startswith('Best by score (higher is better) (unreported: '
                         'no run reports it): focal, mean '
                         f'{np.mean(b):.4g} over 3 seed(s)')


# ---------------------------------------------------------------------------
# A study of tiny_classify, end to end.
# ---------------------------------------------------------------------------

STUDY = ['--experiment=tiny_classify', '--mode=study',
         '--set=train.steps=20', '--set=eval.every=0',
         '--vary=train.loss=cross_entropy,focal', '--seeds=2']
COMBINATIONS = ('loss=cross_entropy', 'loss=focal')


def run_study(study_dir, *extra, check=True):
  return finish(start([*STUDY, f'--study_dir={study_dir}', *extra]), check)


@pytest.fixture(scope='module')
def finished_study(tmp_path_factory, shared_compilation_cache):
  """The study, two runs at a time; (its directory, its output)."""
  del shared_compilation_cache
  study_dir = str(tmp_path_factory.mktemp('study') / 'losses')
  return study_dir, run_study(study_dir, '--parallel=2')


def run_dirs(study_dir):
  return [os.path.join(study_dir, c, f'seed{s}')
          for c in COMBINATIONS for s in range(2)]


@pytest.mark.slow
def test_study_evaluates_every_run_and_writes_the_report(finished_study):
  study_dir, out = finished_study
  assert 'on cores' in out.stdout  # --parallel=2 pinned each run
  with open(os.path.join(study_dir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [(r['combination'], r['seed']) for r in rows] == [
      (c, str(s)) for c in COMBINATIONS for s in range(2)]
  scores = {}
  for row, workdir in zip(rows, run_dirs(study_dir)):
    evaluation, = glob.glob(os.path.join(workdir, 'eval', 'test_step*.json'))
    with open(evaluation) as f:
      metrics = json.load(f)
    assert row['status'] == 'finished' and row['steps'] == '20'
    assert float(row['accuracy']) == metrics['accuracy']
    assert float(row['macro_f1']) == metrics['macro_f1']
    assert row['train.loss'] == row['combination'].split('=')[1]
    assert float(row['wall_s']) > 0
    scores.setdefault(row['combination'], []).append(metrics)
  with open(os.path.join(study_dir, 'summary.md')) as f:
    summary = f.read()
  for runs in scores.values():
    accuracy = [m['accuracy'] for m in runs]
    mean = np.mean(accuracy)
    sem = np.std(accuracy, ddof=1) / math.sqrt(2)
    low, high = scipy.stats.t.interval(0.95, 1, loc=mean, scale=sem)
    assert (f'| 2 | {mean:.4g} | {np.std(accuracy, ddof=1):.4g} | '
            f'[{low:.4g}, {high:.4g}] |') in summary
  assert '(best)' in summary and '## Recall per class' in summary
  with open(os.path.join(study_dir, 'summary.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_running_the_study_again_skips_every_finished_run(finished_study):
  study_dir, _ = finished_study
  before = {w: os.path.getmtime(os.path.join(w, 'metrics.jsonl'))
            for w in run_dirs(study_dir)}
  out = run_study(study_dir)
  assert out.stdout.count('skip ') == 4, out.stdout
  assert before == {w: os.path.getmtime(os.path.join(w, 'metrics.jsonl'))
                    for w in run_dirs(study_dir)}


@pytest.mark.slow
def test_an_interrupted_run_is_resumed_and_a_missing_evaluation_made(
    finished_study, tmp_path):
  study_dir = str(tmp_path / 'copy')
  shutil.copytree(finished_study[0], study_dir)
  resumed, evaluated, *skipped = run_dirs(study_dir)
  # As a kill would leave them: one run without its final stop record (nor
  # the evaluation after it), one without its test evaluation.
  metrics = os.path.join(resumed, 'metrics.jsonl')
  with open(metrics) as f:
    lines = f.readlines()
  assert json.loads(lines[-1])['kind'] == 'stop'
  with open(metrics, 'w') as f:
    f.writelines(lines[:-1])
  for workdir in (resumed, evaluated):
    for path in glob.glob(os.path.join(workdir, 'eval', 'test_step*')):
      os.remove(path)
  out = run_study(study_dir)
  assert out.stdout.count('skip ') == 2
  with open(os.path.join(resumed, study_runs.LOG_FILE)) as f:
    assert f'Resuming {resumed} from the checkpoint at step 20' in f.read()
  with open(os.path.join(evaluated, study_runs.LOG_FILE)) as f:
    assert '--mode=evaluate --split=test' in f.read()
  for workdir in run_dirs(study_dir):
    assert study_runs.next_step(workdir) is None
  with open(os.path.join(study_dir, 'results.csv')) as f:
    assert [r['status'] for r in csv.DictReader(f)] == ['finished'] * 4
  assert all(os.path.exists(os.path.join(w, 'metrics.jsonl'))
             for w in skipped)


@pytest.mark.slow
def test_another_definition_in_the_same_directory_is_refused(finished_study):
  study_dir, _ = finished_study
  out = run_study(study_dir, '--seeds=3', check=False)
  assert out.returncode == 2
  assert (f'--study_dir={study_dir} holds a study of another definition'
          in out.stderr)
  assert '--seeds: recorded 2, given 3' in out.stderr
  assert 'Traceback' not in out.stderr
  assert not os.path.exists(os.path.join(study_dir, COMBINATIONS[0], 'seed2'))


@pytest.mark.slow
def test_a_bad_vary_is_refused_before_anything_runs(tmp_path):
  study_dir = str(tmp_path / 'never')
  out = run_study(study_dir, '--vary=model.pooling=mean,firts', check=False)
  assert out.returncode == 2
  assert ("Error: --vary=model.pooling=mean,firts: the value 'firts' is "
          'refused: must be one of mean, first') in out.stderr
  assert 'Traceback' not in out.stderr + out.stdout
  assert not os.path.exists(study_dir)


FLAG_ERRORS = [
    (['--experiment=tiny_classify', '--vary=train.loss=focal'],
     '--vary: for --mode=study only (this is --mode=train)'),
    ([*STUDY, '--study_dir=unused', '--workdir=w', '--split=valid'],
     '--workdir, --split: --mode=study takes none of these'),
    (STUDY, '--mode=study needs --study_dir=DIR'),
    ([*STUDY, '--study_dir=unused', '--parallel=0'],
     '--seeds=2 --parallel=0: both must be at least 1'),
]


@pytest.mark.slow
def test_flags_that_do_not_go_with_the_mode_are_refused():
  outs = launching.run_all([(args, 1) for args, _ in FLAG_ERRORS])
  for (_, message), out in zip(FLAG_ERRORS, outs):
    assert out.returncode == 2, out.stderr
    assert f'Error: {message}' in out.stderr
    assert 'Traceback' not in out.stderr
  assert not os.path.exists(os.path.join(launching.REPO, 'unused'))
