"""launch.py end to end for classification, in real processes: the same
loop, checkpoints and modes behind the task layer (SIGKILL-exact resume,
evaluation against sklearn, --mode=predict, one-paragraph errors).

The harness is test_launch.py's.
"""

import json
import os
import signal

import numpy as np
import pytest

from test_launch import (CLASSIFY, EVERY, INTERRUPT_AFTER, STEPS, Reference,
                         assert_same_run, interrupt, resumed_step, run,
                         run_cases)

pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]


@pytest.fixture(scope='module')
def classification_reference(tmp_path_factory):
  run_ = Reference(str(tmp_path_factory.mktemp('classified')),
                   '--set=eval.final=true', base=CLASSIFY)
  yield run_
  run_.stop()


@pytest.fixture(scope='module')
def classified(classification_reference):
  return classification_reference.workdir()


def test_classification_sigkill_then_restart_is_exact(classification_reference,
                                                      tmp_path):
  workdir = str(tmp_path)
  killed = interrupt(workdir, signal.SIGKILL, after_step=INTERRUPT_AFTER,
                     base=CLASSIFY)
  assert killed.returncode == -signal.SIGKILL
  step = resumed_step(run(workdir, base=CLASSIFY).stdout)
  assert EVERY <= step < STEPS
  assert_same_run(workdir, classification_reference.workdir(), step)


def test_classification_evaluation_matches_sklearn(classified):
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  out = run(classified, '--mode=evaluate', base=CLASSIFY)
  assert 'accuracy' in out.stdout and 'macro_f1' in out.stdout
  base = os.path.join(classified, 'eval', f'test_step{STEPS}')
  reported = json.load(open(base + '.json'))
  rows = [line.rstrip('\n').split('\t') for line in
          open(base + '.tsv', encoding='utf-8')][1:]
  labels, predicted = [r[1] for r in rows], [r[2] for r in rows]
  assert len(rows) == reported['examples'] == 500
  for key in ('accuracy', 'macro_f1', 'log_loss'):
    assert np.isfinite(reported[key]), key
  assert reported['accuracy'] == pytest.approx(
      metrics.accuracy_score(labels, predicted), abs=1e-12)
  assert reported['macro_f1'] == pytest.approx(
      metrics.f1_score(labels, predicted, average='macro'), abs=1e-12)
  assert reported['accuracy'] > 0.8  # it learnt the task
  train = [json.loads(l) for l in open(os.path.join(classified,
                                                    'metrics.jsonl'))]
  assert {'accuracy', 'log_loss'} <= set(train[-2])  # the last train record
  assert train[-1]['stop_reason'] == 'done'


def test_classification_predict_one_line_per_line(classified, tmp_path):
  lines = tmp_path / 'lines.txt'
  lines.write_text('red red blue\n\nblue blue blue green\n', encoding='utf-8')
  out = run(classified, '--mode=predict', f'--input={lines}', base=CLASSIFY)
  got = out.stdout.split('\n')
  assert got[1] == '' and got[3] == '' and len(got) == 4, out.stdout
  names = json.load(open(os.path.join(classified, 'labels.json')))['labels']
  for line in (got[0], got[2]):
    label, probability = line.split('\t')
    assert label in names and 0 < float(probability) <= 1


CLASSIFICATION_ERRORS = [
    (['--mode=translate'], 'use --mode=predict'),
    (['--set=train.loss=mse'], 'does not fit task=classification'),
    (['--set=train.class_weights=1,2'], 'train.class_weights=\'1,2\''),
    (['--set=task=nope'], 'must be one of translation'),
]


@pytest.fixture(scope='module')
def classification_error_outputs(classified, tmp_path_factory):
  """The commands of the test below: --mode=translate in the trained
  workdir, the others each in a new one."""
  root = tmp_path_factory.mktemp('classification_errors')
  workdirs = [classified if args[0] == '--mode=translate' else f'{root}/{i}/w'
              for i, (args, _) in enumerate(CLASSIFICATION_ERRORS)]
  return run_cases(CLASSIFICATION_ERRORS, workdirs, base=CLASSIFY)


@pytest.mark.parametrize('args,message', CLASSIFICATION_ERRORS)
def test_classification_errors_are_one_paragraph(classification_error_outputs,
                                                 args, message):
  out = classification_error_outputs[tuple(args)]
  assert out.returncode == 2, out.stderr[-2000:]
  assert message in out.stderr, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr + out.stdout
