"""``python -m ch05_pretraining``: walk through chapter 5 and print what the book prints."""

import argparse

from .previous_chapters import add_device_argument, chapter_parser, run_walkthrough


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv=None):
    parser = chapter_parser(
        "ch05_pretraining",
        "Chapter 5 (pretraining on unlabeled data): the book's training run on the-verdict "
        "(GPT-124M, context 256, 10 epochs), decoding strategies, saving and loading. "
        "Saves image/ch05_loss.png and image/ch05_temperature.png.")
    parser.add_argument("--epochs", type=positive_int, default=10,
                        help="training epochs (default: the book's 10; 1 for a quick walk-through)")
    add_device_argument(parser)
    parser.add_argument("--out-dir", default="checkpoints",
                        help="folder for model.pth and model_and_optimizer.pth (default: checkpoints/)")
    parser.add_argument("--gpt2-weights", default=None,
                        help="GPT-2 model.safetensors for section 5.5 "
                             "(default: data/gpt2-small-124M.safetensors if present)")
    args = parser.parse_args(argv)
    return run_walkthrough("ch05_pretraining.walkthrough", args)


if __name__ == "__main__":
    main()
