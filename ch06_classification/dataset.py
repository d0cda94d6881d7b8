"""Listing 6.4: ``SpamDataset``, one padded row of token ids and one class label per text message.

Unlike chapter 2's ``GPTDatasetV1``, which cuts one long text into windows whose targets are the next
tokens: each text message is one example, its target one class label (0 "not spam", 1 "spam"). Texts
differ in length, so each is padded with ``<|endoftext|>`` (id 50256) to the longest training text (or
cut to ``max_length``), which lets a batch stack them into one tensor.

>>> import pathlib, tempfile
>>> from ch06_classification.spam_data import write_csv
>>> path = write_csv([(1, "WIN"), (0, "ok")], pathlib.Path(tempfile.mkdtemp()) / "train.csv")
>>> class Chars:  # a stand-in tokenizer: one id per character
...     encode = staticmethod(lambda text: [ord(c) for c in text])
>>> data = SpamDataset(path, Chars(), pad_token_id=0)
>>> data.max_length, data[1]       # "ok" padded to the 3 tokens of "WIN"
(3, (tensor([111, 107,   0]), tensor(0)))
>>> SpamDataset(path, Chars(), max_length=2)[0]   # cut to max_length
(tensor([87, 73]), tensor(1))
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ch02_text.data_files import find_data_file

from .previous_chapters import gpt2_tokenizer
from .spam_data import (
    DATA_FILE, create_balanced_dataset, encode_labels, random_split, read_sms_spam, read_split_csv, write_csv,
)

PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>


class SpamDataset(Dataset):
    """Listing 6.4: the texts of a ``Label,Text`` CSV file as token ids padded to one length, with their labels.

    ``max_length`` None: the longest text's length (the training set's; the book passes it on to the
    validation and test sets, whose longer texts are then cut to it).
    """

    def __init__(self, csv_file, tokenizer, max_length=None, pad_token_id=PAD_TOKEN_ID):
        self.data = read_split_csv(csv_file)  # [(label, text)], the book's pd.read_csv(csv_file)

        # Pre-tokenize texts
        self.encoded_texts = [tokenizer.encode(text) for _, text in self.data]

        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            self.max_length = max_length
            # Truncate sequences if they are longer than max_length
            self.encoded_texts = [encoded_text[:self.max_length] for encoded_text in self.encoded_texts]

        # Pad sequences to the longest sequence
        self.encoded_texts = [
            encoded_text + [pad_token_id] * (self.max_length - len(encoded_text))
            for encoded_text in self.encoded_texts
        ]

    def __getitem__(self, index):
        encoded = self.encoded_texts[index]
        label = self.data[index][0]
        return torch.tensor(encoded, dtype=torch.long), torch.tensor(label, dtype=torch.long)

    def __len__(self):
        return len(self.data)

    def _longest_encoded_length(self):
        return max((len(encoded_text) for encoded_text in self.encoded_texts), default=0)


def spam_datasets(out_dir, max_length=None):
    """Listings 6.1-6.4 as the walk-through runs them: the balanced splits written to ``out_dir`` and read back
    as three ``SpamDataset``; ``max_length`` None pads to the longest training text (the chapter's)."""
    rows = encode_labels(create_balanced_dataset(read_sms_spam(find_data_file(DATA_FILE))))
    csvs = [write_csv(part, Path(out_dir) / f"{name}.csv")
            for part, name in zip(random_split(rows, 0.7, 0.1), ("train", "validation", "test"))]
    tokenizer = gpt2_tokenizer()
    train_dataset = SpamDataset(csvs[0], tokenizer, max_length=max_length)
    return (train_dataset, *(SpamDataset(csv, tokenizer, max_length=train_dataset.max_length) for csv in csvs[1:]))


def spam_loaders(datasets, batch_size=8):
    """Listing 6.5's loaders: the training one shuffled and dropping its last partial batch."""
    torch.manual_seed(123)
    train_loader = DataLoader(datasets[0], batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    return (train_loader, *(DataLoader(d, batch_size=batch_size, num_workers=0, drop_last=False)
                            for d in datasets[1:]))
