"""Chapter 4 GPT model: transformer blocks stacked between embeddings and an output head.

What this adds over chapter 3: the whole GPT architecture. ``GPTModel(cfg)`` follows
the book (module creation order and RNG use identical) with options beyond it:
``impl`` ("fast", the default: fused QKV + SDPA attention and fused LayerNorm/GELU
kernels; "book": the book's own classes from chapters 3 and 4, for its exact numbers),
``tie_weights`` (output head shares the token embedding) and ``norm_position``
("pre" = GPT-2, "post" = GPT-1). ``forward`` also accepts a ``KVCache``.

>>> cfg = {**GPT_CONFIG_124M, "vocab_size": 100, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2}
>>> GPTModel(cfg)(torch.tensor([[1, 2, 3]])).shape
torch.Size([1, 3, 100])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import GPT_CONFIG_124M, validate_config  # noqa: F401 (GPT_CONFIG_124M for the doctest)
from .kv_cache import KVCache
from .layers import NORM_CLASSES, FeedForward
from .previous_chapters import FastMultiHeadAttention, MultiHeadAttention

ATTENTION_CLASSES = {"fast": FastMultiHeadAttention, "book": MultiHeadAttention}


def make_norm(cfg):
    """The LayerNorm of ``cfg["impl"]`` with ``cfg["norm_eps"]`` (the book's 1e-5 by default)."""
    norm = NORM_CLASSES[cfg["impl"]](cfg["emb_dim"])
    norm.eps = cfg["norm_eps"]
    return norm


class TransformerBlock(nn.Module):
    """Listing 4.6: attention and feed-forward, each with LayerNorm, dropout and a shortcut."""

    def __init__(self, cfg):
        super().__init__()
        cfg = validate_config(cfg)
        self.att = ATTENTION_CLASSES[cfg["impl"]](
            d_in=cfg["emb_dim"],
            d_out=cfg["emb_dim"],
            context_length=cfg["context_length"],
            num_heads=cfg["n_heads"],
            dropout=cfg["drop_rate"],
            qkv_bias=cfg["qkv_bias"])
        self.ff = FeedForward(cfg)
        self.norm1 = make_norm(cfg)
        self.norm2 = make_norm(cfg)
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])
        self.pre_norm = cfg["norm_position"] == "pre"

    def attend(self, x, kv_cache=None):
        return self.att(x) if kv_cache is None else self.att(x, kv_cache=kv_cache)

    def forward(self, x, kv_cache=None):
        if not self.pre_norm:  # GPT-1: normalise after adding the shortcut
            x = self.norm1(x + self.drop_shortcut(self.attend(x, kv_cache)))
            return self.norm2(x + self.drop_shortcut(self.ff(x)))

        # Shortcut connection for attention block
        shortcut = x
        x = self.norm1(x)
        x = self.attend(x, kv_cache)  # Shape [batch_size, num_tokens, emb_size]
        x = self.drop_shortcut(x)
        x = x + shortcut  # Add the original input back

        # Shortcut connection for feed forward block
        shortcut = x
        x = self.norm2(x)
        x = self.ff(x)
        x = self.drop_shortcut(x)
        x = x + shortcut  # Add the original input back
        return x


class GPTModel(nn.Module):
    """Listing 4.7: token + position embeddings, ``n_layers`` blocks, final norm, output head."""

    def __init__(self, cfg, impl=None):
        super().__init__()
        cfg = validate_config(cfg if impl is None else {**cfg, "impl": impl})
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])

        self.trf_blocks = nn.Sequential(
            *[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])

        self.final_norm = make_norm(cfg) if cfg["norm_position"] == "pre" else nn.Identity()
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)
        if cfg["tie_weights"]:
            self.out_head.weight = self.tok_emb.weight

    @property
    def context_length(self) -> int:
        return self.cfg["context_length"]

    @property
    def supports_kv_cache(self) -> bool:
        return self.cfg["impl"] == "fast"

    def new_kv_cache(self, batch_size: int) -> KVCache:
        cfg = self.cfg
        head_dim = cfg["emb_dim"] // cfg["n_heads"]
        return KVCache(cfg["n_layers"], batch_size, cfg["n_heads"], cfg["context_length"], head_dim,
                       device=self.pos_emb.weight.device, dtype=self.pos_emb.weight.dtype)

    def forward(self, in_idx, kv_cache=None, last_only=False):
        """Logits (batch, num_tokens, vocab); with ``last_only`` just the last position's.

        With a ``kv_cache`` the tokens are placed after the ones already cached.
        """
        batch_size, seq_len = in_idx.shape
        start = 0 if kv_cache is None else kv_cache.pos
        if start + seq_len > self.context_length:
            raise ValueError(
                f"input has {start + seq_len} tokens but the model's context_length is "
                f"{self.context_length}: crop it to the last {self.context_length} tokens"
            )
        if kv_cache is not None and not self.supports_kv_cache:
            raise ValueError("the KV cache needs impl='fast' (the book's attention class has none)")
        tok_embeds = self.tok_emb(in_idx)
        positions = (torch.arange(start, start + seq_len, device=in_idx.device) if kv_cache is None
                     else kv_cache.positions(start, seq_len, in_idx.device))  # per row with left padding
        pos_embeds = self.pos_emb(positions)
        x = tok_embeds + pos_embeds  # Shape [batch_size, num_tokens, emb_size]
        x = self.drop_emb(x)
        if kv_cache is None:
            x = self.trf_blocks(x)
        else:
            for i, block in enumerate(self.trf_blocks):
                x = block(x, kv_cache=kv_cache.layer(i))
            kv_cache.advance(seq_len)
        if last_only:
            x = x[:, -1:, :]
        x = self.final_norm(x)
        return self.out_head(x)


def init_gpt2_weights(model: GPTModel) -> GPTModel:
    """Re-initialise ``model`` the way GPT-2 (and nanoGPT) do; the book keeps PyTorch's defaults.

    Linear and embedding weights ~ N(0, 0.02), biases 0, and the two projections that write into
    the residual stream (attention output, second feed-forward layer) ~ N(0, 0.02 / sqrt(2 * n_layers)).
    With a tied output head PyTorch's N(0, 1) embedding makes the first logits huge (a first loss
    near 80 instead of ln(vocab_size)); this init starts near ln(vocab_size).

    >>> cfg = {**GPT_CONFIG_124M, "vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2,
    ...        "n_layers": 2, "tie_weights": True}
    >>> round(init_gpt2_weights(GPTModel(cfg)).tok_emb.weight.std().item(), 2)
    0.02
    """
    residual_std = 0.02 / (2 * model.cfg["n_layers"]) ** 0.5
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = residual_std if name.endswith(("att.out_proj", "ff.layers.2")) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    return model


class DummyTransformerBlock(nn.Module):
    """Listing 4.1 placeholder block: passes its input through unchanged."""

    def __init__(self, cfg):
        super().__init__()

    def forward(self, x):
        return x


class DummyLayerNorm(nn.Module):
    """Listing 4.1 placeholder LayerNorm: passes its input through unchanged."""

    def __init__(self, normalized_shape, eps=1e-5):
        super().__init__()

    def forward(self, x):
        return x


class DummyGPTModel(nn.Module):
    """Listing 4.1: the GPT skeleton with pass-through blocks and norm, as the book writes it."""

    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[DummyTransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = DummyLayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        batch_size, seq_len = in_idx.shape
        x = self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = self.trf_blocks(self.drop_emb(x))
        return self.out_head(self.final_norm(x))
