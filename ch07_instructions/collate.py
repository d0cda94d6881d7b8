"""Organizing the instruction data into training batches (section 7.3): the dataset and the collate functions.

Unlike chapter 6's ``SpamDataset``, which pads every text of the dataset to one length and labels it with one
class: ``InstructionDataset`` keeps each prompt-and-response as its own list of token ids, and the collate
function pads a batch only to its own longest entry (batches differ in length), appends one end-of-text token
to every entry, shifts the targets by one position as in pretraining, and replaces every pad after the first by
``-100``, which ``torch.nn.functional.cross_entropy`` ignores (its default ``ignore_index``).

>>> batch = ([0, 1, 2, 3, 4], [5, 6], [7, 8, 9])          # the book's toy batch
>>> inputs, targets = custom_collate_fn(batch)
>>> inputs.shape, targets[1].tolist()                      # shape: (batch_size, longest + 1 - 1)
(torch.Size([3, 5]), [6, 50256, -100, -100, -100])
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .instruction_data import format_input, format_response

PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>: the end-of-text token and the pad
IGNORE_INDEX = -100  # the targets cross_entropy skips (its default ignore_index)


class InstructionDataset(Dataset):
    """Listing 7.4: every entry's prompt and response (``format_input`` + ``format_response``) tokenized once."""

    def __init__(self, data, tokenizer):
        self.data = data
        # Pre-tokenize texts
        self.encoded_texts = [tokenizer.encode(format_input(entry) + format_response(entry)) for entry in data]

    def __getitem__(self, index):
        return self.encoded_texts[index]

    def __len__(self):
        return len(self.data)


def padded_entry(item, batch_max_length, pad_token_id=PAD_TOKEN_ID) -> list[int]:
    """``item`` with one end-of-text token appended, then pads up to ``batch_max_length`` ids in all.

    >>> padded_entry([5, 6], 6)
    [5, 6, 50256, 50256, 50256, 50256]
    """
    new_item = item + [pad_token_id]  # Add an <|endoftext|> token (a new list: the dataset's stays as it is)
    return new_item + [pad_token_id] * (batch_max_length - len(new_item))


def custom_collate_draft_1(batch, pad_token_id=PAD_TOKEN_ID, device="cpu"):
    """Section 7.3, first draft: the inputs only, padded to the longest entry of the batch.

    The longest entry plus one: every entry gets its end-of-text token, of which the inputs drop the last
    position (it matters to the targets of the next draft)."""
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst = [torch.tensor(padded_entry(item, batch_max_length, pad_token_id)[:-1]) for item in batch]
    return torch.stack(inputs_lst).to(device)  # shape: (batch_size, batch_max_length - 1)


def custom_collate_draft_2(batch, pad_token_id=PAD_TOKEN_ID, device="cpu"):
    """Section 7.3, second draft: the inputs and the targets, the same ids shifted one position left."""
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        padded = padded_entry(item, batch_max_length, pad_token_id)
        inputs_lst.append(torch.tensor(padded[:-1]))  # Truncate the last token for inputs
        targets_lst.append(torch.tensor(padded[1:]))  # Shift +1 to the right for targets
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)


def custom_collate_fn(batch, pad_token_id=PAD_TOKEN_ID, ignore_index=IGNORE_INDEX, allowed_max_length=None,
                      device="cpu"):
    """Listing 7.5: the second draft, with every pad target after the first set to ``ignore_index`` and each
    entry cut to ``allowed_max_length`` tokens if given. The first pad stays a target: it teaches the model to
    end its response with ``<|endoftext|>``."""
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        padded = padded_entry(item, batch_max_length, pad_token_id)
        inputs = torch.tensor(padded[:-1])  # Truncate the last token for inputs
        targets = torch.tensor(padded[1:])  # Shift +1 to the right for targets

        # Replace all but the first padding tokens in targets by ignore_index
        pads = torch.nonzero(targets == pad_token_id).squeeze(1)  # shape: (number of pads,)
        if pads.numel() > 1:
            targets[pads[1:]] = ignore_index

        # Optionally truncate to maximum sequence length
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]

        inputs_lst.append(inputs)
        targets_lst.append(targets)

    # shape: (batch_size, batch_max_length - 1), or allowed_max_length if that is less
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)
