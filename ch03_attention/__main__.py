"""``python -m ch03_attention``: walk through chapter 3 and print what the book prints."""

from ch02_text.chapter_runner import chapter_parser, run_walkthrough


def main(argv=None):
    parser = chapter_parser(
        "ch03_attention",
        "Chapter 3 (coding attention mechanisms): runs the chapter's listings in the book's "
        "order, prints the book's tensors and saves image/ch03_attention_weights.png.")
    return run_walkthrough("ch03_attention.walkthrough", parser.parse_args(argv))


if __name__ == "__main__":
    main()
