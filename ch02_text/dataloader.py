"""Chapter 2 data sampling: sliding windows of token ids as (input, target) pairs.

What this adds over the tokenizers: a PyTorch ``Dataset`` of next-token prediction
pairs (listing 2.5) and the ``create_dataloader_v1`` helper (listing 2.6). Unlike
the book, text too short for a single window raises a ``UserInputError`` that says
what to change instead of silently yielding zero batches.

>>> ds = GPTDatasetV1("a b c d e f", gpt2_tokenizer(), max_length=4, stride=1)   # doctest: +SKIP
>>> ds[0]                                                                       # doctest: +SKIP
(tensor([64, 275, 269, 288]), tensor([275, 269, 288, 304]))
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .errors import UserInputError
from .tokenizers import gpt2_tokenizer


class GPTDatasetV1(Dataset):
    """Listing 2.5: chunk ``txt`` into overlapping windows of ``max_length`` tokens."""

    def __init__(self, txt, tokenizer, max_length, stride):
        if max_length < 1 or stride < 1:
            raise ValueError(f"max_length ({max_length}) and stride ({stride}) must be >= 1")
        self.input_ids = []
        self.target_ids = []

        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        if len(token_ids) < max_length + 1:
            raise UserInputError(
                f"text has {len(token_ids)} tokens, but one window of max_length={max_length} "
                f"needs {max_length + 1} (inputs + shifted target): use more text "
                f"or a max_length of at most {max(len(token_ids) - 1, 0)}"
            )

        # One window per start position 0, stride, 2*stride, ... that still fits.
        for i in range(0, len(token_ids) - max_length, stride):
            input_chunk = token_ids[i:i + max_length]
            target_chunk = token_ids[i + 1: i + max_length + 1]
            self.input_ids.append(torch.tensor(input_chunk))
            self.target_ids.append(torch.tensor(target_chunk))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, idx):
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128,
                         shuffle=True, drop_last=True, num_workers=0, tokenizer=None):
    """Listing 2.6: GPT-2-tokenize ``txt`` and batch its sliding windows.

    ``tokenizer`` defaults to GPT-2's BPE (the book's ``tiktoken.get_encoding("gpt2")``).
    """
    tokenizer = gpt2_tokenizer() if tokenizer is None else tokenizer
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
    )
