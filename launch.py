"""The one entry point: python launch.py --experiment=NAME [--mode=...] [--set=KEY=VALUE ...]

Modes: train (default; resumes from the workdir's latest checkpoint),
evaluate, translate, predict, generate, visualize, benchmark, export (a
Hugging Face model directory: transformer/huggingface/export.py), and study
(--vary settings x --seeds, each an ordinary run in its own process:
transformer/study.py). Training takes the experiment's settings; the other
modes, on a trained workdir, the run's own (its config.json;
`run_config`). See the README.
"""

from __future__ import annotations

import ctypes.util
import logging as std_logging
import os
import sys
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from absl import app, flags, logging

from transformer import experiment

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', 'bible_es_en',
                    'Experiment: a file in experiments/ (without .py).')
flags.DEFINE_string('workdir', None,
                    'Directory for checkpoints, logs and the tokenizer; '
                    'default workdirs/EXPERIMENT.')
flags.DEFINE_enum('mode', 'train',
                  ['train', 'evaluate', 'translate', 'predict', 'generate',
                   'visualize', 'benchmark', 'export', 'study'],
                  'What to do.')
flags.DEFINE_multi_string('set', [], 'Config override KEY=VALUE, e.g. '
                          '--set=train.steps=100; may repeat.')
flags.DEFINE_bool('restart', False, 'train: start over in a workdir that '
                  'has a run, moving the old one to WORKDIR/previous/ '
                  '(without it, training resumes the workdir\'s run).')
flags.DEFINE_string('checkpoint', '', 'evaluate/translate/predict/generate/'
                    'visualize/export: the checkpoint to use: best (kept with '
                    'eval.best_metric), last, or a step; default the best '
                    'when the run keeps one, else the last.')
flags.DEFINE_integer('step', None, 'The same as --checkpoint=STEP.')
flags.DEFINE_string('split', 'test', 'evaluate: the split to decode.')
flags.DEFINE_string('input', None, 'translate/predict: read lines from this '
                    'file instead of stdin.')
flags.DEFINE_string('output', None, 'export: the directory to write the '
                    'Hugging Face model to (config.json, model.safetensors, '
                    'tokenizer.json); new, empty, or an earlier export.')
flags.DEFINE_string('sentence', None, 'visualize: the source sentence.')
flags.DEFINE_string('prompt', None, 'generate: the text to continue (printed '
                    'as generated); without it, prompts are read one per '
                    'line from stdin or --input and answered as JSON lines.')
flags.DEFINE_list('layers', None, 'visualize: layer indices (negative count '
                  'from the end); default first and last.')
flags.DEFINE_list('heads', None, 'visualize: head indices; default all.')
flags.DEFINE_string('coordinator_address', None, 'Multi-process runs: '
                    'host:port of process 0 (see README, "Many hosts").')
flags.DEFINE_integer('num_processes', None, 'Multi-process runs: how many.')
flags.DEFINE_integer('process_id', None, 'Multi-process runs: this one.')
flags.DEFINE_string('study_dir', None, 'study: the directory of the study: '
                    'its definition, one workdir per run '
                    '(DIR/COMBINATION/seedK/) and the report.')
flags.DEFINE_multi_string('vary', [], 'study: KEY=VALUE,VALUE,... a setting '
                          'to compare (values separated by commas, or by ; '
                          'when a value holds commas); may repeat: every '
                          'combination is trained.')
flags.DEFINE_integer('seeds', 3, 'study: train each combination with '
                     'seed=0..N-1.')
flags.DEFINE_integer('parallel', 1, 'study: runs at a time, each on its '
                     'share of the CPU cores.')
flags.DEFINE_bool('tcmalloc', True, 'Linux: restart this command with '
                  'TCMalloc preloaded when it is installed (Debian/Ubuntu: '
                  'libtcmalloc-minimal4); see README, "Speed on CPU".')


