"""Text ↔ token-id tensors (section 5.1.1), with a clear error for an empty prompt.

>>> token_ids_to_text(text_to_token_ids("Every effort moves you", gpt2_tokenizer()), gpt2_tokenizer())  # doctest: +SKIP
'Every effort moves you'
"""

from __future__ import annotations

import torch

from ch02_text.errors import UserInputError


def text_to_token_ids(text, tokenizer):
    """Encode ``text`` into a (1, n_tokens) tensor (the tokenizer's special tokens allowed)."""
    # the book allows {"<|endoftext|>"}: GPT-2's only special token, so "all" is the same for it,
    # and also covers the special tokens of the project's own tokenizers (<eos>, ...)
    encoded = tokenizer.encode(text, allowed_special="all")
    if not encoded:
        raise UserInputError("the prompt has zero tokens: give at least one character of text")
    return torch.tensor(encoded).unsqueeze(0)  # add batch dimension


def token_ids_to_text(token_ids, tokenizer):
    """Decode a (1, n_tokens) or (n_tokens,) tensor back into text."""
    flat = token_ids.squeeze(0)  # remove batch dimension
    return tokenizer.decode(flat.tolist())
