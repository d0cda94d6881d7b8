"""Token files for corpora too big for memory: write once, stream windows through ``numpy.memmap``.

What this adds over chapter 2's ``GPTDatasetV1`` (which tokenizes the whole text into
Python lists): a corpus is tokenized once into ``NAME.bin`` (uint16 ids, each document
followed by the tokenizer's end-of-text token) with a small ``NAME.json`` header that
holds the tokenizer itself; training reads only the windows it samples, straight from disk.

Header::

    {"format": "llms-token-file", "version": 1, "tokenizer": {"format": "gpt2"}, "dtype": "uint16",
     "count": 5146, "files": [{"name": "the-verdict.txt", "tokens": 5146}],
     "split": {"train": [0, 4631], "val": [4631, 5146]}}

>>> # ds = TokenWindows.of_split(TokenFile("data/verdict.bin"), "train", context_length=256)
>>> # x, y = ds[0]      # two int64 tensors of 256 ids, y shifted by one
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ch02_text.data_files import find_data_file, read_text_file, resolve_input
from ch02_text.errors import UserInputError
from ch02_text.safe_files import atomic_write_bytes, atomic_writer
from ..previous_chapters import (
    choose_tokenizer, describe_tokenizer, names_tokenizer, tokenizer_from_dict, tokenizer_to_dict,
)

FORMAT = "llms-token-file"
VERSION = 1
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


def header_path(bin_path) -> Path:
    return Path(bin_path).with_suffix(".json")


def write_token_file(out, arrays, names, val_fraction=0.1, dtype="uint16", tokenizer=None,
                     text_tokens=None) -> dict:
    """Write token arrays (one per document) to ``out`` (.bin) + header (.json), atomically.

    Both files are written to temp files first and renamed only when both are complete, so
    a failure leaves neither. ``tokenizer``: its dict form (``tokenizer_to_dict``; None =
    GPT-2's), stored whole in the header. ``text_tokens`` (optional): how many of the tokens
    are text rather than separators; a corpus without any is refused.
    """
    tokenizer = tokenizer or {"format": "gpt2"}
    out = Path(out)
    np_dtype = DTYPES[dtype]
    limit = np.iinfo(np_dtype).max
    count = sum(len(arr) for arr in arrays)
    if count == 0 or text_tokens == 0:
        raise UserInputError("the input holds no text to tokenize: check --input (the files are empty)")
    n_val = int(round(count * val_fraction))
    if n_val == 0 or n_val == count:  # checked before anything (a folder included) is written
        what = "validation" if n_val == 0 else "training"
        raise UserInputError(f"--val-fraction {val_fraction} leaves the {what} split of {count:,} tokens "
                             "empty, and train needs both: give a fraction between them")
    for name, arr in zip(names, arrays):
        if len(arr) and int(arr.max()) > limit:
            raise UserInputError(f"token id {int(arr.max())} from '{name}' does not fit in {dtype} (max {limit}): "
                                 "use --dtype uint32")
    files = []
    hpath = header_path(out)
    header_renamed = False
    try:
        with atomic_writer(out) as f:
            for name, arr in zip(names, arrays):
                f.write(np.asarray(arr, dtype=np_dtype).tobytes())
                files.append({"name": name, "tokens": int(len(arr))})
            header = {"format": FORMAT, "version": VERSION, "tokenizer": tokenizer, "dtype": dtype,
                      "count": count, "files": files,
                      "split": {"train": [0, count - n_val], "val": [count - n_val, count]}}
            atomic_write_bytes(hpath, json.dumps(header, indent=1).encode("utf-8"))
            header_renamed = True
        # leaving the block renamed the token file: both files are in place
    except BaseException:
        if header_renamed:  # the token file's rename failed after the header's: take the header back
            hpath.unlink(missing_ok=True)
        raise
    return header


class TokenFile:
    """A prepared ``.bin`` token file, opened read-only as a memmap (nothing is loaded).

    Checked when opened: header format, file size, split bounds, and (with ``vocab_size``)
    that every id is below the vocabulary size, so a bad file fails before training starts.
    """

    def __init__(self, path, vocab_size: int | None = None):
        self.path = Path(path)
        hpath = header_path(self.path)
        if self.path.is_dir():
            raise UserInputError(f"token file '{self.path}' is a directory: give the .bin file")
        if not self.path.is_file() or not hpath.is_file():
            raise UserInputError(f"token file '{self.path}' or its header '{hpath.name}' is missing: "
                                 "create them with python -m ch05_pretraining.prepare")
        try:
            self.header = json.loads(hpath.read_text(encoding="utf-8"))
            ok = self.header.get("format") == FORMAT and self.header.get("version") == VERSION
            dtype = DTYPES[self.header["dtype"]]
            count = int(self.header["count"])
            splits = {name: self.split(name) for name in ("train", "val")}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise UserInputError(f"header '{hpath}' is damaged or of another version: prepare the data again")
        for name, (start, end) in splits.items():
            if not 0 <= start <= end <= count:
                raise UserInputError(f"header '{hpath}': the {name} split [{start}, {end}) lies outside the "
                                     f"file's {count} tokens: prepare the data again")
        if self.path.stat().st_size != count * np.dtype(dtype).itemsize:
            raise UserInputError(f"token file '{self.path}' does not match its header (truncated?): prepare it again")
        self.tokens = np.memmap(self.path, dtype=dtype, mode="r", shape=(count,))
        self.tokenizer = tokenizer_from_dict(self.header.get("tokenizer", "gpt2"), f"the tokenizer in '{hpath}'")
        self.check_ids(self.tokenizer.n_vocab if vocab_size is None else vocab_size)

    def check_ids(self, vocab_size: int, chunk: int = 1 << 24) -> None:
        """Refuse a file holding an id >= ``vocab_size`` (read in chunks: the file may exceed memory)."""
        top = max((int(self.tokens[i:i + chunk].max()) for i in range(0, len(self.tokens), chunk)), default=0)
        if top >= vocab_size:
            raise UserInputError(
                f"token file '{self.path}' holds token id {top}, but the tokenizer has {vocab_size} ids: "
                "prepare it with the tokenizer you train with")

    def split(self, name: str) -> tuple[int, int]:
        start, end = self.header["split"][name]
        return int(start), int(end)


class TokenWindows(Dataset):
    """Windows of ``context_length`` tokens (and the shifted targets) from ``tokens[start:end]``.

    Window ``i`` starts at ``start + i * stride``: with ``stride = context_length`` the same
    windows as the book's ``GPTDatasetV1``. ``tokens`` is a numpy array or memmap; shuffle
    the DataLoader for random windows.
    """

    def __init__(self, tokens, start: int, end: int, context_length: int, stride: int | None = None):
        self.tokens, self.start, self.end = tokens, start, end
        self.context_length = context_length
        self.stride = stride or context_length
        n = self.end - self.start - context_length  # the last window needs one extra target token
        self.n_windows = 0 if n <= 0 else (n - 1) // self.stride + 1

    def __len__(self):
        return self.n_windows

    def __getitem__(self, i):
        if not 0 <= i < self.n_windows:
            raise IndexError(i)
        a = self.start + i * self.stride
        chunk = torch.from_numpy(self.tokens[a:a + self.context_length + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]

    @classmethod
    def of_split(cls, token_file: TokenFile, split: str, context_length: int) -> "TokenWindows":
        """The windows of a token file's ``train`` or ``val`` split, read from disk as sampled."""
        return cls(token_file.tokens, *token_file.split(split), context_length)


def load_datasets(data, tokenizer="gpt2", context_length=256, train_ratio=0.9, stride=None, saved_tokenizer=None,
                  tokenizer_given=False):
    """(path, tokenizer, train windows, val windows) from a prepared .bin token file (which brings
    its tokenizer) or a UTF-8 text file (the book's 90/10 character split, tokenized here).

    ``data`` None: the-verdict.txt; ``tokenizer``: a name or file for ``choose_tokenizer``
    (``tokenizer_given``: it was asked for, so a token file made with another one is refused);
    ``stride``: of the training windows (None: the book's non-overlapping ones);
    ``saved_tokenizer``: a resumed checkpoint's, which the data must have been made with.
    """
    if data and Path(data).suffix == ".bin":
        return _token_file_datasets(data, tokenizer, context_length, stride, saved_tokenizer, tokenizer_given)
    path = resolve_input(data) if data else find_data_file("the-verdict.txt")
    text = read_text_file(path)
    tok = tokenizer_from_dict(saved_tokenizer) if saved_tokenizer is not None else choose_tokenizer(tokenizer, text)
    split_idx = int(train_ratio * len(text))
    windows = {}
    for name, part in (("training", text[:split_idx]), ("validation", text[split_idx:])):
        ids = np.array(tok.encode(part, allowed_special="all"), dtype=np.int64)
        windows[name] = TokenWindows(ids, 0, len(ids), context_length, stride if name == "training" else None)
        if len(ids) < context_length + 1:
            what = "is empty" if len(ids) == 0 else f"has {len(ids)} tokens"
            raise UserInputError(
                f"the {name} split of '{path.name}' {what}, but --context-length {context_length} needs "
                f"at least {context_length + 1}: lower --context-length, change --train-ratio or use more text")
    return path, tok, windows["training"], windows["validation"]


def _token_file_datasets(data, tokenizer, context_length, stride, saved_tokenizer, tokenizer_given):
    token_file = TokenFile(data)
    tok = token_file.tokenizer
    if tokenizer_given and not names_tokenizer(tokenizer, tok):
        raise UserInputError(f"--tokenizer {tokenizer} differs from the tokenizer that '{data}' was "
                             f"prepared with ({describe_tokenizer(tok)}): leave --tokenizer out")
    if saved_tokenizer is not None and tokenizer_to_dict(tok) != saved_tokenizer:
        raise UserInputError(f"'{data}' was prepared with another tokenizer than the checkpoint's")
    splits = {"training": "train", "validation": "val"}
    windows = {name: TokenWindows(token_file.tokens, *token_file.split(split), context_length,
                                  stride if name == "training" else None)
               for name, split in splits.items()}
    for name, ds in windows.items():
        if len(ds) == 0:
            start, end = token_file.split(splits[name])
            raise UserInputError(
                f"the {name} split of '{data}' has {end - start} tokens, too few for one window of "
                f"--context-length {context_length}: lower it or prepare with another --val-fraction")
    return Path(data), tok, windows["training"], windows["validation"]