# JAX-loading modules (transformer/ beyond config, experiment and the data
# errors) are imported inside the functions that use them, for two reasons:
# main() first restarts the process under TCMalloc (`restart_with_tcmalloc`),
# which must come before anything loads JAX; and notebooks import this file
# to call load_config / evaluate / predictor without main().
#
# Why TCMalloc: on Linux XLA allocates its CPU buffers with malloc, and
# glibc hands large blocks back to the OS when they are freed, so every train
# step page-faults its activations in again; TCMalloc keeps and reuses them
# (measured in the README, "Speed on CPU"). It must be loaded before anything
# else, hence LD_PRELOAD and a restart of the command.


def tcmalloc_environment(environ: dict[str, str],
                         library: str | None) -> dict[str, str] | None:
  """The environment to restart with TCMalloc preloaded, or None if there is
  no library or a TCMalloc is preloaded already (which also ends the restart).
  """
  preloaded = environ.get('LD_PRELOAD', '')
  if library is None or 'tcmalloc' in preloaded:
    return None
  environment = dict(environ, LD_PRELOAD=f'{library} {preloaded}'.strip())
  # TCMalloc prints a line for every allocation over 1 GiB; the big models
  # make some on purpose.
  environment.setdefault('TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD', str(2**40))
  return environment


def find_tcmalloc() -> str | None:
  """TCMalloc's shared library (a name the loader finds), if installed."""
  if not sys.platform.startswith('linux'):
    return None
  return ctypes.util.find_library('tcmalloc_minimal')


def restart_with_tcmalloc() -> None:
  """Replaces this process by the same command under TCMalloc, if available."""
  environment = tcmalloc_environment(dict(os.environ), find_tcmalloc())
  if environment is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environment)


def available_experiments() -> list[str]:
  return experiment.available()


def load_config(name: str, overrides: list[str]):
  return experiment.load_config(name, overrides)


# The modes that read a trained run and the checkpoint they use.
MODES_AFTER_TRAINING = ('evaluate', 'translate', 'predict', 'generate',
                        'visualize', 'export')


def run_config(workdir: str, overrides: list[str], *, mode: str,
               experiment_name: str, experiment_given: bool):
  """(config, experiment name) of `mode`.

  Training: the experiment's config with the overrides. The other modes on
  a workdir with a saved run: the run's config.json with the overrides that
  may change after training (workdir.run_settings; experiment_given: an
  explicit --experiment must be the run's); stderr says so. Otherwise the
  experiment's config.
  """
  if mode != 'train':
    from transformer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    settings = workdir_lib.run_settings(
        workdir, overrides, mode=mode,
        experiment=experiment_name if experiment_given else None)
    if settings is not None:
      if is_lead_process():
        print(settings.note, file=sys.stderr, flush=True)
      return settings.config, settings.experiment or experiment_name
  return load_config(experiment_name, overrides), experiment_name


def checkpoint_choice(mode: str) -> str:
  """--checkpoint, or --step as --checkpoint=STEP; '' if neither (the best
  checkpoint when the run keeps one, else the last)."""
  from transformer.workdir import RunError  # pylint: disable=g-import-not-at-top
  given = FLAGS.checkpoint or FLAGS.step is not None
  if given and mode not in MODES_AFTER_TRAINING:
    raise RunError(f'--checkpoint and --step choose the checkpoint that '
                   f'--mode={", ".join(MODES_AFTER_TRAINING)} use; '
                   f'--mode={mode} takes neither (training resumes from the '
                   'last checkpoint).')
  if FLAGS.checkpoint and FLAGS.step is not None:
    raise RunError(f'--step={FLAGS.step} and --checkpoint={FLAGS.checkpoint} '
                   'both choose a checkpoint: give one (--step=N is '
                   '--checkpoint=N; --checkpoint also takes best or last).')
  return str(FLAGS.step) if FLAGS.step is not None else FLAGS.checkpoint


def user_errors() -> tuple[type[BaseException], ...]:
  """Exceptions whose message is meant for the user, shown without traceback."""
  from transformer.checkpoint import CheckpointError, NoCheckpointError  # pylint: disable=g-import-not-at-top
  from transformer.workdir import RunError  # pylint: disable=g-import-not-at-top
  return experiment.CONFIG_AND_DATA_ERRORS + (RunError, NoCheckpointError,
                                             CheckpointError)


