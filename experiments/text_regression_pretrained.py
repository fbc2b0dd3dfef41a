"""text_regression_pretrained: fine-tune a pretrained BERT-family encoder on your own sentences with numeric labels.

What it shows: `text_regression`'s users' files with the encoder started
from a Hugging Face checkpoint (`train.init_from`,
transformer/warm_start.py): shape, tokenizer (WordPiece) and weights come
from it, BERT's pooler where it has one; the regression head is new. Download a
model directory once (config.json, model.safetensors, tokenizer.json),
e.g. a sentence encoder trained for semantic similarity:

  huggingface-cli download sentence-transformers/all-MiniLM-L6-v2 config.json model.safetensors tokenizer.json --local-dir ~/models/minilm

(22M parameters, 6 layers of width 384; or bert-base-uncased), then, with
`train.tsv` (a `text` and a numeric `label` column; several outputs:
--set=data.label_column=a,b) and optionally `valid.*` and `test.*` in DIR:

  python launch.py --experiment=text_regression_pretrained --set=data.text_dir=DIR --set=train.init_from=$HOME/models/minilm

The run prints what the checkpoint set and what was loaded, new and
unused (model.pooler follows the checkpoint: on where it holds BertModel's
pooler); without train.init_from it stops at once and says what to give. Resuming, evaluating and predicting never read the directory again.

Settings: BERT's fine-tuning recipe (Devlin et al. 2019, appendix A.3, as
in text_classification_pretrained, whose docstring maps it to this
project's keys: [CLS] pooling and the pooler, learning rate 3e-5 with a
10% linear warm-up and linear decay over 1,000 steps, batches of 32,
AdamW with weight decay 0.01 on the matrices, clipping at 1.0), with the
MSE on standardised targets (as BERT's STS-B head) and the best valid
Pearson correlation kept, early stop after 5 evaluations without a better
one.

Not measured here: the development machines are offline, so no pretrained
weights can be downloaded; tests/test_warm_start.py and
tests/test_huggingface.py run the same path on small randomly initialised
models that `transformers` saves.
"""

import dataclasses

from experiments import text_classification_pretrained, text_regression
from transformer.config import Config


def get_config() -> Config:
  pretrained = text_classification_pretrained.get_config()
  base = text_regression.get_config()
  return dataclasses.replace(
      pretrained, task='regression',
      train=dataclasses.replace(pretrained.train, loss=base.train.loss),
      eval=base.eval)
