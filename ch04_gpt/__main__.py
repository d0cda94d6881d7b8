"""``python -m ch04_gpt``: walk through chapter 4 and print what the book prints."""

from ch02_text.chapter_runner import chapter_parser, run_walkthrough


def main(argv=None):
    parser = chapter_parser(
        "ch04_gpt",
        "Chapter 4 (a GPT model from scratch): runs the chapter's listings in the book's order, "
        "prints the book's values, saves image/ch04_gelu_relu.png and prints size/compute "
        "estimates of the GPT-2 presets.")
    return run_walkthrough("ch04_gpt.walkthrough", parser.parse_args(argv))


if __name__ == "__main__":
    main()
