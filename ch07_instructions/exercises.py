"""The exercises of chapter 7 with runnable solutions: ``python -m ch07_instructions.exercises [--only 7.2]``.

Unlike the walk-through, which fine-tunes once in the book's way: each exercise runs chapter 7's training
command (``python -m ch07_instructions.train``, as a process of its own) with the one thing it changes, and
prints what that command prints (split sizes, losses, the sample answers, the first test answers):

- 7.1 the Phi-3 prompt style (``--prompt-style phi3``) instead of Alpaca's;
- 7.2 the instruction and input masked out of the targets (``--mask-prompt``);
- 7.3 the 52,000 entries of the Alpaca dataset (``--data alpaca_data.json``, when ``data/alpaca_data.json`` is
  found: it is large and never downloaded here; otherwise one line says where to place it);
- 7.4 LoRA instead of full fine-tuning (``--lora-rank 16 --lora-alpha 16``).

They start from GPT-2 medium's weights (``data/gpt2-medium-355M.safetensors`` or ``--gpt2-weights``); without
them each prints one line saying which file to place where. ``--tiny`` runs each from a tiny fresh GPT in
seconds (its numbers are not the book's). Scoring the answers is ``python -m ch07_instructions.evaluate``.

>>> train_options("7.2")
['--mask-prompt']
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from ch02_text.chapter_runner import run_exercises
from ch02_text.cli import add_device_argument
from ch02_text.data_files import find_local_data_file
from ch02_text.option_types import positive_int

from .pretrained import GPT2_WEIGHTS, MISSING_WEIGHTS
from .previous_chapters import GPT_CONFIG_124M, TINY_SIZES, GPTModel, gpt2_weights_path

ALPACA_FILE = "alpaca_data.json"  # github.com/tatsu-lab/stanford_alpaca's 52,002 entries
CHANGES = {"7.1": ["--prompt-style", "phi3"], "7.2": ["--mask-prompt"], "7.3": ["--data"],
           "7.4": ["--lora-rank", "16", "--lora-alpha", "16"]}


def train_options(number) -> list[str]:
    """What exercise ``number`` changes in the training command."""
    options = list(CHANGES[number])
    if number == "7.3":
        options.append(str(find_local_data_file(ALPACA_FILE)))
    return options


def add_arguments(parser):
    parser.add_argument("--epochs", type=positive_int, default=2, help="training epochs (the book's 2)")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="for a quick look: each epoch stops after this many steps")
    parser.add_argument("--max-test", type=positive_int, default=None, help="answer the first N test entries only")
    parser.add_argument("--out-dir", default="checkpoints", help="where each exercise's model and answers go")
    parser.add_argument("--gpt2-weights", default=None, help=f"GPT-2 medium's weights (None: data/{GPT2_WEIGHTS})")
    parser.add_argument("--tiny", action="store_true", help="a tiny fresh GPT, no pretrained weights (seconds)")
    add_device_argument(parser)


def starting_point(args, number) -> list[str] | None:
    """The training command's model options, or None after one line saying what is missing."""
    if args.tiny:
        path = Path(args.out_dir) / "tiny-fresh-gpt.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(123)
        torch.save(GPTModel({**GPT_CONFIG_124M, "drop_rate": 0.0, "qkv_bias": True, **TINY_SIZES}).state_dict(),
                   path)
        return ["--init-from", str(path), "--n-heads", str(TINY_SIZES["n_heads"])]
    weights = gpt2_weights_path(args.gpt2_weights, GPT2_WEIGHTS)
    if weights is None:
        print(f"skipping exercise {number}: {MISSING_WEIGHTS}, or pass --tiny for a tiny fresh GPT")
        return None
    return ["--init-from", str(weights)]


def run_changed(args, number):
    """Chapter 7's training command with the exercise's change; its exit code (None when skipped)."""
    start = starting_point(args, number)
    if start is None:
        return None
    if number == "7.3" and find_local_data_file(ALPACA_FILE) is None:
        print(f"skipping exercise 7.3: {ALPACA_FILE} not found: download it from github.com/tatsu-lab/"
              f"stanford_alpaca and save it as data/{ALPACA_FILE} (or in $LLMS_DATA_DIR)")
        return None
    out = Path(args.out_dir) / f"exercise-{number}"
    argv = [*start, *train_options(number), "--epochs", str(args.epochs), "--out", str(out / "model.pt"),
            "--no-progress", "--device", args.device]
    argv += ["--max-steps", str(args.max_steps)] if args.max_steps else []
    argv += ["--max-test", str(args.max_test)] if args.max_test else []
    print("python -m ch07_instructions.train " + " ".join(argv), flush=True)
    return subprocess.run([sys.executable, "-m", "ch07_instructions.train", *argv]).returncode


def exercise_7_1(args):
    """Changing prompt styles"""
    return run_changed(args, "7.1")


def exercise_7_2(args):
    """Instruction and input masking"""
    return run_changed(args, "7.2")


def exercise_7_3(args):
    """Fine-tuning on the original Alpaca dataset"""
    return run_changed(args, "7.3")


def exercise_7_4(args):
    """Parameter-efficient fine-tuning with LoRA"""
    return run_changed(args, "7.4")


EXERCISES = [("7.1", exercise_7_1), ("7.2", exercise_7_2), ("7.3", exercise_7_3), ("7.4", exercise_7_4)]


def main(argv=None):
    return run_exercises("ch07_instructions", EXERCISES, argv, add_arguments)


if __name__ == "__main__":
    main()
