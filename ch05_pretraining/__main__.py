"""``python -m ch05_pretraining``: walk through chapter 5 and print what the book prints."""

from ch02_text.chapter_runner import chapter_parser, check_chapter_options, run_walkthrough
from ch02_text.cli import add_device_argument, cli_errors
from ch02_text.option_types import positive_int

BOOK_EPOCHS = 10


def main(argv=None):
    parser = chapter_parser(
        "ch05_pretraining",
        "Chapter 5 (pretraining on unlabeled data): the book's training run on the-verdict "
        "(GPT-124M, context 256, 10 epochs), decoding strategies, saving and loading. "
        "Saves image/ch05_loss.png and image/ch05_temperature.png.")
    parser.add_argument("--epochs", type=positive_int, default=BOOK_EPOCHS,
                        help="training epochs (the book's 10; 1 for a quick walk-through, whose figures go "
                             "to --out-dir so image/ keeps the book's)")
    add_device_argument(parser)
    parser.add_argument("--out-dir", default="checkpoints",
                        help="folder for model.pth and model_and_optimizer.pth")
    parser.add_argument("--gpt2-weights", default=None,
                        help="GPT-2 model.safetensors for section 5.5 "
                             "(None: data/gpt2-small-124M.safetensors if present)")
    args = parser.parse_args(argv)
    if args.image_dir is None and args.epochs != BOOK_EPOCHS:
        args.image_dir = args.out_dir  # a shorter run's figures must not replace the book's in image/
    with cli_errors():
        check_chapter_options(args)
    return run_walkthrough("ch05_pretraining.walkthrough", args)


if __name__ == "__main__":
    main()
