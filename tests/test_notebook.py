"""notebooks/colab_tpu.ipynb: its plain-text twin (notebooks/colab_tpu.py,
jupytext's percent format) holds the same cells, and the notebook runs from
top to bottom, here on a CPU with the tiny experiment: train, stop, resume,
evaluate, translate, draw. (The TPU it is written for is not tested.)"""

from __future__ import annotations

import ast
import base64
import glob
import json
import os
import re
import sys

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

import launch
from transformer.data import bible

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'notebooks', 'colab_tpu.ipynb')
TWIN = os.path.join(REPO, 'notebooks', 'colab_tpu.py')
RESYNC = ('resync them with `jupytext --sync notebooks/colab_tpu.ipynb` (the '
          'newer file wins), or `jupytext --to ipynb notebooks/colab_tpu.py` '
          '(the .py wins)')
PARAMETERS = ('EXPERIMENT', 'STEPS', 'WORKDIR')
# tiny: the first run stops at step 2 and saves; the second resumes there.
STEPS = 4
KERNEL = 'transformer-notebook-test'


def read_notebook() -> nbformat.NotebookNode:
  return nbformat.read(NOTEBOOK, as_version=4)


def cells(notebook) -> list[tuple[str, str, list[str]]]:
  """What the twins must agree on: each cell's type, source and tags."""
  return [(c.cell_type, c.source, list(c.metadata.get('tags', [])))
          for c in notebook.cells]


def parameters_cell(notebook) -> int:
  (index,) = [i for i, c in enumerate(notebook.cells)
              if 'parameters' in c.metadata.get('tags', [])]
  return index


def assigned(source: str) -> dict[str, object]:
  """name -> value of each top-level `name = literal` (in order)."""
  values = {}
  for node in ast.parse(source).body:
    if isinstance(node, ast.Assign):
      try:
        value = ast.literal_eval(node.value)
      except ValueError:  # not a literal
        continue
      values.update((target.id, value) for target in node.targets)
  return values


def test_the_py_twin_holds_the_notebooks_cells():
  ours, twins = cells(read_notebook()), cells(jupytext.read(TWIN))
  for i, (cell, twin) in enumerate(zip(ours, twins)):
    assert cell == twin, (f'cell {i} differs between the .ipynb and the .py: '
                          f'{RESYNC}.\n.ipynb: {cell}\n.py:    {twin}')
  assert len(ours) == len(twins), (
      f'the .ipynb has {len(ours)} cells, the .py {len(twins)}: {RESYNC}')


def test_parameters_come_first_and_install_the_corpus_packages():
  notebook = read_notebook()
  index = parameters_cell(notebook)
  code = [i for i, c in enumerate(notebook.cells) if c.cell_type == 'code']
  assert index == code[0], 'the parameters cell must be the first code cell'
  values = assigned(notebook.cells[index].source)
  assert tuple(values) == PARAMETERS
  assert values['EXPERIMENT'] == 'bible_es_en'
  assert values['EXPERIMENT'] in launch.available_experiments()
  assert isinstance(values['STEPS'], int) and values['STEPS'] > 0
  # The install cell asks apt for what the Bible corpus needs.
  packages = bible.INSTALL_COMMAND.split('install -y ')[1]
  install = notebook.cells[code[1]].source
  assert "'google.colab' in sys.modules" in install
  assert re.search(rf'apt-get install -y .*{re.escape(packages)}', install)


