"""The SMS Spam Collection (section 6.2, listings 6.2 and 6.3): reading, balancing, labelling, splitting, writing.

Unlike chapter 5's one text file cut into windows of tokens: a table of short texts, each with a label
("ham" or "spam"). Unlike the book, which holds it in a pandas DataFrame: plain lists of ``(label, text)``
rows, and no pandas at run time. The rows, the draws and the files are pandas' own all the same
(tests/test_ch06_spam_data.py compares them with pandas row by row):

- the file is read with pandas' quoting rules: a text that starts with ``"`` is a quoted field, which
  ends at the next lone ``"`` and may span lines; a ``"`` inside a text is kept as it is;
- ``.sample(k, random_state=123)`` takes the rows that pandas takes, in its order: pandas calls
  ``numpy.random.RandomState(123).choice(n, size=k, replace=False)``;
- the CSV files are written as ``DataFrame.to_csv(path, index=None)`` writes them.

>>> rows = [("ham", "Hi"), ("spam", "WIN cash"), ("ham", "Ok"), ("ham", 'He said "no"')]
>>> balanced = create_balanced_dataset(rows)      # 1 spam, so 1 ham drawn as pandas draws it
>>> balanced, value_counts(balanced)
([('ham', 'Hi'), ('spam', 'WIN cash')], {'ham': 1, 'spam': 1})
>>> encode_labels(balanced)
[(0, 'Hi'), (1, 'WIN cash')]
>>> random_split(encode_labels(rows), 0.5, 0.25)   # shuffled, then 50% / 25% / the rest
([(0, 'He said "no"'), (0, 'Hi')], [(1, 'WIN cash')], [(0, 'Ok')])
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ch02_text.errors import UserInputError
from ch02_text.safe_files import atomic_write_bytes

DATA_FILE = "SMSSpamCollection"  # found like every data file: data/, $LLMS_DATA_DIR, then its public zip
COLUMNS = ("Label", "Text")
LABELS = {"ham": 0, "spam": 1}  # the book's .map({"ham": 0, "spam": 1})
SEED = 123  # the book's random_state


def read_sms_spam(path, hint="give the SMS Spam Collection file as published") -> list[tuple[str, str]]:
    """The book's ``pd.read_csv(path, sep="\\t", header=None, names=["Label", "Text"])`` as ``(label, text)`` rows.

    Blank lines are skipped (as pandas skips them); a line without exactly one tab outside quotes is an error
    (its message ends in ``hint``).
    """
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""), delimiter="\t")
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) != 2:
            raise UserInputError(f"'{path}' line {reader.line_num}: expected a label, a tab and a text, "
                                 f"found {len(row)} fields: {hint}")
        rows.append((row[0], row[1]))
    return rows


def _read_utf8(path) -> str:
    """A file's text as written (no newline translation: a quoted text keeps its line breaks)."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"'{path}' is not UTF-8 (byte {exc.start}): convert it to UTF-8 first") from None


def value_counts(rows) -> dict[str, int]:
    """Rows per label, most frequent first (ties in order of appearance): the book's ``value_counts()``."""
    return dict(Counter(label for label, _ in rows).most_common())


def format_counts(counts: dict, name: str = "Label") -> str:
    """Counts laid out as pandas prints ``value_counts()`` (labels left, counts right).

    >>> print(format_counts({"ham": 4825, "spam": 747}))
    Label
    ham     4825
    spam     747
    """
    label_width = max(len(str(label)) for label in counts)
    count_width = max(len(str(count)) for count in counts.values())
    return "\n".join([name, *(f"{label:<{label_width}}    {count:>{count_width}}" for label, count in counts.items())])


def sample_indices(population: int, size: int, seed: int = SEED) -> list[int]:
    """The positions pandas' ``.sample(size, random_state=seed)`` takes from ``population`` rows, in its order.

    >>> sample_indices(10, 3)   # = pd.Series(range(10)).sample(3, random_state=123).index
    [4, 0, 7]
    """
    if size > population:
        raise UserInputError(f"cannot draw {size} rows without replacement from {population}: "
                             "the data has fewer rows of that label than the sample needs")
    return np.random.RandomState(seed).choice(population, size=size, replace=False).tolist()


def create_balanced_dataset(rows, seed: int = SEED) -> list[tuple[str, str]]:
    """Listing 6.2: as many "ham" rows, drawn at random, as there are "spam" rows, then all "spam" rows."""
    spam = [row for row in rows if row[0] == "spam"]
    ham = [row for row in rows if row[0] == "ham"]
    ham_subset = [ham[i] for i in sample_indices(len(ham), len(spam), seed)]
    return ham_subset + spam


def encode_labels(rows) -> list[tuple[int, str]]:
    """The class labels as integers: "ham" 0, "spam" 1 (the book's ``.map({"ham": 0, "spam": 1})``)."""
    unknown = sorted({label for label, _ in rows} - set(LABELS))
    if unknown:
        raise UserInputError(f"unknown label {unknown[0]!r} in the data: each row's label must be 'ham' or 'spam'")
    return [(LABELS[label], text) for label, text in rows]


def random_split(rows, train_frac: float, validation_frac: float, seed: int = SEED):
    """Listing 6.3: shuffle all rows (pandas' ``sample(frac=1, random_state=123)``), then cut them into
    training, validation and test rows (the test share is what remains)."""
    rows = [rows[i] for i in sample_indices(len(rows), len(rows), seed)]
    train_end = int(len(rows) * train_frac)
    validation_end = train_end + int(len(rows) * validation_frac)
    return rows[:train_end], rows[train_end:validation_end], rows[validation_end:]


def write_csv(rows, path) -> Path:
    """Write rows with a ``Label,Text`` header as ``DataFrame.to_csv(path, index=None)`` does (atomically)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=os.linesep)  # pandas' defaults: minimal quoting, doubled quotes
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def read_split_csv(path) -> list[tuple[int, str]]:
    """The ``(label, text)`` rows of a file written by ``write_csv`` (the book's ``pd.read_csv(csv_file)``)."""
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""))
    header = next(reader, None)
    if header is None or tuple(header) != COLUMNS:
        raise UserInputError(f"'{path}' does not start with the header Label,Text: give a file that "
                             "write_csv wrote (train.csv, validation.csv or test.csv)")
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) != 2 or row[0] not in ("0", "1"):
            raise UserInputError(f"'{path}' line {reader.line_num}: expected a label 0 or 1, a comma and a text")
        rows.append((int(row[0]), row[1]))
    return rows
