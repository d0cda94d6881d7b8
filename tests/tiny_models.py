"""Tiny models of every family, built by this project: the helpers the model tests share
(tests/test_ch04_parts.py, tests/test_ch04_lookahead.py, ...)."""

import torch

from ch04_gpt.config import model_config, scaled_config
from ch04_gpt.families import FAMILIES, SMALLEST


def tiny(family, n_layers=3, **changes):
    """A tiny model of ``family``: its smallest preset's parts at width 32, windows of 4, 4 experts."""
    preset = SMALLEST[family] if family != "gpt1" else "gpt2-small"
    extra = {"n_experts": 4, "n_experts_per_token": 2} if FAMILIES[family].get("ff") == "moe" else {}
    return scaled_config(preset, family, emb_dim=32, n_heads=4, n_layers=n_layers, vocab_size=61, context_length=24,
                         sliding_window=4 if "sliding_window" in model_config(preset) and
                         model_config(preset).sliding_window else None, **extra, **changes)


def randomised(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "norm" in name else 0.15))
    return model.eval()
