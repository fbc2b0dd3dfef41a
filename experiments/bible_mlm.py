"""bible_mlm: BERT's masked-LM pretraining on the English Bible, 10 CPU minutes, with bible_genre's encoder.

What it shows: `task=masked_lm` (Devlin et al. 2019, sec. 3.1) on the World
English Bible, one document per chapter ([BOS] verses [EOS], packed into
rows of 128 pieces), test chapters never trained on (the split of every
Bible corpus here): 15% of the pieces chosen, of those 80% [MASK], 10% a
random piece, 10% kept, the loss at the chosen positions only. The encoder
is exactly `bible_genre`'s (config.CPU_ENCODER: 8,000-piece vocabulary,
3 pre-LN layers of width 128, 4 heads, ReLU, sinusoidal positions), so its
parameters have the classifier's names and shapes and a genre classifier
can start from them (train.init_from, which also brings this run's
SentencePiece tokenizer, '<mask>' at id 4). Trained with AdamW (weight
decay 0.01 on the matrices, BERT's) at 1e-3 on a cosine to a tenth, for as
many steps as fit in train.time_limit=10 minutes (train.steps=0); the
best masked-token loss on valid kept.

  python launch.py --experiment=bible_mlm
  echo "And God [MASK] the light" | python launch.py --experiment=bible_mlm --mode=predict
  python launch.py --experiment=bible_genre --workdir=workdirs/bible_genre_mlm --set=train.init_from=workdirs/bible_mlm

Measured on a 2-core AMD EPYC CPU (2026-12-06; matmul peak 431 GFLOP/s as
`--mode=benchmark` measures), alone: 4,122 steps fitted
to the budget (7.8 steps/s; the train step projects only the chosen
positions onto the vocabulary), 9.3 minutes in all. Test split: masked-token
loss 4.706 nats, accuracy 0.246, perplexity 110.6 (valid 4.861, 0.236).
Its baseline, the training chapters' add-one unigram distribution of
pieces (what a model that ignores the context can do): 6.083 nats
(perplexity 438) and accuracy 0.070 (always ',') on the test pieces. The
encoder's accuracy is still mostly punctuation and function words ("the",
",", "of"): a small encoder after ten minutes. What it is worth
downstream, `bible_genre_pretrained`'s docstring measures: fine-tuned for
5 more minutes it reaches test macro-F1 0.669 against 0.640 for
`bible_genre` trained from scratch for the same 15 minutes (one seed
each; on valid the order is reversed).
"""

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  # CPU_ENCODER unchanged: bible_genre's encoder, parameter for parameter
  # (its activation too, so that a warm-started classifier computes what
  # was pretrained).
  return Config(
      task='masked_lm',
      model=CPU_ENCODER,
      data=DataConfig(source='bible', language='en', max_length=128,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(steps=0, time_limit=10.0, schedule='cosine',
                        learning_rate=1e-3, warmup_steps=200,
                        final_learning_rate_fraction=0.1, adam_b2=0.99,
                        weight_decay=0.01, weight_decay_on='matrices',
                        label_smoothing=0.0, grad_clip_norm=1.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=500, split='valid', best_metric='loss'),
  )
