"""text_regression: a small encoder for your own sentences with numeric labels.

Put `train.tsv` (or `train.csv`, `train.jsonl`) with a `text` and a `label`
column (numbers) in a directory, optionally `valid.*` and `test.*`, and
run:

  python launch.py --experiment=text_regression --set=data.text_dir=DIR

Other column names: --set=data.text_column=... --set=data.label_column=....
Without a valid file a fixed tenth of the training file is held out. Sized
for a first run on a few thousand sentences on a laptop CPU: a 4,000-piece
vocabulary, 3 pre-LN layers of d_model 128 with dropout 0.2, batches of 32,
as many steps as fit in 10 minutes (train.steps=0) with an evaluation on
valid every 100 steps, the best Pearson correlation kept and an early stop
after 5 evaluations without a better one. Several numeric columns:
--set=data.label_column=a,b (one output each).

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s as `--mode=benchmark` measures), alone, as a newcomer would use it:
5,000 training sentences of vader_regression (the mean rating, -4..4;
drawn with numpy's default_rng(0) from its training split) written to
train.tsv, no valid.tsv (513 held out), its 2,337 test sentences in
test.tsv: the budget fitted 12,290 steps; the run stopped early at step
900 after 0.7 minutes, its best valid Pearson (0.517) at step 400: test
Pearson 0.491, Spearman 0.488, MSE 2.343. The earlier recipe, 600 steps
with the cosine decayed over them, reached 0.517: a schedule fitted to 10
minutes stays near its peak when a small file stops improving after a few
hundred steps (the next thing to try: capping the budget's steps at a few
epochs). Baselines on the same files (`python -m transformer.baselines
--experiment=text_regression --set=data.text_dir=DIR`): the training mean
MSE 2.772; TF-IDF + ridge Pearson 0.583, MSE 1.841.
"""

import dataclasses

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='regression',
      model=dataclasses.replace(CPU_ENCODER, vocab_size=4000,
                                dropout_rate=0.2),
      data=DataConfig(source='text', max_length=64, batch_size=32,
                      eval_max_length=128),
      # As many steps as fit in 10 minutes, the best on valid kept, and an
      # early stop once 5 evaluations in a row bring no better one.
      train=TrainConfig(loss='mse', steps=0, time_limit=10.0,
                        schedule='cosine', learning_rate=1e-3,
                        warmup_steps=100, label_smoothing=0.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=100, split='valid', best_metric='pearson',
                      patience=5),
  )