def is_lead_process() -> bool:
  """Process 0 writes files and prints for evaluate/translate/visualize."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


def train_command(experiment_name: str | None, workdir: str) -> str:
  """The command line that trains (or resumes) the run in `workdir`."""
  return (f'python launch.py --experiment={experiment_name or "NAME"} '
          f'--workdir={workdir}')


def check_trained(config, workdir: str, *, mode: str,
                  experiment_name: str | None = None) -> None:
  """A RunError unless `workdir` holds a trained run of `config`.

  mode, experiment_name: for the message when there is none (--mode=MODE
  needs a trained workdir; train first with --experiment=NAME).
  """
  from transformer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from transformer.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  tokenizer_file = tokenizer_lib.filename(config)
  if not os.path.exists(os.path.join(workdir, tokenizer_file)):
    raise workdir_lib.RunError(
        f'--mode={mode} needs a trained workdir, and {workdir} has no '
        f'{tokenizer_file}. Train first: '
        f'{train_command(experiment_name, workdir)}')
  workdir_lib.check_config(config, workdir, save=False)


def setup_for_workdir(config, workdir: str, *, mode: str,
                      experiment_name: str | None = None):
  """(task, tokenizer, mesh) for a trained workdir (`check_trained`)."""
  from transformer import tasks, train  # pylint: disable=g-import-not-at-top
  from transformer.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  check_trained(config, workdir, mode=mode, experiment_name=experiment_name)
  mesh = train.make_mesh(config=config)
  train.check_batch_sizes(config, mesh, training=False)
  task = tasks.for_run(config, workdir)
  return task, tokenizer_lib.load_or_train(config, workdir), mesh


class Restored(NamedTuple):
  """A trained workdir's model, restored (averaged as config.eval says)."""
  task: Any
  tokenizer: Any
  mesh: Any
  params: Any
  steps: list[int]


def choose_step(workdir: str, checkpoint: str | int | None = '') -> int:
  """The step of the checkpoint `checkpoint` names ('' or None: the best
  when the run keeps one, else the last; 'best'; 'last'; a step); stderr
  says which."""
  from transformer import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  choice = '' if checkpoint is None else str(checkpoint)
  step, note = checkpoint_lib.choose_step(workdir, choice)
  if is_lead_process():
    print(f'Using {note}.', file=sys.stderr, flush=True)
  return step


def restore(config, workdir: str, checkpoint: str | int | None = '', *,
            mode: str, experiment_name: str | None = None) -> Restored:
  """The workdir's task, tokenizer and mesh (`setup_for_workdir`) and the
  parameters of `checkpoint` (`choose_step`), averaged as config.eval
  says."""
  from transformer import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  task, tokenizer, mesh = setup_for_workdir(
      config, workdir, mode=mode, experiment_name=experiment_name)
  params, steps = checkpoint_lib.restore_params(
      task, workdir, mesh, step=choose_step(workdir, checkpoint),
      average=config.eval.average_checkpoints)
  return Restored(task, tokenizer, mesh, params, steps)


def lead_warnings() -> Callable[[str], None]:
  """A warn(message) that prints on stderr in process 0 only."""
  lead = is_lead_process()

  def warn(message: str) -> None:
    if lead:
      print(f'warning: {message}', file=sys.stderr)

  return warn


def evaluate(config, workdir: str, split: str,
             checkpoint: str | int | None = '', samples: int = 0, *,
             experiment_name: str | None = None) -> dict:
  """Evaluates `split` with `checkpoint` (`choose_step`), prints and saves
  the task's metrics; returns them."""
  run = restore(config, workdir, checkpoint, mode='evaluate',
                experiment_name=experiment_name)
  evaluator = run.task.evaluator(run.tokenizer, run.mesh, split)
  metrics, outputs = evaluator(run.params)
  metrics['checkpoint_steps'] = run.steps
  if not is_lead_process():  # every process evaluates; one writes and prints
    return metrics
  base = evaluator.write(os.path.join(workdir, 'eval'),
                         evaluator.file_name(run.steps), outputs, metrics)
  print(evaluator.report(metrics, outputs, base, samples=samples), flush=True)
  return metrics


