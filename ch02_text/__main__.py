"""``python -m ch02_text``: walk through chapter 2 and print what the book prints."""

import argparse

from .common import run_walkthrough


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ch02_text",
        description="Chapter 2 (working with text data): runs the chapter's listings in the "
                    "book's order and prints the book's values. Data: data/ or $LLMS_DATA_DIR.",
    )
    args = parser.parse_args(argv)
    return run_walkthrough("ch02_text.walkthrough", args)


if __name__ == "__main__":
    main()
