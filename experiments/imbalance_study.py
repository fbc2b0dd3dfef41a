"""imbalance_study: eight remedies for class imbalance on long-tailed genres.

Issue 23's headline comparison: cross-entropy against class weights,
re-sampling, focal loss, class-balanced weights, logit-adjusted loss,
LDAM with deferred re-weighting and balanced softmax, each trained with
three seeds on the same long-tailed data. `bible_genre`'s 8 genres with
the training split made long-tailed, 50:1 from the largest genre to the
smallest (data.imbalance_ratio=50: history keeps its 6,414 verses,
apocalypse 128, the others falling exponentially between; drawn from the
seed, recorded in labels.json); valid and test keep their natural counts.
The runs keep the checkpoint with the best balanced accuracy on valid and
are compared on test by balanced accuracy, macro-F1 and the recall of the
frequent, medium and rare genres.

  python launch.py --experiment=imbalance_study --mode=study \\
      --study_dir=workdirs/imbalance_study \\
      --vary=variant=cross_entropy,class_weights,resampling,focal,class_balanced,logit_adjusted,ldam_drw,balanced_softmax \\
      --seeds=3

`python launch.py --experiment=imbalance_study` alone trains the base
config: plain cross-entropy, seed 0.

A fixed train.steps, not a time budget (train.steps=0 with
train.time_limit): a budget fits each run's step count from its own
timings, which vary with the load of the machine, so two variants of one
seed would train different numbers of steps under differently shaped
schedules, and LDAM-DRW's re-weighting (train.drw_start, a step) would
start at an unknown fraction of the run, or never. With 1,000 steps every
run sees the same schedule, a seed the same batches (but for re-sampling),
and DRW starts at exactly 80%. Measured on a 2-core AMD EPYC CPU
(2026-12-06): a run trains in 1.6 minutes with its 10 evaluations of
valid, 2.5 with its set-up and test evaluation, so 8 variants x 3 seeds
take about an hour one at a time.

Results: to be measured.
"""

import dataclasses

from experiments import bible_genre
from transformer.config import Config

STEPS = 1000
# Cao et al. 2019 (sec. 3.3, CIFAR: 160 of 200 epochs) train with LDAM
# alone and re-weight for the last fifth.
DRW_START = 800

# The recipes, by name (--vary=variant=NAME,...; transformer/study.py).
VARIANTS = {
    'cross_entropy': ('train.loss=cross_entropy',),
    'class_weights': ('train.class_weights=balanced',),  # n / (K n_k)
    'resampling': ('data.class_sampling=oversample',),
    'focal': ('train.loss=focal', 'train.focal_gamma=2'),
    # Cui et al. 2019 pair effective-number weights with focal loss or
    # softmax; softmax here, so that focal's own effect stays apart.
    'class_balanced': ('train.class_weights=effective_number',
                       'train.class_weights_beta=0.9999'),
    'logit_adjusted': ('train.loss=logit_adjusted',
                       'train.logit_adjust_tau=1'),
    # Cao et al.'s code re-weights with beta 0.9999 (as class_balanced
    # here): the rarest genre then weighs 37 times the largest (with 0.999,
    # 8 times; counts 50).
    'ldam_drw': ('train.loss=ldam', 'train.class_weights=effective_number',
                 'train.class_weights_beta=0.9999',
                 f'train.drw_start={DRW_START}'),
    'balanced_softmax': ('train.loss=balanced_softmax',),
}


def get_config() -> Config:
  config = bible_genre.get_config()
  return dataclasses.replace(
      config,
      data=dataclasses.replace(config.data, imbalance_ratio=50.0),
      train=dataclasses.replace(config.train, steps=STEPS),
      # Every 100 steps: two evaluations fall in DRW's last fifth. No early
      # stop: every variant trains the same steps (LDAM-DRW's re-weighting
      # comes late), and the best valid balanced accuracy is tested.
      eval=dataclasses.replace(config.eval, every=100, split='valid',
                               best_metric='balanced_accuracy'),
  )
