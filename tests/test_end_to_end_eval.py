"""Evaluation end to end, in real processes: during training, the final test
evaluation of the default command, and --mode=evaluate.

Every BLEU and chrF the program reports is recomputed here with sacreBLEU's
own corpus_bleu / corpus_chrf from the files the program wrote (or, for the
evaluations during training, from the same sentences decoded again by
--mode=evaluate from the checkpoint of that step).
"""

import json
import math
import os

import pytest
import sacrebleu

from scripts.launching import finish, start

pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]

STEPS, EVERY, EXAMPLES = 240, 80, 32
# 240 steps: long enough for a BLEU well above 0 (about 3), so that the
# comparisons below are not all of zeros. data.eval_max_length=32: the
# valid split's batches then have the same shape whether 32 or all 500
# sentences are read, so the first 32 decode identically in both.
COMMON = ['--experiment=tiny', f'--set=train.steps={STEPS}',
          f'--set=train.log_every={EVERY}',
          f'--set=train.checkpoint_every={EVERY}',
          f'--set=eval.every={EVERY}', f'--set=eval.num_examples={EXAMPLES}',
          '--set=data.eval_max_length=32']


def start_launch(workdir, *extra):
  return start([f'--workdir={workdir}', *COMMON, *extra])


def launch(workdir, *extra):
  return finish(start_launch(workdir, *extra))


def read_lines(path):
  with open(path, encoding='utf-8') as f:
    text = f.read()
  assert text.endswith('\n')
  return text[:-1].split('\n')


def read_eval(directory, name):
  """{suffix: lines} for .src/.ref/.hyp and the parsed .json of one run."""
  files = {s: read_lines(os.path.join(directory, f'{name}.{s}'))
           for s in ('src', 'ref', 'hyp')}
  with open(os.path.join(directory, f'{name}.json')) as f:
    files['json'] = json.load(f)
  return files


def assert_scores_match_sacrebleu(metrics, hypotheses, references):
  bleu = sacrebleu.corpus_bleu(hypotheses, [references])
  chrf = sacrebleu.corpus_chrf(hypotheses, [references])
  assert math.isfinite(metrics['bleu']) and math.isfinite(metrics['chrf'])
  assert metrics['bleu'] == pytest.approx(bleu.score, rel=1e-9, abs=1e-6)
  assert metrics['chrf'] == pytest.approx(chrf.score, rel=1e-9, abs=1e-6)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """One training run (with its final test evaluation), then --mode=evaluate
  twice: the latest checkpoint on the test split, and an earlier one on the
  valid split."""
  workdir = str(tmp_path_factory.mktemp('end_to_end'))
  train = launch(workdir)
  name = f'test_step{STEPS}_beam4'
  eval_dir = os.path.join(workdir, 'eval')
  assert sorted(os.listdir(eval_dir)) == [
      f'{name}.{s}' for s in ('hyp', 'json', 'ref', 'src')]
  final = read_eval(eval_dir, name)  # read before evaluate overwrites it
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  # Both evaluations at once: they read the workdir and write files of
  # different names.
  evaluate = start_launch(workdir, '--mode=evaluate')
  valid_out = start_launch(workdir, '--mode=evaluate', '--split=valid',
                           f'--step={2 * EVERY}')
  evaluate, valid_out = finish(evaluate), finish(valid_out)
  latest = read_eval(eval_dir, name)
  valid = read_eval(eval_dir, f'valid_step{2 * EVERY}_beam4')
  return dict(workdir=workdir, train=train, final=final, records=records,
              evaluate=evaluate, latest=latest, valid_out=valid_out,
              valid=valid)


def test_evaluation_during_training_is_logged_at_every_and_the_end(run):
  evals = [r for r in run['records'] if r['kind'] == 'eval']
  assert [r['step'] for r in evals] == [EVERY, 2 * EVERY, STEPS]
  for record in evals:
    assert record['examples'] == EXAMPLES
    assert 0.0 <= record['bleu'] <= 100.0 and 0.0 <= record['chrf'] <= 100.0
  # Training improves the valid scores between the first and the last.
  assert evals[-1]['chrf'] > evals[0]['chrf']


def test_evaluation_during_training_matches_sacrebleu(run):
  """The eval record at step 160 scored the first 32 valid sentences; the
  checkpoint of step 160 decoded again by --mode=evaluate (same batches,
  same shapes) gives the same translations, whose sacreBLEU scores must be
  the logged ones."""
  record = next(r for r in run['records']
                if r['kind'] == 'eval' and r['step'] == 2 * EVERY)
  valid = run['valid']
  assert valid['json']['checkpoint_steps'] == [2 * EVERY]
  assert_scores_match_sacrebleu(record, valid['hyp'][:EXAMPLES],
                                valid['ref'][:EXAMPLES])


def test_final_test_evaluation_ran_and_its_scores_match_sacrebleu(run):
  final = run['final']
  metrics = final['json']
  assert metrics['examples'] == 500  # the whole toy test split
  assert len(final['src']) == len(final['ref']) == len(final['hyp']) == 500
  assert metrics['checkpoint_steps'] == [STEPS]
  # The toy task reverses the source's words.
  for source, reference in zip(final['src'], final['ref']):
    assert reference.split() == source.split()[::-1]
  assert_scores_match_sacrebleu(metrics, final['hyp'], final['ref'])
  assert metrics['bleu'] > 0.5  # trained, not a table of zeros
  for part in ('nrefs:1', 'tok:13a', f'version:{sacrebleu.__version__}'):
    assert part in metrics['bleu_signature']
  assert f'version:{sacrebleu.__version__}' in metrics['chrf_signature']
  # The printed summary reports the same numbers.
  assert f'BLEU {metrics["bleu"]:.2f}' in run['train'].stdout
  assert f'chrF {metrics["chrf"]:.2f}' in run['train'].stdout


def test_mode_evaluate_reproduces_the_final_evaluation(run):
  latest, final = run['latest'], run['final']
  assert latest['json']['checkpoint_steps'] == [STEPS]
  assert_scores_match_sacrebleu(latest['json'], latest['hyp'], latest['ref'])
  # The same checkpoint and split: the same translations and scores.
  assert latest['src'] == final['src'] and latest['ref'] == final['ref']
  assert latest['hyp'] == final['hyp']
  for key in ('bleu', 'chrf', 'examples'):
    assert latest['json'][key] == final['json'][key], key
  assert f'BLEU {latest["json"]["bleu"]:.2f}' in run['evaluate'].stdout


def test_mode_evaluate_of_an_earlier_step_on_valid(run):
  valid = run['valid']
  metrics = valid['json']
  assert metrics['examples'] == len(valid['hyp']) == 500
  assert_scores_match_sacrebleu(metrics, valid['hyp'], valid['ref'])
  assert f'valid split, checkpoint {2 * EVERY},' in run['valid_out'].stdout
