"""launch.py end to end for the language model: SIGKILL and resume are
exact, evaluation reports what its own sums give, generation prints what
the API returns, and the new modes' errors are one paragraph.

The harness (real `python launch.py` processes) is test_launch.py's.
"""

import json
import math
import os
import signal

import numpy as np
import pytest

import test_launch as harness

# The module's launch.py processes share one compilation cache (tiny_lm's
# train step, evaluation and generation are compiled once, not per process).
pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('shared_compilation_cache')]

LM = ['--experiment=tiny_lm', '--set=train.steps=60', '--set=train.log_every=1',
      '--set=train.checkpoint_every=4', '--set=eval.final=false',
      '--set=model.dropout_rate=0.1']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('lm'))
  harness.run(workdir, '--set=eval.final=true', base=LM)
  return workdir


def test_sigkill_then_restart_is_exact(trained, tmp_path):
  workdir = str(tmp_path)
  killed = harness.interrupt(workdir, signal.SIGKILL, after_step=10, base=LM)
  assert killed.returncode == -signal.SIGKILL
  step = harness.resumed_step(harness.run(workdir, base=LM).stdout)
  assert 4 <= step < 60
  got, want = harness.logged_losses(workdir), harness.logged_losses(trained)
  assert sorted(got) == sorted(want) == list(range(1, 61))
  for s in range(step + 1, 61):
    assert got[s] == want[s], f'loss differs at step {s}'
  for x, y in zip(harness.jax_leaves(harness.final_params(workdir, 60)),
                  harness.jax_leaves(harness.final_params(trained, 60))):
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, y)


def test_evaluation_keys_are_consistent(trained):
  harness.run(trained, '--mode=evaluate', '--split=valid', base=LM)
  reported = json.load(open(os.path.join(trained, 'eval',
                                         'valid_step60.json')))
  for key in ('loss', 'perplexity', 'bits_per_character', 'bits_per_byte'):
    assert math.isfinite(reported[key]), key
  assert reported['perplexity'] == pytest.approx(math.exp(reported['loss']))
  nll = reported['loss'] * reported['tokens']
  assert reported['bits_per_character'] == pytest.approx(
      nll / math.log(2) / reported['characters'])
  # One character per token (data.tokenizer=char), plus none: EOS is the
  # character that ends each document, so the two counts agree.
  assert reported['tokens'] == reported['characters']
  assert len(reported['samples']) == 3
  records = [json.loads(l) for l in open(os.path.join(trained,
                                                      'metrics.jsonl'))]
  assert 'perplexity' in [r for r in records if r['kind'] == 'train'][-1]


def test_generate_prompt_and_json_lines(trained, tmp_path):
  one = harness.run(trained, '--mode=generate', '--prompt=one two', base=LM)
  prompts = tmp_path / 'prompts.txt'
  prompts.write_text('one two\n\nfive six\n', encoding='utf-8')
  lines = harness.run(trained, '--mode=generate', f'--input={prompts}',
                      base=LM).stdout.splitlines()
  records = [json.loads(line) for line in lines]
  assert [r['prompt'] for r in records] == ['one two', '', 'five six']
  # tiny_lm generates greedily: the --prompt run prints the same text.
  assert one.stdout == records[0]['continuation'] + '\n'
  assert all(isinstance(r['continuation'], str) for r in records)


def test_generate_takes_the_runs_settings(trained):
  """Without --experiment and --set, the run's own settings (trained with
  model.dropout_rate=0.1, which tiny_lm's config does not have); a
  generation setting may change after training."""
  bare = harness.run(trained, '--mode=generate', '--prompt=one two', base=[])
  assert "Using the run's settings from" in bare.stderr
  repeated = harness.run(trained, '--mode=generate', '--prompt=one two',
                         base=LM)
  assert bare.stdout == repeated.stdout and bare.stdout.strip()
  short = harness.run(trained, '--mode=generate', '--prompt=one two',
                      '--set=generate.max_new_tokens=3', base=[])
  assert '--set generate.max_new_tokens=3).' in short.stderr
  # Greedy, one character per token: the first 3 of the longer output.
  continuation = short.stdout.rstrip('\n')
  assert len(continuation) <= 3 and bare.stdout.startswith(continuation)


@pytest.mark.parametrize('args,message', [
    (['--mode=generate', '--set=generate.top_p=0'], 'top_p=0'),
    (['--mode=translate'], 'use --mode=predict'),
    (['--mode=generate', '--set=model.dropout_rate=0.0'],
     'was trained with model.dropout_rate=0.1, and training fixed it'),
])
def test_errors_are_one_paragraph(trained, args, message):
  out = harness.run(trained, *args, check=False, base=LM)
  assert out.returncode == 2, out.stderr[-2000:]
  assert message in out.stderr, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr + out.stdout


def test_generate_is_for_language_models(tmp_path):
  out = harness.run(str(tmp_path), '--mode=generate', '--prompt=x',
                    check=False, base=harness.CLASSIFY)
  assert out.returncode == 2 and 'task=language_model' in out.stderr
  assert 'Traceback' not in out.stderr


def test_two_processes_match_one_process_with_all_devices(tmp_path):
  """The language model's packed stream, split into 8 shards, trains alike
  in 2 processes x 4 devices and 1 process x 8 devices."""
  want, got = harness.losses_of_one_and_two_processes(tmp_path, [
      *LM, '--set=train.steps=6', '--set=train.checkpoint_every=6',
      '--set=eval.final=false', '--set=data.shards=8',
      harness.ADAM_EPS])  # rtol 1e-5 below: see test_launch.py
  assert sorted(got) == sorted(want) == list(range(1, 7))
  assert all(np.isfinite(got[s]) for s in got)
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [want[s] for s in sorted(want)], rtol=1e-5)


def test_visualize_draws_the_causal_attention_and_the_curves(trained):
  out = harness.run(trained, '--mode=visualize', '--sentence=one two',
                    '--layers=0', '--step=56', base=LM)
  assert 'Using the checkpoint at step 56.' in out.stderr
  pictures = os.path.join(trained, 'pictures')
  written = sorted(os.listdir(pictures))
  assert 'training_curves.png' in written, written
  assert [n for n in written if n.startswith('decoder_self')] == [
      'decoder_self_layer0.png'], written
  for name in written:
    with open(os.path.join(pictures, name), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', name
  assert 'pieces: o n e' in out.stdout, out.stdout


def test_missing_optional_test_file_skips_the_final_evaluation(tmp_path):
  # Users' text with train.txt only: the run says so before training, ends
  # like a finished run, and evaluates nothing on test (it used to fail
  # after training: 'the test split needs test.txt').
  text_dir = tmp_path / 'text'
  text_dir.mkdir()
  lines = [f'line {i} of the story, told {i % 7} times' for i in range(400)]
  (text_dir / 'train.txt').write_text('\n'.join(lines) + '\n')
  workdir = str(tmp_path / 'run')
  out = harness.run(workdir, '--set=data.source=text',
                    f'--set=data.text_dir={text_dir}',
                    '--set=data.documents=lines', '--set=train.steps=2',
                    '--set=eval.final=true', base=LM)
  note = 'the final evaluation on the test split is skipped'
  assert note in out.stderr and str(text_dir / 'test.txt') in out.stderr
  assert 'Trained to step 2' in out.stdout
  assert not os.path.exists(os.path.join(workdir, 'eval'))
