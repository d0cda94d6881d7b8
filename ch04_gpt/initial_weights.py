"""Initial weights: the book's (PyTorch's defaults), GPT-2's, or each family's reference implementation's.

Unlike the book, which keeps whatever ``nn.Linear`` and ``nn.Embedding`` start with: a model that ties its
output head to the embedding starts, under PyTorch's N(0, 1) embedding, with huge logits (a first loss near
60-80 instead of ln(vocab_size)). GPT-2 and nanoGPT draw N(0, 0.02) and scale the projections that write
into the residual stream; the open-weight families' reference code (transformers' ``_init_weights``) draws
every linear layer and embedding from N(0, initializer_range), zeroes the biases and leaves each norm at its
identity. ``initialise(model, "auto")`` picks the book's for the book's GPTs and the family's own for the rest.

>>> from ch04_gpt.config import model_config
>>> from ch04_gpt.model import GPTModel
>>> llama = GPTModel(model_config("llama-3.2-1b", vocab_size=50, emb_dim=16, n_heads=4, n_kv_heads=2,
...                               hidden_dim=32, n_layers=2))
>>> round(initialise(llama, "auto").tok_emb.weight.std().item(), 2), initial_weights_name(llama.cfg, "auto")
(0.02, 'family')
"""

from __future__ import annotations

import torch.nn as nn

from ch02_text.errors import UserInputError

from .families import FAMILY_SPECS
from .layers import LayerNorm
from .norms import RMSNorm

INITS = ("auto", "book", "gpt2", "family")
BOOK_FAMILIES = ("gpt2", "gpt1")  # the book's GPTs keep the book's initial weights by default


def init_gpt2_weights(model: nn.Module) -> nn.Module:
    """Re-initialise ``model`` the way GPT-2 (and nanoGPT) do; the book keeps PyTorch's defaults.

    Linear and embedding weights ~ N(0, 0.02), biases 0, and the projections that write into the
    residual stream (attention output, the feed-forward's last layer: each block marks them) ~
    N(0, 0.02 / sqrt(2 * n_layers)). With a tied output head PyTorch's N(0, 1) embedding makes the first
    logits huge (a first loss near 80 instead of ln(vocab_size)); this init starts near ln(vocab_size).

    >>> from ch04_gpt.config import GPT_CONFIG_124M
    >>> from ch04_gpt.model import GPTModel
    >>> cfg = {**GPT_CONFIG_124M, "vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2,
    ...        "n_layers": 2, "tie_weights": True}
    >>> round(init_gpt2_weights(GPTModel(cfg)).tok_emb.weight.std().item(), 2)
    0.02
    """
    residual_std = 0.02 / (2 * model.cfg.n_layers) ** 0.5
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = residual_std if getattr(module, "writes_residual", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    return model


def init_family_weights(model: nn.Module, std: float | None = None) -> nn.Module:
    """Re-initialise ``model`` as its family's reference implementation does: every linear layer and embedding
    N(0, std) (``std``: the family's ``initializer_range``), biases 0, norms at their identity (weight 1, or 0
    for Gemma's ``1 + weight``; LayerNorm's shift 0)."""
    std = FAMILY_SPECS[model.cfg.family].initializer_range if std is None else std
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.constant_(module.weight, module.init_value)
        elif isinstance(module, LayerNorm):  # the book's and the fused one
            nn.init.ones_(module.scale)
            nn.init.zeros_(module.shift)
    return model


def initial_weights_name(cfg, how: str = "auto") -> str:
    """What ``how`` means for a model of ``cfg``: "auto" is the book's for GPT-2/GPT-1, the family's otherwise."""
    if how not in INITS:
        raise UserInputError(f"--init must be one of {', '.join(INITS)}, not {how!r}")
    if how == "auto":
        return "book" if cfg.family in BOOK_FAMILIES else "family"
    return how


def initialise(model: nn.Module, how: str = "auto") -> nn.Module:
    """``model`` with the initial weights ``how`` names (see ``initial_weights_name``); "book" changes nothing."""
    name = initial_weights_name(model.cfg, how)
    if name == "gpt2":
        return init_gpt2_weights(model)
    if name == "family":
        return init_family_weights(model)
    return model