def predictor(config, workdir: str, checkpoint: str | int | None = '', *,
              mode: str = 'predict', experiment_name: str | None = None
              ) -> Callable[[Iterable[str]], Iterator[str]]:
  """Restores the workdir's model (`checkpoint`: `choose_step`) once;
  returns a function from input lines to one output line each, in order:
  the translation, or the label and its probability, or the value. Every
  process computes; process 0 warns."""
  run = restore(config, workdir, checkpoint, mode=mode,
                experiment_name=experiment_name)
  warn = lead_warnings()
  return lambda lines: run.task.predict_lines(run.params, run.tokenizer,
                                              lines, run.mesh, warn=warn)


def print_lines(predict_lines: Callable[[Iterable[str]], Iterator[str]],
                out) -> None:
  """Each line of stdin (or --input) through `predict_lines`, printed to
  `out` by process 0 (every process computes)."""
  lead = is_lead_process()
  with (open(FLAGS.input, encoding='utf-8') if FLAGS.input else
        sys.stdin) as lines:
    for line in predict_lines(lines):
      if lead:
        print(line, file=out, flush=True)


def predict(config, workdir: str, checkpoint: str) -> None:
  """stdin (or --input) -> one output line per input line on stdout: the
  translation, or the label and its probability, or the value."""
  out = stdout_for_data_only()
  print_lines(predictor(config, workdir, checkpoint, mode=FLAGS.mode,
                        experiment_name=FLAGS.experiment), out)


def generate(config, workdir: str, checkpoint: str) -> None:
  """Continues --prompt (the continuation on stdout, as is), or each line of
  stdin / --input ({"prompt": ..., "continuation": ...} per line: the
  language model's prediction lines)."""
  out = stdout_for_data_only()
  if FLAGS.prompt is None:
    print_lines(predictor(config, workdir, checkpoint, mode='generate',
                          experiment_name=FLAGS.experiment), out)
    return
  run = restore(config, workdir, checkpoint, mode='generate',
                experiment_name=FLAGS.experiment)
  (_, continuation), = run.task.generate_texts(
      run.params, run.tokenizer, [FLAGS.prompt], run.mesh,
      warn=lead_warnings())
  if is_lead_process():
    print(continuation, file=out, flush=True)


def stdout_for_data_only():
  """Our stdout as a file; what libraries print goes to stderr from now on.

  Translations are piped into other tools, and some libraries print to the
  process's stdout (Gloo, the CPU collectives of multi-process runs, prints
  a line per peer), so file descriptor 1 is pointed at stderr.
  """
  sys.stdout.flush()
  data = os.fdopen(os.dup(1), 'w', encoding='utf-8')
  os.dup2(2, 1)
  return data


def visualize(config, workdir: str, checkpoint: str,
              experiment_name: str) -> None:
  """Attention maps for --sentence and training curves, as PNG files."""
  from transformer import visualize as visualize_lib  # pylint: disable=g-import-not-at-top
  from transformer.workdir import RunError  # pylint: disable=g-import-not-at-top
  if not FLAGS.sentence:
    raise RunError('--mode=visualize needs --sentence="a source '
                   'sentence" to draw the attention of.')
  check_trained(config, workdir, mode='visualize',
                experiment_name=experiment_name)
  try:
    paths = visualize_lib.run(
        config, workdir, sentence=FLAGS.sentence,
        layers=_ints(FLAGS.layers, 'layers'),
        heads=_ints(FLAGS.heads, 'heads'),
        step=choose_step(workdir, checkpoint),
        command=train_command(experiment_name, workdir))
  except ValueError as error:  # a bad --sentence, --layers or --heads
    raise RunError(str(error)) from None
  if paths:  # only process 0 draws
    print('Wrote:\n  ' + '\n  '.join(paths))


