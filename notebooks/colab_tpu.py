# ---
# jupyter:
#   accelerator: TPU
#   colab:
#     gpuType: V5E1
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A Transformer on a Colab TPU
#
# This notebook runs the repository's own code (the functions behind
# `launch.py`) on its default experiment, `bible_es_en`: Spanish → English,
# learnt from two public-domain Bibles. It trains in bfloat16, stops halfway
# and resumes from the checkpoint, scores the test split with sacreBLEU,
# translates a few sentences, and draws what the model attends to and how
# the loss fell.
#
# **Runtime.** *Runtime → Change runtime type → TPU*: the free TPU is a
# single v5e chip. Colab's TPU runtimes come with JAX for TPUs installed;
# anywhere else it is `pip install -U "jax[tpu]"`. The notebook also runs on
# a CPU or GPU runtime, only slower.
#
# **Tested on a CPU only.** No TPU was at hand when this was written: CI runs
# the whole notebook on a CPU with the tiny experiment
# (`tests/test_notebook.py`), not on a TPU.

# %% [markdown]
# ## Settings
#
# `STEPS`: `bible_es_en` is sized to train 300 steps on a laptop's CPU; a TPU
# can afford ten times as many, and the translations get better with them.
# `WORKDIR` holds the run: checkpoints, logs, the tokenizer, evaluations and
# pictures. A Colab runtime's own disk is wiped when it disconnects; a
# `WORKDIR` on Google Drive (the commented line) survives, and Drive is
# mounted when `WORKDIR` is there. (This cell is tagged `parameters`, so
# that papermill, and the test, can set other values.)

# %% tags=["parameters"]
EXPERIMENT = 'bible_es_en'  # a file in experiments/
STEPS = 3000  # training steps in all
# WORKDIR = '/content/drive/MyDrive/colab_tpu'  # on Drive: survives disconnects
WORKDIR = 'workdirs/colab_tpu'  # relative to the repository's root

# %% [markdown]
# ## Install (on Colab)
#
# On Colab this cell clones the repository and installs it with pip, and
# installs the three Debian packages the corpus comes from: `diatheke`
# reads the SWORD Bible modules `sword-text-sparv` (Reina-Valera 1909) and
# `sword-text-web` (World English Bible); nothing else is downloaded.
# TensorFlow is not needed. If pip asks you to restart the session, do so
# and run all cells again.
#
# Outside Colab it only moves to the repository's root: set up a clone with
# `bash .ci/setup` and start Jupyter with its `.venv/bin/python`.

# %%
import os
import sys

if 'google.colab' in sys.modules:
  # The GitHub repository this notebook belongs to.
  REPOSITORY = 'https://github.com/<owner>/<repo>'
  CHECKOUT = '/content/transformer'
  # !apt-get update -qq
  # !DEBIAN_FRONTEND=noninteractive apt-get install -y -qq diatheke sword-text-web sword-text-sparv > /dev/null
  if not os.path.exists(CHECKOUT):  # a rerun keeps the clone
    # !git clone --depth=1 {REPOSITORY} {CHECKOUT}
  # !pip install -q -e {CHECKOUT}
  os.chdir(CHECKOUT)
  if WORKDIR.startswith('/content/drive/'):
    from google.colab import drive
    drive.mount('/content/drive')
elif not os.path.exists('launch.py'):  # Jupyter starts in notebooks/
  os.chdir('..')
WORKDIR = os.path.abspath(WORKDIR)
print(f'Repository: {os.getcwd()}\nWorkdir:    {WORKDIR}')

# %% [markdown]
# ## The devices
#
# `launch` is `launch.py`, the command line: the cells below call its
# functions and those of the library it calls, so the notebook trains exactly
# as `python launch.py` does. All devices JAX sees form one data-parallel
# mesh: one TPU chip here (or one CPU).

# %%
import logging as std_logging

import jax
from absl import flags, logging
from IPython.display import Image, display

import launch
from transformer import loop, visualize
from transformer.config import Config

# As in launch.py: Orbax says a lot below WARNING.
logging.set_verbosity(logging.WARNING)
std_logging.getLogger().setLevel(std_logging.WARNING)
# launch.py's command-line flags keep their defaults (everything is passed
# as arguments here); grain's worker processes read them.
flags.FLAGS.mark_as_parsed()
jax.devices()