def with_parameters(notebook, **values) -> nbformat.NotebookNode:
  """As papermill does: a cell after the `parameters` cell sets `values`."""
  source = '\n'.join(f'{name} = {value!r}' for name, value in values.items())
  cell = nbformat.v4.new_code_cell(
      source, metadata={'tags': ['injected-parameters']})
  notebook.cells.insert(parameters_cell(notebook) + 1, cell)
  return notebook


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
  """A kernel on this interpreter (.venv's, which need not be on PATH), on
  the CPU, with Jupyter's and IPython's files in tmp_path, not in the home
  directory."""
  spec = tmp_path / 'jupyter' / 'kernels' / KERNEL
  spec.mkdir(parents=True)
  (spec / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher',
               '-f', '{connection_file}'],
      'display_name': 'Python (tests)', 'language': 'python'}))
  monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
  monkeypatch.setenv('JUPYTER_RUNTIME_DIR', str(tmp_path / 'runtime'))
  monkeypatch.setenv('IPYTHONDIR', str(tmp_path / 'ipython'))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # Both training runs compile the same train step: the second one reads it
  # from this cache (XLA's output does not depend on where it came from).
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'jax_cache'))
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  # Under TCMalloc where installed, as launch.py restarts itself: faster
  # CPU steps and compiles.
  preload = launch.tcmalloc_environment(dict(os.environ),
                                        launch.find_tcmalloc())
  for name, value in (preload or {}).items():
    if os.environ.get(name) != value:
      monkeypatch.setenv(name, value)
  return KERNEL


def stdout_of(cell) -> str:
  return ''.join(o.text for o in cell.outputs
                 if o.output_type == 'stream' and o.name == 'stdout')


def cell_calling(notebook, call: str):
  (cell,) = [c for c in notebook.cells
             if c.cell_type == 'code' and call in c.source]
  return cell


@pytest.mark.slow
def test_notebook_trains_resumes_evaluates_translates_and_draws(
    tmp_path, kernel):
  workdir = str(tmp_path / 'workdir')
  notebook = with_parameters(read_notebook(), EXPERIMENT='tiny', STEPS=STEPS,
                             WORKDIR=workdir)
  # Run where Jupyter runs a notebook: in its folder. A failing cell raises
  # CellExecutionError with its traceback.
  NotebookClient(notebook, kernel_name=kernel, timeout=600,
                 resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}}
                 ).execute()
  errors = [o for c in notebook.cells if c.cell_type == 'code'
            for o in c.outputs if o.output_type == 'error']
  assert not errors

  devices = ''.join(o.data['text/plain'] for o in cell_calling(
      notebook, 'jax.devices()').outputs if o.output_type == 'execute_result')
  assert 'CpuDevice(id=0)' in devices

  first = stdout_of(cell_calling(notebook, 'train(STEPS // 2)'))
  assert f'Starting a new run in {workdir}' in first
  assert f'Trained to step {STEPS // 2} (done)' in first
  resumed = stdout_of(cell_calling(notebook, 'train(STEPS)'))
  assert (f'Resuming {workdir} from the checkpoint at step {STEPS // 2}.'
          in resumed)
  assert re.search(rf'^step +{STEPS}/{STEPS}  loss \d', resumed, re.M)
  assert f'Trained to step {STEPS} (done)' in resumed

  # The BLEU printed is the one written with the test split's translations.
  report = stdout_of(cell_calling(notebook, 'launch.evaluate('))
  bleu = re.search(r'^  BLEU (\d+\.\d\d)   nrefs:1', report, re.M)
  assert bleu, report
  (saved,) = glob.glob(os.path.join(workdir, 'eval',
                                    f'test_step{STEPS}_*.json'))
  with open(saved) as f:
    assert f'{json.load(f)["bleu"]:.2f}' == bleu.group(1)

  translation_cell = cell_calling(notebook, 'launch.predictor(')
  sentences = assigned(translation_cell.source)['SENTENCES']
  printed = stdout_of(translation_cell)
  for sentence in sentences:
    assert f'{sentence}\n  → ' in printed
  assert len(re.findall(r'^  → ', printed, re.M)) == len(sentences)

  pictures = cell_calling(notebook, 'visualize.run(')
  written = re.findall(r'^wrote (\S+\.png)$', stdout_of(pictures), re.M)
  names = {os.path.basename(path) for path in written}
  last = launch.load_config('tiny', []).model.num_decoder_layers - 1
  assert {f'cross_layer{last}.png', 'training_curves.png'} <= names, names
  shown = [base64.b64decode(o.data['image/png']) for o in pictures.outputs
           if o.output_type == 'display_data' and 'image/png' in o.data]
  assert len(shown) == len(written)
  for image, path in zip(shown, written):
    with open(path, 'rb') as f:
      assert image == f.read()