def export(config, workdir: str, checkpoint: str | int | None, output: str,
           *, experiment_name: str | None = None) -> list[str]:
  """--mode=export --output=DIR: the run's model, with `checkpoint`
  (`choose_step`), as a Hugging Face directory; refused before the
  checkpoint is read if the model or DIR does not fit. Returns the paths
  written (process 0; [] elsewhere)."""
  import jax  # pylint: disable=g-import-not-at-top
  from transformer import sharding, tasks  # pylint: disable=g-import-not-at-top
  from transformer.huggingface import export as export_lib  # pylint: disable=g-import-not-at-top
  export_lib.check_output(output)
  check_trained(config, workdir, mode='export',
                experiment_name=experiment_name)
  spec = export_lib.check(config, tasks.for_run(config, workdir))
  run = restore(config, workdir, checkpoint, mode='export',
                experiment_name=experiment_name)
  params = jax.tree.map(sharding.to_host, run.params)  # every process
  if not is_lead_process():
    return []
  paths = export_lib.export(run.task, params, run.tokenizer, output)
  print(f'Wrote {spec.architecture} (checkpoint {run.steps[-1]}):\n  ' +
        '\n  '.join(paths) + '\n  load: transformers.'
        f'{spec.architecture}.from_pretrained({output!r}), '
        f'transformers.AutoTokenizer.from_pretrained({output!r})', flush=True)
  return paths


def _ints(values: list[str] | None, flag: str) -> list[int] | None:
  """--layers / --heads as integers (None: not given); ValueError if not."""
  if values is None:
    return None
  ints = []
  for value in values:
    try:
      ints.append(int(value))
    except ValueError:
      raise ValueError(f'--{flag}={value}: expected integers separated by '
                       f'commas, e.g. --{flag}=0,-1') from None
  return ints


def train(config, workdir: str) -> None:
  from transformer import loop, tasks  # pylint: disable=g-import-not-at-top
  # An optional test file that is absent: said now, not found after training.
  missing = tasks.missing_split(config, 'test') if config.eval.final else None
  if missing:
    print(f'Note: {missing}, so the final evaluation on the test split is '
          'skipped (the test file is optional; add it to evaluate on it).',
          file=sys.stderr, flush=True)
  summary = loop.train(config, workdir, restart=FLAGS.restart,
                       experiment=FLAGS.experiment, overrides=FLAGS.set)
  if summary['stop_reason'] in ('SIGTERM', 'SIGINT'):  # preempted
    sys.exit(128 + {'SIGTERM': 15, 'SIGINT': 2}[summary['stop_reason']])
  # 'done' or 'time_limit': end as a finished run does.
  if config.eval.final and not missing:
    evaluate(summary['config'], workdir, 'test', '', samples=5,  # the best
             experiment_name=FLAGS.experiment)
  command = train_command(FLAGS.experiment, workdir)
  print(f'\nTrained to step {summary["step"]} ({summary["stop_reason"]}) in '
        f'{summary["wall_s"] / 60:.1f} minutes.\n'
        f'  checkpoints: {workdir}/checkpoints   TensorBoard: tensorboard '
        f'--logdir={workdir}/tensorboard   metrics: {workdir}/metrics.jsonl\n'
        f'  resume or extend: {command} --set=train.steps=N\n'
        f'  evaluate:  {command} --mode=evaluate\n'
        f'  {summary["try_it"](command)}', flush=True)


# --mode=study's flags, and the flags of the other modes, which a study
# takes none of (each of its runs has its own workdir, trains, and is
# evaluated on the test split).
STUDY_FLAGS = ('study_dir', 'vary', 'seeds', 'parallel')
NOT_FOR_STUDY = ('workdir', 'restart', 'checkpoint', 'step', 'split', 'input',
                 'output', 'sentence', 'prompt', 'layers', 'heads',
                 'coordinator_address', 'num_processes', 'process_id')


def study_flag_problem(mode: str) -> str | None:
  """Why the study flags do not go with `mode` (or are out of range), as
  one paragraph; None if they do."""
  given = lambda names: [f'--{n}' for n in names if FLAGS[n].present]
  if mode != 'study':
    if given(STUDY_FLAGS):
      return (f'{", ".join(given(STUDY_FLAGS))}: for --mode=study only '
              f'(this is --mode={mode}); add --mode=study to run a study.')
    return None
  if given(NOT_FOR_STUDY):
    return (f'{", ".join(given(NOT_FOR_STUDY))}: --mode=study takes none of '
            'these: each of its runs trains in its own workdir, '
            'COMBINATION/seedK/ under --study_dir, and is evaluated on the '
            'test split with its best (or last) checkpoint. Leave them '
            'out; use them afterwards on a run\'s workdir.')
  if not FLAGS.study_dir:
    return ('--mode=study needs --study_dir=DIR, where its runs, its '
            'definition (study.json) and its report go.')
  if FLAGS.seeds < 1 or FLAGS.parallel < 1:
    return (f'--seeds={FLAGS.seeds} --parallel={FLAGS.parallel}: both must '
            'be at least 1 (--seeds: the runs of each combination; '
            '--parallel: the runs at a time).')
  return None


