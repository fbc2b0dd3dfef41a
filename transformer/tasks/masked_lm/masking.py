"""BERT's masking (Devlin et al. 2019, sec. 3.1 and appendix A.1), as a
pure function of the tokens and a key.

Each ordinary token is chosen for prediction with probability `rate`
(0.15), independently (as Hugging Face's DataCollatorForLanguageModeling
and RoBERTa do; BERT's script picks round(0.15 * n) per sequence: the same
rate in expectation). A chosen token is replaced by [MASK] (MASK_ID) with
probability `mask_share` (0.8), by a random ordinary token with probability
`random_share` (0.1), and otherwise kept, so that the model cannot tell
from its input which positions are scored and must keep a representation
of every token. The loss is taken at the chosen positions only.

Never chosen: PAD (padding), BOS and EOS (the [CLS] and [SEP] of these
rows, which BERT never masks either), MASK itself, and UNK: its target
would be "some piece the vocabulary lacks", which teaches nothing about
the text and which --mode=predict could not show. So the candidates, and
the random replacements, are the ids FIRST_ORDINARY_ID .. vocab_size - 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transformer.config import MASK_ID

Array = jax.Array

# Ids below this are the fixed specials (PAD, UNK, BOS, EOS) and MASK.
FIRST_ORDINARY_ID = MASK_ID + 1


def maskable(tokens: Array) -> Array:
  """bool [B, L]: the tokens that may be chosen (ordinary ids)."""
  return tokens >= FIRST_ORDINARY_ID


def mask_tokens(tokens: Array, rng: Array, vocab_size: int, *,
                rate: float = 0.15, mask_share: float = 0.8,
                random_share: float = 0.1) -> tuple[Array, Array]:
  """BERT's corruption of a batch.

  Args:
    tokens: int [B, L] original ids (PAD 0 on padding).
    rng: a jax.random key; the same key and tokens give the same result.
    vocab_size: random replacements are drawn from
      [FIRST_ORDINARY_ID, vocab_size).
    rate, mask_share, random_share: see the module docstring.
  Returns:
    (inputs int32 [B, L]: the tokens with the chosen ones replaced,
     weights float32 [B, L]: 1.0 at the chosen positions, where the loss
     predicts `tokens`, else 0.0).
  """
  choose_key, how_key, random_key = jax.random.split(rng, 3)
  tokens = tokens.astype(jnp.int32)
  chosen = maskable(tokens) & jax.random.bernoulli(choose_key, rate,
                                                   tokens.shape)
  how = jax.random.uniform(how_key, tokens.shape)
  random_ids = jax.random.randint(random_key, tokens.shape,
                                  FIRST_ORDINARY_ID, vocab_size, jnp.int32)
  inputs = jnp.where(chosen & (how < mask_share), MASK_ID, tokens)
  replace = chosen & (how >= mask_share) & (how < mask_share + random_share)
  inputs = jnp.where(replace, random_ids, inputs)
  return inputs, chosen.astype(jnp.float32)
