"""The instruction data (section 7.2): reading the 1,100 entries, the Alpaca prompt, the 85/10/5 split.

Unlike chapter 6's ``spam_data.py`` (a tab-separated file of labelled texts, balanced and shuffled before the
split): a JSON list of ``{"instruction", "input", "output"}`` entries, kept in the file's order and cut into
training, test and validation parts as the book slices them. The file is found like every data file
(``data/``, ``$LLMS_DATA_DIR``, else downloaded from the book's repository into ``data/``).

>>> entry = {"instruction": "Name a color.", "input": "", "output": "Blue."}
>>> print(format_input(entry) + format_response(entry))
Below is an instruction that describes a task. Write a response that appropriately completes the request.
<BLANKLINE>
### Instruction:
Name a color.
<BLANKLINE>
### Response:
Blue.
>>> [len(part) for part in split_data(list(range(1100)))]   # train, test, validation
[935, 110, 55]
"""

from __future__ import annotations

import json

from ch02_text.data_files import find_data_file
from ch02_text.errors import UserInputError

DATA_FILE = "instruction-data.json"  # the book's 1,100 instruction-response pairs
FIELDS = ("instruction", "input", "output")


def load_instruction_data(path=None) -> list[dict]:
    """Listing 7.1: the entries of ``path`` (None: ``instruction-data.json`` found like every data file).

    Unlike the book's ``download_and_load_file``, which downloads into the current folder: chapter 2's
    ``find_data_file`` finds or downloads it; a file that is not a list of entries with the three fields
    is one error line."""
    path = find_data_file(DATA_FILE) if path is None else path
    with open(path, encoding="utf-8") as file:
        try:
            data = json.load(file)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"'{path}' is not JSON ({exc}): give the book's instruction-data.json") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) and set(FIELDS) <= set(e) for e in data):
        raise UserInputError(f"'{path}' is not a JSON list of entries with the fields {', '.join(FIELDS)}: "
                             "give the book's instruction-data.json")
    return data


def format_input(entry) -> str:
    """Listing 7.2: the Alpaca-style prompt (the instruction, then the input when there is one)."""
    instruction_text = (
        f"Below is an instruction that describes a task. "
        f"Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )

    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""

    return instruction_text + input_text


def format_response(entry) -> str:
    """The desired response appended to ``format_input(entry)`` for training (section 7.2)."""
    return f"\n\n### Response:\n{entry['output']}"


def split_data(data, train_fraction=0.85, test_fraction=0.1):
    """Listing 7.3: the first 85% for training, the next 10% for testing, the rest (5%) for validation.

    Returns ``(train_data, test_data, val_data)``, the book's order."""
    train_portion = int(len(data) * train_fraction)  # 85% for training
    test_portion = int(len(data) * test_fraction)  # 10% for testing
    # val_portion = len(data) - train_portion - test_portion: the remaining 5% for validation

    train_data = data[:train_portion]
    test_data = data[train_portion:train_portion + test_portion]
    val_data = data[train_portion + test_portion:]
    return train_data, test_data, val_data
