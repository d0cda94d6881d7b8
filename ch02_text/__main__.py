"""``python -m ch02_text``: walk through chapter 2 and print what the book prints."""

from .chapter_runner import chapter_parser, run_walkthrough


def main(argv=None):
    parser = chapter_parser(
        "ch02_text",
        "Chapter 2 (working with text data): runs the chapter's listings in the book's order "
        "and prints the book's values. Data: data/ or $LLMS_DATA_DIR.", figures=False)
    return run_walkthrough("ch02_text.walkthrough", parser.parse_args(argv))


if __name__ == "__main__":
    main()