def study() -> int:
  """--mode=study: every combination of --vary x --seeds trained and tested
  in its own process (transformer/study.py); returns the exit status."""
  from transformer import study as study_lib  # pylint: disable=g-import-not-at-top
  definition = study_lib.Definition(
      FLAGS.experiment, tuple(FLAGS.set), study_lib.parse_vary(FLAGS.vary),
      FLAGS.seeds)
  # The runs are this command in other modes: the same interpreter and
  # launch.py, wherever the study was started from.
  launcher = [sys.executable, os.path.abspath(__file__)]
  if not FLAGS.tcmalloc:
    launcher.append('--notcmalloc')
  return study_lib.run(definition, os.path.normpath(FLAGS.study_dir),
                       parallel=FLAGS.parallel, launcher=launcher)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.tcmalloc:
    restart_with_tcmalloc()
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
    std_logging.getLogger().setLevel(std_logging.WARNING)
  problem = study_flag_problem(FLAGS.mode)
  if problem:
    print(f'\nError: {problem}', file=sys.stderr, flush=True)
    sys.exit(2)
  if FLAGS.mode == 'study':  # its runs are processes of their own
    from transformer.study import StudyError  # pylint: disable=g-import-not-at-top
    try:
      sys.exit(study())
    except experiment.CONFIG_AND_DATA_ERRORS + (StudyError,) as error:
      print(f'\nError: {error}', file=sys.stderr, flush=True)
      sys.exit(2)
  # GPU matmuls from cuBLAS, not XLA's Triton GEMMs, which were slower on
  # the big models (README, "GPUs, TPUs and many hosts"). A different kernel
  # sums in another order; name the flag in XLA_FLAGS yourself to choose
  # otherwise. (XLA reads XLA_FLAGS when the backend starts, after this.)
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_gpu_enable_triton_gemm' not in xla_flags:
    os.environ['XLA_FLAGS'] = (
        xla_flags + ' --xla_gpu_enable_triton_gemm=false').strip()
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.num_processes and FLAGS.num_processes > 1:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  elif os.environ.get('JAX_COORDINATOR_ADDRESS') or os.environ.get(
      'TPU_WORKER_HOSTNAMES', '').count(','):
    jax.distributed.initialize()  # cluster environments configure themselves

  workdir = FLAGS.workdir or os.path.join('workdirs', FLAGS.experiment)
  try:
    choice = checkpoint_choice(FLAGS.mode)
    config, name = run_config(
        workdir, FLAGS.set, mode=FLAGS.mode, experiment_name=FLAGS.experiment,
        experiment_given=FLAGS['experiment'].present)
    from transformer import tasks  # pylint: disable=g-import-not-at-top
    tasks.check_mode(config, FLAGS.mode)  # translate, generate: some tasks
    if FLAGS.mode == 'train':
      train(config, workdir)
    elif FLAGS.mode == 'evaluate':
      evaluate(config, workdir, FLAGS.split, choice, experiment_name=name)
    elif FLAGS.mode in ('translate', 'predict'):
      predict(config, workdir, choice)
    elif FLAGS.mode == 'generate':
      generate(config, workdir, choice)
    elif FLAGS.mode == 'visualize':
      visualize(config, workdir, choice, name)
    elif FLAGS.mode == 'benchmark':
      from transformer import benchmark  # pylint: disable=g-import-not-at-top
      benchmark.run(config, workdir)
    elif FLAGS.mode == 'export':
      export(config, workdir, choice, FLAGS.output, experiment_name=name)
  except user_errors() as error:
    print(f'\nError: {error}', file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
