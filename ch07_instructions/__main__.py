"""``python -m ch07_instructions``: walk through chapter 7 and print what the book prints."""

from ch02_text.chapter_runner import chapter_parser, check_chapter_options, run_walkthrough
from ch02_text.cli import add_device_argument, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.option_types import positive_int

from .judge import JUDGE_MODEL, OLLAMA_URL

BOOK_EPOCHS = 2


DESCRIPTION = (
    "Chapter 7 (fine-tuning to follow instructions): the book's 1,100 instruction-response pairs in the Alpaca "
    "prompt, split 935 / 110 / 55 and batched by the custom collate function; GPT-2 medium (355M) fine-tuned for "
    "2 epochs, its answers to the 110 test instructions written to instruction-data-with-response.json and scored "
    "by Llama 3 through Ollama when a server answers. Saves image/ch07_loss.png. Without GPT-2 medium's weights "
    "(data/gpt2-medium-355M.safetensors) it starts from chapter 5's model or a fresh GPT-124M.")


def main(argv=None):
    """The chapter's walk-through with the options of ``--help``."""
    parser = chapter_parser("ch07_instructions", DESCRIPTION)
    parser.add_argument("--epochs", type=positive_int, default=BOOK_EPOCHS,
                        help="training epochs (the book's 2); a shorter run's figure goes to --out-dir")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="for a quick look: each epoch stops after this many training steps "
                             "(None: all 116 batches, as the book)")
    parser.add_argument("--max-test", type=positive_int, default=None,
                        help="only the first N test entries get answers (None: all 110, as the book)")
    add_device_argument(parser)
    parser.add_argument("--out-dir", default="checkpoints",
                        help="folder for instruction-data-with-response.json and the fine-tuned model "
                             "(gpt2-medium355M-sft.pth); chapter 5's model.pth is looked for here when GPT-2 "
                             "medium's weights are missing")
    parser.add_argument("--gpt2-weights", default=None,
                        help="GPT-2 model.safetensors to start from "
                             "(None: data/gpt2-medium-355M.safetensors if present)")
    parser.add_argument("--tiny", action="store_true",
                        help="for tests and quick looks: a tiny GPT (2 layers of width 32) freshly initialised "
                             "instead of GPT-2 medium, no pretrained weights: the whole chapter in seconds")
    parser.add_argument("--ollama-url", default=OLLAMA_URL,
                        help="Ollama's chat endpoint for section 7.8's scoring (skipped when nothing answers there)")
    parser.add_argument("--judge-model", default=JUDGE_MODEL,
                        help="the model the Ollama server scores with (the book's llama3; phi3 needs less memory)")
    args = parser.parse_args(argv)
    if args.image_dir is None and (args.epochs != BOOK_EPOCHS or args.max_steps is not None or args.tiny):
        args.image_dir = args.out_dir  # a shorter run's figure must not replace the book's in image/
    with cli_errors():
        check_options(args)
    return run_walkthrough("ch07_instructions.walkthrough", args)


def check_options(args) -> None:
    """What the walk-through would find wrong only after minutes of work, found now."""
    check_chapter_options(args, weights_hint="see ch07_instructions/README.md")
    if args.gpt2_weights is not None and args.tiny:
        raise UserInputError("--tiny builds a fresh tiny GPT and reads no weights: leave out --gpt2-weights or --tiny")
    if not args.ollama_url.startswith(("http://", "https://")):
        raise UserInputError(f"--ollama-url '{args.ollama_url}' is not an http:// or https:// URL: give one such "
                             f"as {OLLAMA_URL}")


if __name__ == "__main__":
    main()
