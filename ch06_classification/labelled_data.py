"""Labelled texts of any kind for ``python -m ch06_classification.train --data``: TSV, CSV or JSON lines, any
number of classes, balanced and split as the book balances and splits the SMS Spam Collection.

Unlike ``spam_data.py`` (the book's one file with its two labels "ham" and "spam") and ``dataset.py``'s
``SpamDataset`` (a CSV file written by the walk-through): rows read from the reader's own file, the classes
found in it (sorted by name) or given, and each text kept with its length in tokens, which reading the last
real token or the mean over the real tokens needs (``tail.py``).

>>> rows = [("b", "hi there"), ("a", "ok"), ("b", "yes")]
>>> classes = class_names(rows)
>>> classes, encode(rows, classes)
(['a', 'b'], [(1, 'hi there'), (0, 'ok'), (1, 'yes')])
>>> class Chars:  # a stand-in tokenizer: one id per character
...     encode = staticmethod(lambda text: [ord(c) for c in text])
>>> texts = LabelledTexts(encode(rows, classes), Chars(), pad_token_id=0, max_length=3)
>>> texts[1], texts.truncated                 # "ok" padded to 3 ids, its length 2; "hi there" cut to 3
((tensor([111, 107,   0]), (tensor(0), tensor(2))), 1)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ch02_text.errors import UserInputError

from .spam_data import _read_utf8, read_sms_spam, sample_indices

FORMATS = "TSV (label<TAB>text, as the SMS Spam Collection), CSV with a header naming text and label, or JSON lines"


def read_labelled(path) -> list[tuple[str, str]]:
    """``(label, text)`` rows of a ``.csv`` file (header with ``text`` and ``label`` in any order), a ``.jsonl``
    or ``.json`` file (one ``{"text": ..., "label": ...}`` a line) or else a TSV file (``label<TAB>text``)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--data '{path}' does not exist: give a file of labelled texts ({FORMATS})")
    suffix = path.suffix.lower()
    rows = (_read_csv(path) if suffix == ".csv" else _read_json_lines(path) if suffix in (".jsonl", ".json")
            else read_sms_spam(path, hint=f"give {FORMATS}"))
    if not rows:
        raise UserInputError(f"--data '{path}' holds no labelled texts: give {FORMATS}")
    for label, text in rows:
        if not label.strip() or not text.strip():
            raise UserInputError(f"--data '{path}': the row {(label, text)!r} has an empty label or text: "
                                 "remove it or fill it in")
    return rows


def _read_csv(path) -> list[tuple[str, str]]:
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    if "text" not in header or "label" not in header:
        raise UserInputError(f"--data '{path}': a CSV file needs a header naming the columns text and label "
                             f"(found {','.join(header) or 'nothing'})")
    text_at, label_at = header.index("text"), header.index("label")
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise UserInputError(f"--data '{path}' line {reader.line_num}: {len(row)} fields where the header has "
                                 f"{len(header)}: quote texts that hold commas")
        rows.append((row[label_at], row[text_at]))
    return rows


def _read_json_lines(path) -> list[tuple[str, str]]:
    rows = []
    for number, line in enumerate(_read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--data '{path}' line {number}: not JSON ({exc.msg}): give one "
                                 '{"text": ..., "label": ...} object a line') from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or "label" not in item:
            raise UserInputError(f"--data '{path}' line {number}: expected an object with a string \"text\" and a "
                                 '"label"')
        rows.append((str(item["label"]), item["text"]))
    return rows


def class_names(rows, given: list[str] | None = None, source="--data") -> list[str]:
    """The classes: ``given`` (``--classes``, in its order; every label must be one of them), else the labels
    found, sorted by name. Fewer than two is an error."""
    found = sorted({label for label, _ in rows})
    if given:
        unknown = [label for label in found if label not in given]
        if unknown:
            raise UserInputError(f"{source} has the label {unknown[0]!r}, which --classes {','.join(given)} lacks: "
                                 "add it to --classes or remove its rows")
        found = list(given)
    if len(found) < 2:
        raise UserInputError(f"{source} has one class only ({found[0]!r}): a classifier needs texts of at least "
                             "two labels")
    return found


def encode(rows, classes) -> list[tuple[int, str]]:
    """Each label as its class's index (the book's ``.map({"ham": 0, "spam": 1})`` for any classes)."""
    index = {name: i for i, name in enumerate(classes)}
    return [(index[label], text) for label, text in rows]


def balance(rows, classes, seed: int = 123) -> list[tuple[str, str]]:
    """Listing 6.2 for any classes: every class cut to the smallest one's count by the book's draw
    (``sample_indices``), class after class in ``classes``' order; for "ham" and "spam" it is
    ``create_balanced_dataset``'s result."""
    by_class = [[row for row in rows if row[0] == name] for name in classes]
    smallest = min(len(group) for group in by_class)
    balanced = []
    for group in by_class:
        balanced += group if len(group) == smallest else [group[i] for i in sample_indices(len(group), smallest, seed)]
    return balanced


class LabelledTexts(Dataset):
    """Token ids padded (or cut) to ``max_length`` (None: the longest text's length), each with its label and
    its length in real tokens: items ``(ids, (label, length))``. ``truncated``: how many texts were cut."""

    def __init__(self, rows, tokenizer, pad_token_id, max_length=None):
        encoded = [tokenizer.encode(text) for _, text in rows]
        self.max_length = max((len(ids) for ids in encoded), default=0) if max_length is None else max_length
        self.truncated = sum(len(ids) > self.max_length for ids in encoded)
        encoded = [ids[:self.max_length] for ids in encoded]
        self.lengths = torch.tensor([max(1, len(ids)) for ids in encoded])
        self.ids = torch.tensor([ids + [pad_token_id] * (self.max_length - len(ids)) for ids in encoded],
                                dtype=torch.long).reshape(len(rows), self.max_length)  # (texts, max_length)
        self.labels = torch.tensor([label for label, _ in rows], dtype=torch.long)

    def __getitem__(self, index):
        return self.ids[index], (self.labels[index], self.lengths[index])

    def __len__(self):
        return len(self.labels)


def pad_id(tokenizer) -> int:
    """The tokenizer's own pad token, else its end-of-text token."""
    config = getattr(tokenizer, "config", {}) or {}
    pad = config.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    found = tokenizer.token_id(pad) if pad and hasattr(tokenizer, "token_id") else None
    found = found if found is not None else getattr(tokenizer, "eot_token", None)
    if found is None:
        raise UserInputError("the model's tokenizer has neither a pad nor an end-of-text token to pad texts with: "
                             "start from a model whose tokenizer has one")
    return found
