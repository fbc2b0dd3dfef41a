"""text_classification_pretrained: fine-tune a pretrained BERT-family encoder on your own labelled sentences.

What it shows: the same users' files as `text_classification`, but the
encoder starts from a Hugging Face checkpoint instead of from scratch
(`train.init_from`, transformer/warm_start.py): the checkpoint's shape,
tokenizer (WordPiece) and weights are loaded, BERT's pooler included where
the checkpoint has one (model.pooler follows it); only the head is new. Download a model directory once (config.json,
model.safetensors, tokenizer.json), e.g.

  huggingface-cli download bert-base-uncased config.json model.safetensors tokenizer.json --local-dir ~/models/bert-base-uncased

(110M parameters; `sentence-transformers/all-MiniLM-L6-v2` or
`google/bert_uncased_L-4_H-256_A-4` are smaller BERT-family encoders that
fit a laptop CPU), then, with `train.tsv` (a `text` and a `label` column)
and optionally `valid.*` and `test.*` in DIR as for text_classification:

  python launch.py --experiment=text_classification_pretrained --set=data.text_dir=DIR --set=train.init_from=$HOME/models/bert-base-uncased

The run prints what the checkpoint set (model.d_model, the layers, the
vocabulary...) and what was loaded, new and unused; without
train.init_from it stops at once and says what to give
(data.tokenizer=huggingface has no tokenizer of its own). Resuming,
evaluating and predicting never read the directory again.

Settings: BERT's fine-tuning recipe (Devlin et al. 2019, appendix A.3:
Adam with learning rate among 2e-5..5e-5, batch 16 or 32, 2-4 epochs,
linear warm-up over the first 10% of the steps then linear decay, weight
decay 0.01; BertForSequenceClassification's [CLS] vector through the
pooler, dropout 0.1 before the classifier) in this project's keys: the
first token's output (model.pooling=first: the [CLS] the pipeline
prepends) and model.pooler; learning rate 3e-5 with 100 of 1,000 steps
of warm-up and a linear decay to zero; batches of 32 sentences of up to
128 pieces; AdamW (beta2 0.999, eps 1e-6) with weight decay 0.01 on the
matrices only (BERT leaves biases and LayerNorm out) and clipping at 1.0;
the best valid accuracy kept, evaluated every 100 steps, an early stop
after 5 evaluations without a better one. 1,000 steps are about 6 epochs
of 5,000 sentences: set train.steps (and train.warmup_steps to a tenth of
it) for a few epochs of yours.

Not measured here: the development machines are offline, so no pretrained
weights can be downloaded; tests/test_warm_start.py and
tests/test_huggingface.py run the same path on small randomly initialised
models that `transformers` saves. A GPU suits bert-base; on a 2-core CPU
prefer a small encoder (a MiniLM).
"""

import dataclasses

from experiments import text_classification
from transformer.config import Config


def get_config() -> Config:
  base = text_classification.get_config()
  return dataclasses.replace(
      base,
      # The checkpoint sets the shape and the vocabulary; these are what a
      # fine-tuning run chooses beside them.
      model=dataclasses.replace(base.model, pooling='first', pooler=True),
      data=dataclasses.replace(base.data, tokenizer='huggingface',
                               max_length=128, batch_size=32,
                               eval_max_length=128),
      train=dataclasses.replace(
          base.train, steps=1000, time_limit=0.0, schedule='linear',
          learning_rate=3e-5, warmup_steps=100, adam_b2=0.999,
          adam_eps=1e-6, weight_decay=0.01, weight_decay_on='matrices',
          grad_clip_norm=1.0, checkpoint_every=500),
  )
