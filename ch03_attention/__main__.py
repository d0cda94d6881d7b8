"""``python -m ch03_attention``: walk through chapter 3 and print what the book prints."""

import argparse

from ch02_text.common import run_walkthrough


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ch03_attention",
        description="Chapter 3 (coding attention mechanisms): runs the chapter's listings in the "
                    "book's order, prints the book's tensors and saves "
                    "image/ch03_attention_weights.png.",
    )
    parser.add_argument("--image-dir", default=None,
                        help="folder for the figure (default: the repo's image/)")
    args = parser.parse_args(argv)
    return run_walkthrough("ch03_attention.walkthrough", args)


if __name__ == "__main__":
    main()
