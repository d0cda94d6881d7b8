"""``python -m ch06_classification``: walk through chapter 6 and print what the book prints."""

from ch02_text.chapter_runner import chapter_parser, check_chapter_options, run_walkthrough
from ch02_text.cli import add_device_argument, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.option_types import positive_int

BOOK_EPOCHS = 5


DESCRIPTION = (
    "Chapter 6 (fine-tuning for classification): the book's spam classifier. Balances and splits the SMS "
    "Spam Collection, gives GPT-2 small (124M) a two-class head and fine-tunes its last block for 5 epochs, "
    "then classifies two new texts. Saves image/ch06_loss.png and image/ch06_accuracy.png. Without GPT-2's "
    "weights (data/gpt2-small-124M.safetensors) it starts from chapter 5's model or a fresh GPT-124M.")


def main(argv=None, walkthrough="ch06_classification.walkthrough", prog="ch06_classification",
         description=DESCRIPTION):
    """The chapter's walk-through (and appendix E's, ``lora.py``, with the same options)."""
    parser = chapter_parser(prog, description)
    parser.add_argument("--epochs", type=positive_int, default=BOOK_EPOCHS,
                        help="training epochs (the book's 5); a shorter run's figures go to --out-dir")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="for a quick look: each epoch stops after this many training steps "
                             "(None: all 130 batches, as the book)")
    add_device_argument(parser)
    parser.add_argument("--out-dir", default="checkpoints",
                        help="folder for train.csv, validation.csv, test.csv and review_classifier.pth; "
                             "chapter 5's model.pth is looked for here when GPT-2's weights are missing")
    parser.add_argument("--gpt2-weights", default=None,
                        help="GPT-2 model.safetensors to start from "
                             "(None: data/gpt2-small-124M.safetensors if present)")
    parser.add_argument("--tiny", action="store_true",
                        help="for tests and quick looks: a tiny GPT (2 layers of width 32) freshly initialised "
                             "instead of GPT-124M, no pretrained weights: the whole chapter in seconds")
    args = parser.parse_args(argv)
    if args.image_dir is None and (args.epochs != BOOK_EPOCHS or args.max_steps is not None or args.tiny):
        args.image_dir = args.out_dir  # a shorter run's figures must not replace the book's in image/
    with cli_errors():
        check_options(args)
    return run_walkthrough(walkthrough, args)


def check_options(args) -> None:
    """What the walk-through would find wrong only after minutes of work, found now."""
    check_chapter_options(args, weights_hint="see ch06_classification/README.md")
    if args.gpt2_weights is not None and args.tiny:
        raise UserInputError("--tiny builds a fresh tiny GPT and reads no weights: leave out --gpt2-weights or --tiny")


if __name__ == "__main__":
    main()
