"""text_mlm: BERT's masked-LM pretraining on your own text, with text_classification's encoder.

Put `train.txt` (optionally `valid.txt` and `test.txt`; UTF-8, or set
data.encoding) in a directory, one text per line, and run:

  python launch.py --experiment=text_mlm --set=data.text_dir=DIR
  echo "the film was [MASK] good" | python launch.py --experiment=text_mlm --set=data.text_dir=DIR --mode=predict

Each non-blank line is a document, [BOS] pieces [EOS], packed into rows of
128 pieces (data.documents=lines; 'paragraphs' for blank-line separated
texts, 'stream' for one running text). A directory with no train.txt but a
labelled train.tsv/.csv/.jsonl (as text_classification reads) gives the
texts of its data.text_column, labels ignored: pretrain on the texts of a
classification set, then fine-tune on its labels. Without valid.txt a
tenth of the lines is held out. The vocabulary is 4,000 SentencePiece
pieces ('<mask>' at id 4) and the encoder is text_classification's (3
pre-LN layers of width 128), so that

  python launch.py --experiment=text_classification --set=data.text_dir=DIR --set=train.init_from=workdirs/text_mlm

starts from it (the tokenizer comes along). 15% of the pieces are chosen
(80% [MASK], 10% random, 10% kept); AdamW at 1e-3 on a cosine, as many
steps as fit in train.time_limit=10 minutes (train.steps=0), the best
masked-token loss on valid kept and an early stop after 5 evaluations
without a better one.

Measured on a 2-core AMD EPYC CPU (2026-12-06; matmul peak 431 GFLOP/s as
`--mode=benchmark` measures), alone, on the texts of
the 5,000-sentence vader_3way train.tsv that text_classification's
docstring describes (labels ignored; 506 held out for valid): 4,524 steps
fitted to the budget, 9.0 minutes; test sentences (test.tsv's texts):
masked-token loss 4.868 nats, accuracy 0.238, perplexity 130.1, against
the training texts' add-one unigram distribution of pieces: 6.506 nats,
accuracy 0.046. text_classification warm-started from it: test accuracy
0.597, macro-F1 0.550 against 0.583, 0.532 from scratch (valid reversed;
text_classification's docstring).
"""

import dataclasses

from transformer.config import CPU_ENCODER, Config, DataConfig, EvalConfig, TrainConfig


def get_config() -> Config:
  # text_classification's encoder (CPU_ENCODER with 4,000 pieces).
  return Config(
      task='masked_lm',
      model=dataclasses.replace(CPU_ENCODER, vocab_size=4000),
      data=DataConfig(source='text', documents='lines', max_length=128,
                      batch_size=32, eval_batch_size=32),
      train=TrainConfig(steps=0, time_limit=10.0, schedule='cosine',
                        learning_rate=1e-3, warmup_steps=100,
                        final_learning_rate_fraction=0.1, adam_b2=0.99,
                        weight_decay=0.01, weight_decay_on='matrices',
                        label_smoothing=0.0, grad_clip_norm=1.0,
                        checkpoint_every=500, log_every=100),
      eval=EvalConfig(every=200, split='valid', best_metric='loss',
                      patience=5),
  )
