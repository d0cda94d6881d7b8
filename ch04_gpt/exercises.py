"""The exercises of chapter 4 with runnable solutions: ``python -m ch04_gpt.exercises [--only 4.2]``.

Each solution uses the chapter's own code and prints what the book's published solution prints.
Exercise 4.2 counts with ``estimate`` (the same numbers as building the model, tested), so it
needs neither the 6.5 GB nor the minute that building gpt2-xl takes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ch02_text.chapter_runner import run_exercises

from .config import BOOK_PRESET_NAMES, GPT_CONFIG_124M, MODEL_PRESETS, estimate, model_config
from .model import GPTModel, TransformerBlock


def exercise_4_1(args):
    """Number of parameters in feed forward and attention modules"""
    block = TransformerBlock(GPT_CONFIG_124M)
    ff = sum(p.numel() for p in block.ff.parameters())
    att = sum(p.numel() for p in block.att.parameters())
    print(f"Total number of parameters in feed forward module: {ff:,}")
    print(f"Total number of parameters in attention module: {att:,}")
    return ff, att


def exercise_4_2(args):
    """Initializing larger GPT models"""
    sizes = {}
    book_names = {preset: name for name, preset in BOOK_PRESET_NAMES.items() if "(" in name}  # "gpt2-small (124M)"
    for name in MODEL_PRESETS:
        cfg = model_config(name, context_length=GPT_CONFIG_124M["context_length"])
        counts = estimate(cfg)
        tied = estimate({**cfg, "tie_weights": True})["params"]
        size_mb = counts["fp32_bytes"] / (1024 * 1024)
        print(f"\n\n{book_names[name]}:")
        print(f"Total number of parameters: {counts['params']:,}")
        print(f"Number of trainable parameters considering weight tying: {tied:,}")
        print(f"Total size of the model: {size_mb:.2f} MB")
        sizes[name] = (counts["params"], tied, round(size_mb, 2))
    return sizes


class GPTModelSeparateDropout(GPTModel):
    """Exercise 4.3: ``GPTModel`` with one dropout rate each for the embeddings, the shortcut
    connections and the attention weights (``drop_rate_emb``, ``drop_rate_shortcut``, ``drop_rate_attn``)."""

    DROPOUT_KEYS = ("drop_rate_emb", "drop_rate_shortcut", "drop_rate_attn")

    def __init__(self, cfg, impl=None):
        architecture = {k: v for k, v in cfg.items() if k not in self.DROPOUT_KEYS}  # the rest is ModelConfig's
        super().__init__({**architecture, "drop_rate": cfg["drop_rate_emb"]}, impl=impl)
        self.drop_emb.p = cfg["drop_rate_emb"]
        for block in self.trf_blocks:
            block.drop_shortcut.p = cfg["drop_rate_shortcut"]
            if isinstance(block.att.dropout, nn.Dropout):  # the book's MultiHeadAttention
                block.att.dropout.p = cfg["drop_rate_attn"]
            else:  # FastMultiHeadAttention passes a rate to scaled_dot_product_attention
                block.att.dropout = cfg["drop_rate_attn"]


def exercise_4_3(args):
    """Using separate dropout parameters"""
    cfg = {**GPT_CONFIG_124M, "drop_rate_emb": 0.1, "drop_rate_shortcut": 0.2, "drop_rate_attn": 0.3}
    torch.manual_seed(123)
    model = GPTModelSeparateDropout(cfg, impl="book")
    rates = {"embedding": model.drop_emb.p, "shortcut": model.trf_blocks[0].drop_shortcut.p,
             "attention": model.trf_blocks[0].att.dropout.p}
    print(", ".join(f"{k} dropout {v}" for k, v in rates.items()))
    logits = model(torch.tensor([[6109, 3626, 6100, 345]]))
    print("output shape:", logits.shape)
    return rates


EXERCISES = [("4.1", exercise_4_1), ("4.2", exercise_4_2), ("4.3", exercise_4_3)]


def main(argv=None):
    return run_exercises("ch04_gpt", EXERCISES, argv)


if __name__ == "__main__":
    main()
