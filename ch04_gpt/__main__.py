"""``python -m ch04_gpt``: walk through chapter 4 and print what the book prints."""

import argparse

from .previous_chapters import run_walkthrough


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ch04_gpt",
        description="Chapter 4 (a GPT model from scratch): runs the chapter's listings in the "
                    "book's order, prints the book's values, saves image/ch04_gelu_relu.png and "
                    "prints size/compute estimates of the GPT-2 presets.",
    )
    parser.add_argument("--image-dir", default=None,
                        help="folder for the figure (default: the repo's image/)")
    args = parser.parse_args(argv)
    return run_walkthrough("ch04_gpt.walkthrough", args)


if __name__ == "__main__":
    main()