# %% [markdown]
# ## Train, stopped halfway
#
# `launch.load_config` reads `experiments/EXPERIMENT.py` and applies
# `KEY=VALUE` overrides, exactly as `launch.py --set=KEY=VALUE` does.
# `model.dtype=bfloat16` computes in bfloat16, the TPU's native format (the
# parameters stay float32); `eval.final=false` leaves the test-split
# evaluation to its own cell below.
#
# `loop.train` is the training loop of `launch.py --mode=train`. It prints
# the config, then every `train.log_every` steps a progress line (loss,
# perplexity, learning rate, tokens/s, ETA), now and then a quick
# evaluation on the validation split, and it saves a checkpoint into
# `WORKDIR` every `train.checkpoint_every` steps and when it stops. This
# first run is asked for only half of `STEPS`, to have something to resume.

# %%
def config_for(steps: int) -> Config:
  """EXPERIMENT as `launch.py --set=...` configures it, trained to `steps`."""
  return launch.load_config(EXPERIMENT, [
      f'train.steps={steps}', 'model.dtype=bfloat16', 'eval.final=false'])


def train(steps: int) -> dict:
  """Trains to `steps`, resuming from WORKDIR's newest checkpoint if any."""
  summary = loop.train(config_for(steps), WORKDIR)
  if summary['stop_reason'] in ('SIGINT', 'SIGTERM'):
    # The stop button: the loop saved a checkpoint; don't run on into the
    # next cells.
    raise KeyboardInterrupt(f'stopped at step {summary["step"]}, checkpoint '
                            'saved: run the cell again to resume')
  print(f'Trained to step {summary["step"]} ({summary["stop_reason"]}) in '
        f'{summary["wall_s"] / 60:.1f} minutes.')
  return summary


summary = train(STEPS // 2)

# %% [markdown]
# ## Resume from the checkpoint
#
# Now all `STEPS`. Training finds the checkpoint the first run saved, says
# at which step it resumes, and goes on with the data and random numbers it
# would have had without the stop: a checkpoint holds the parameters, the
# optimizer state and the input pipeline's position.
#
# A real disconnect stops a run anywhere: with `WORKDIR` on Drive,
# reconnect and run all cells again, and training resumes from the newest
# checkpoint (at most `train.checkpoint_every` steps are lost). The stop
# button (an interrupt) saves a checkpoint first: run the cell again to go
# on.

# %%
summary = train(STEPS)

# %% [markdown]
# ## Evaluate: sacreBLEU on the test split
#
# `launch.evaluate` is `launch.py --mode=evaluate`: beam search over the
# test split, sacreBLEU and chrF on the detokenized text (with their
# signatures), perplexity, and a few translations beside their references.
# Everything is also written to `WORKDIR/eval/`.

# %%
config = config_for(STEPS)
metrics = launch.evaluate(config, WORKDIR, 'test', None, samples=3)

# %% [markdown]
# ## Translate
#
# `launch.predictor` restores the newest checkpoint once and returns what
# `launch.py --mode=translate` applies to each line it reads.

# %%
SENTENCES = [
    'En el principio creó Dios los cielos y la tierra.',
    'El rey habló al pueblo, y todos oyeron su voz.',
    'Y dijo Dios: Sea la luz.',
]
translate = launch.predictor(config, WORKDIR)
for source, translation in zip(SENTENCES, translate(SENTENCES)):
  print(f'{source}\n  → {translation}')

# %% [markdown]
# ## Attention and training curves
#
# `visualize.run` is `launch.py --mode=visualize`: it translates one
# sentence greedily and draws, for the chosen layers (here the last) and
# every head, the encoder's self-attention, the decoder's (causal)
# self-attention and the encoder-decoder attention: which source pieces each
# target piece looks at. A head that has learnt to align lights up the word
# being translated. `training_curves.png` plots the training loss, and the
# validation loss and BLEU, from `WORKDIR/metrics.jsonl`.

# %%
pictures = visualize.run(config, WORKDIR, sentence=SENTENCES[-1],
                         layers=[-1], heads=None)
for path in pictures:
  display(Image(filename=path))

# %% [markdown]
# ## Next
#
# - Train longer: raise `STEPS` and run all cells again; training resumes
#   where it stopped.
# - The same from a terminal, in the same workdir: `python launch.py
#   --experiment=bible_es_en --workdir=WORKDIR --set=model.dtype=bfloat16`
#   with `--mode=evaluate`, `--mode=translate` or `--mode=visualize
#   --sentence="..."` (the README has them all).
# - Other experiments: any file in `experiments/` as `EXPERIMENT`.
