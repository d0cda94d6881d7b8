"""What the fine-tuning tests share (chapters 6 and 7): tiny GPT-2s of the book's parts with GPT-2's vocabulary,
every parameter random (norms too: defaults would hide a missed part), chapter 6's labelled texts in each file
format, and the classifier command run with its output captured. Chapter 7's start as a file is conftest's
``instruction_pth`` fixture."""

import json

import torch

from ch04_gpt.config import GPT_CONFIG_124M
from ch04_gpt.model import GPTModel
from cli_checks import printed

CLASSIFIER = {**GPT_CONFIG_124M, "emb_dim": 32, "n_layers": 3, "n_heads": 4, "context_length": 128, "drop_rate": 0.0,
              "qkv_bias": True}  # chapter 6's start
INSTRUCTIONS = {**CLASSIFIER, "n_layers": 2, "context_length": 320}  # chapter 7's: room for a prompt and answer
LABELLED = [("pos", "a good day"), ("neg", "bad, bad news"), ("mid", "so so"), ("pos", "great fun"),
            ("neg", "awful"), ("mid", "fine I guess"), ("pos", "lovely"), ("neg", "terrible day")] * 4


def random_book_gpt(cfg, seed=0):
    torch.manual_seed(seed)
    model = GPTModel(cfg, impl="book")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape) * (0.3 if "norm" in name else 0.1) + (1.0 if "scale" in name else 0.0))
    return model


def small_model(seed=0, **changes):
    """Chapter 6's tiny start (``changes`` to its sizes)."""
    return random_book_gpt({**CLASSIFIER, **changes}, seed)


def write_data(tmp_path, kind):
    """``LABELLED`` as a TSV, CSV or JSON-lines file."""
    if kind == "tsv":
        path = tmp_path / "d.tsv"
        path.write_text("".join(f"{label}\t{text}\n" for label, text in LABELLED), encoding="utf-8")
    elif kind == "csv":
        path = tmp_path / "d.csv"
        path.write_text("text,label\n" + "".join(f'"{text}",{label}\n' for label, text in LABELLED), encoding="utf-8")
    else:
        path = tmp_path / "d.jsonl"
        path.write_text("".join(json.dumps({"label": label, "text": text}) + "\n" for label, text in LABELLED),
                        encoding="utf-8")
    return path


def run_cli(argv):
    """What ``python -m ch06_classification.train argv`` prints."""
    from ch06_classification import train

    return printed(train.main, argv)
