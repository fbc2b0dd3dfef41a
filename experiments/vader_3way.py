"""vader_3way: the sentiment of short English texts as a class: negative, neutral or positive (cut at -0.5 and +0.5), trained with softmax cross-entropy.

The human-rated sets of Hutto & Gilbert (ICWSM 2014) that the vaderSentiment
3.3.2 source package ships (`.ci/setup` fetches it), binned from the mean
rating (transformer/tasks/labelled/sources.py gives the cut points).

  python launch.py --experiment=vader_3way

Measured on a 2-core AMD EPYC CPU (JAX 0.10.2, 2026-12-06; matmul peak 431
GFLOP/s as `--mode=benchmark` measures), alone: 800 steps in 1.5
minutes (the whole command 1.7); test split (2,337 texts): accuracy 0.659,
macro-F1 0.623, log loss 0.840; recall negative 0.707, neutral 0.443,
positive 0.712. Baselines
on the same splits (`python -m transformer.baselines
--experiment=vader_3way`): majority class accuracy 0.421, macro-F1 0.198;
TF-IDF + logistic regression (C=3 chosen on valid) accuracy 0.693,
macro-F1 0.638, log loss 0.744, neutral recall 0.353. The small encoder,
trained from scratch on 19k texts, does not beat the bag of n-grams overall;
it recognises neutral texts better.
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  return Config(
      task='classification',
      model=CPU_ENCODER,
      data=DataConfig(source='vader', sentiment_classes=3, max_length=64,
                      batch_size=64, eval_max_length=128),
      train=TrainConfig(loss='cross_entropy', steps=800, schedule='cosine',
                        learning_rate=1e-3, warmup_steps=100,
                        label_smoothing=0.0, checkpoint_every=500,
                        log_every=100),
      eval=EvalConfig(every=200, split='valid'),
  )
