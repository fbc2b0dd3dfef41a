"""gpt2_finetune: fine-tune GPT-2 on your own text (`text_lm` started from a Hugging Face GPT-2).

What it shows: the decoder-only language model of `text_lm`, started from
OpenAI's GPT-2 weights (`train.init_from`, transformer/warm_start.py): the
checkpoint sets the shape (12 pre-LN layers of width 768, 1,024 learned
positions, tanh GELU) and the tokenizer (byte-level BPE; its vocabulary
grows by the project's PAD, UNK and BOS rows), and every parameter is
loaded. Download the model directory once:

  huggingface-cli download gpt2 config.json model.safetensors tokenizer.json --local-dir ~/models/gpt2

(124M parameters; distilgpt2 has 6 layers), then, with `train.txt`
(optionally `valid.txt`, `test.txt`) in DIR as for text_lm:

  python launch.py --experiment=gpt2_finetune --set=data.text_dir=DIR --set=train.init_from=$HOME/models/gpt2
  python launch.py --experiment=gpt2_finetune --set=data.text_dir=DIR --mode=generate --prompt="Once"

Without train.init_from the run stops at once and says what to give
(data.tokenizer=huggingface has no tokenizer of its own). Resuming,
evaluating and generating never read the directory again.

Settings: a small learning rate for a pretrained model (1e-4, AdamW with
beta2 0.999, weight decay 0.01 on the matrices, clipping at 1.0; 50 steps
of warm-up, then a cosine to a tenth), rows of 256 tokens, batches of 8,
the text as one stream (data.documents=stream), GPT-2's dropout of 0.1;
as many steps as fit in train.time_limit=10 minutes (train.steps=0),
evaluated every 50 steps, the best bits per character kept and an early
stop after 3 evaluations without a better one: a fine-tuned model
overfits a small file within an epoch or two. Bits per character compare
with text_lm's character model on the same files.

Not measured here: the development machines are offline, so no pretrained
weights can be downloaded; tests/test_warm_start.py and
tests/test_huggingface.py run the same path on small randomly initialised
models that `transformers` saves. A GPU suits GPT-2: on a 2-core CPU a step
of 8 x 256 tokens takes seconds.
"""

import dataclasses

from experiments import text_lm
from transformer.config import Config


def get_config() -> Config:
  base = text_lm.get_config()
  return dataclasses.replace(
      base,
      data=dataclasses.replace(base.data, tokenizer='huggingface',
                               max_length=256, batch_size=8,
                               eval_batch_size=8),
      train=dataclasses.replace(
          base.train, learning_rate=1e-4, warmup_steps=50, adam_b2=0.999,
          adam_eps=1e-8, weight_decay=0.01, checkpoint_every=500,
          log_every=10),
      eval=dataclasses.replace(base.eval, every=50),
      generate=dataclasses.replace(base.generate, max_new_tokens=100),
  )
