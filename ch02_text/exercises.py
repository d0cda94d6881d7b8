"""The exercises of chapter 2 with runnable solutions: ``python -m ch02_text.exercises [--only 2.1]``.

Each solution uses the chapter's own code and prints what the book's published solution prints.
"""

from __future__ import annotations

from .chapter_runner import run_exercises
from .data_files import read_data_text
from .dataloader import create_dataloader_v1
from .tokenizers import gpt2_tokenizer


def exercise_2_1(args):
    """Byte pair encoding of unknown words"""
    tokenizer = gpt2_tokenizer()
    integers = tokenizer.encode("Akwirw ier")
    print(integers)
    pieces = [tokenizer.decode([i]) for i in integers]
    for i, piece in zip(integers, pieces):
        print(f"{i} -> {piece}")
    print(tokenizer.decode(integers))
    return integers, pieces


def exercise_2_2(args):
    """Data loaders with different strides and context sizes"""
    raw_text = read_data_text("the-verdict.txt")
    firsts = {}
    for max_length, stride in ((2, 2), (8, 2)):
        dataloader = create_dataloader_v1(raw_text, batch_size=4, max_length=max_length, stride=stride,
                                          shuffle=False)
        x, y = next(iter(dataloader))
        print(f"max_length={max_length}, stride={stride}: inputs\n{x}")
        firsts[max_length] = x
    return firsts


EXERCISES = [("2.1", exercise_2_1), ("2.2", exercise_2_2)]


def main(argv=None):
    return run_exercises("ch02_text", EXERCISES, argv)


if __name__ == "__main__":
    main()
