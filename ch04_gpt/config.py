"""Model configurations: the book's ``GPT_CONFIG_124M`` and the four GPT-2 sizes.

What this adds: one place for the hyper-parameters, presets by name, and a
size/compute estimate per preset.

>>> model_config("gpt2-medium")["n_layers"]
24
>>> model_config("gpt2-small", context_length=256)["context_length"]
256
"""

from __future__ import annotations

import math

from .previous_chapters import UserInputError

GPT_CONFIG_124M = {
    "vocab_size": 50257,     # Vocabulary size
    "context_length": 1024,  # Context length
    "emb_dim": 768,          # Embedding dimension
    "n_heads": 12,           # Number of attention heads
    "n_layers": 12,          # Number of layers
    "drop_rate": 0.1,        # Dropout rate
    "qkv_bias": False,       # Query-Key-Value bias
}

MODEL_PRESETS = {
    "gpt2-small": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}
# The book's spelling of the same presets (chapter 5's model_configs).
BOOK_PRESET_NAMES = {
    "gpt2-small (124M)": "gpt2-small", "gpt2-medium (355M)": "gpt2-medium",
    "gpt2-large (774M)": "gpt2-large", "gpt2-xl (1558M)": "gpt2-xl",
    "124M": "gpt2-small", "355M": "gpt2-medium", "774M": "gpt2-large", "1558M": "gpt2-xl",
}

REQUIRED_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias")
# Options beyond the book, with their defaults.
OPTIONAL_KEYS = {
    "impl": "fast",            # "fast" (fused QKV + SDPA, fused LayerNorm/GELU) or "book" (the book's classes)
    "tie_weights": False,      # share tok_emb.weight with out_head.weight (GPT-2 does)
    "norm_position": "pre",    # "pre" (GPT-2) or "post" (GPT-1: LayerNorm after each shortcut)
    "norm_eps": 1e-5,          # LayerNorm's epsilon (the book's 1e-5; Hugging Face's layer_norm_epsilon)
}


def preset_heads(emb_dim: int) -> int | None:
    """The head count of the GPT-2 preset with this width (None for other widths).

    >>> preset_heads(1024), preset_heads(100)
    (16, None)
    """
    return {p["emb_dim"]: p["n_heads"] for p in MODEL_PRESETS.values()}.get(emb_dim)


def model_config(name: str = "gpt2-small", **overrides) -> dict:
    """``GPT_CONFIG_124M`` with a preset's sizes and any overrides applied."""
    key = BOOK_PRESET_NAMES.get(name, name)
    if key not in MODEL_PRESETS:
        raise UserInputError(f"unknown model preset '{name}': choose one of {', '.join(MODEL_PRESETS)}")
    return validate_config({**GPT_CONFIG_124M, **MODEL_PRESETS[key], **overrides})


SIZE_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers")


def validate_config(cfg: dict) -> dict:
    """Return a full copy of ``cfg`` (optional keys filled in), or raise UserInputError saying what's off.

    >>> validate_config({**GPT_CONFIG_124M, "n_heads": 0})
    Traceback (most recent call last):
    ch02_text.common.UserInputError: model config: n_heads must be a positive integer, got 0
    """
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise UserInputError(f"model config is missing {', '.join(missing)}: start from GPT_CONFIG_124M")
    cfg = {**OPTIONAL_KEYS, **cfg}
    if "attn_impl" in cfg:  # the key's earlier name (checkpoints written before the rename)
        cfg["impl"] = cfg.pop("attn_impl")
    for key in SIZE_KEYS:
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UserInputError(f"model config: {key} must be a positive integer, got {cfg[key]!r}")
    rate = cfg["drop_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and 0 <= rate < 1):
        raise UserInputError(f"model config: drop_rate must be in [0, 1), got {rate!r}")
    if cfg["impl"] not in ("fast", "book"):
        raise UserInputError(f"model config: impl must be 'fast' or 'book', not {cfg['impl']!r}")
    if cfg["norm_position"] not in ("pre", "post"):
        raise UserInputError(f"model config: norm_position must be 'pre' or 'post', not {cfg['norm_position']!r}")
    if not (isinstance(cfg["norm_eps"], float) and 0 < cfg["norm_eps"] < 1):
        raise UserInputError(f"model config: norm_eps must be a small positive number, got {cfg['norm_eps']!r}")
    if cfg["emb_dim"] % cfg["n_heads"]:
        raise UserInputError(f"model config: emb_dim ({cfg['emb_dim']}) must be divisible by "
                             f"n_heads ({cfg['n_heads']})")
    return cfg


def estimate(cfg: dict) -> dict:
    """Parameters, memory and training compute of a config (no model is built).

    Training FLOPs per token follow Kaplan et al. (2020): 6·N for the matmul weights N
    (everything but the embedding look-ups) plus 6·n_layers·context_length·emb_dim for attention.
    """
    cfg = validate_config(cfg)
    d, L, V, T = cfg["emb_dim"], cfg["n_layers"], cfg["vocab_size"], cfg["context_length"]
    qkv_bias = 3 * d if cfg["qkv_bias"] else 0
    per_block = (3 * d * d + qkv_bias) + (d * d + d) + (8 * d * d + 5 * d) + 4 * d  # att, proj, ff, 2 norms
    embeddings = V * d + T * d
    head = 0 if cfg["tie_weights"] else V * d
    params = embeddings + L * per_block + 2 * d + head
    matmul_params = L * per_block + V * d  # the output head is a matmul even when tied
    return {
        "params": params,
        "fp32_bytes": params * 4,
        "bf16_bytes": params * 2,
        "adamw_train_bytes_fp32": params * 16,  # weights + grads + two Adam moments
        "train_flops_per_token": 6 * matmul_params + 6 * L * T * d,
    }
