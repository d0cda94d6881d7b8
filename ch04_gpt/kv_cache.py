"""Key/value cache for generation: pre-allocated per-layer tensors, one write position.

What this adds: during generation each new token only needs its own query; the keys
and values of earlier tokens are kept here instead of being recomputed every step.

>>> cache = KVCache(n_layers=2, batch_size=1, n_heads=4, max_len=8, head_dim=16)
>>> k = v = torch.zeros(1, 4, 3, 16)                 # (b, num_heads, num_tokens, head_dim)
>>> keys, values, start = cache.layer(0).update(k, v)
>>> keys.shape, start
(torch.Size([1, 4, 3, 16]), 0)
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer, shape (b, num_heads, max_len, head_dim), filled up to ``pos``."""

    def __init__(self, n_layers, batch_size, n_heads, max_len, head_dim, device=None, dtype=torch.float32):
        shape = (batch_size, n_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.max_len = max_len
        self.pos = 0  # number of positions filled (same for every layer)
        self.real = None  # (b, max_len) bool, False at left padding: set by set_padding for batched prompts
        self.offsets = None  # (b,) padding tokens before each row's first real token

    def set_padding(self, prompt_mask: torch.Tensor) -> None:
        """Rows of a batch padded on the left: ``prompt_mask`` (b, prompt_len) is False at padding.

        Padding is then never attended to, and each row's positions count from its first real
        token, so every row computes what it would alone.
        """
        b, n = prompt_mask.shape
        self.real = torch.ones(b, self.max_len, dtype=torch.bool, device=prompt_mask.device)
        self.real[:, :n] = prompt_mask
        self.offsets = (~prompt_mask).sum(dim=1)

    def positions(self, start: int, num_tokens: int, device) -> torch.Tensor:
        """Position ids of the next ``num_tokens``: (num_tokens,), or (b, num_tokens) with padding."""
        pos = torch.arange(start, start + num_tokens, device=device)
        if self.offsets is None:
            return pos
        return (pos[None, :] - self.offsets[:, None]).clamp(min=0)  # (b, num_tokens); padding sits at 0

    def reset(self):
        self.pos = 0

    def layer(self, i) -> "LayerCache":
        return LayerCache(self, i)

    def advance(self, num_tokens: int):
        self.pos += num_tokens


class LayerCache:
    """The view of one layer that the attention module writes into."""

    def __init__(self, cache: KVCache, index: int):
        self.cache, self.index = cache, index

    def update(self, k, v):
        c, start = self.cache, self.cache.pos
        end = start + k.shape[2]
        if end > c.max_len:
            raise ValueError(f"KV cache holds {c.max_len} positions; {end} needed: reset it or crop the input")
        c.keys[self.index][:, :, start:end] = k
        c.values[self.index][:, :, start:end] = v
        return c.keys[self.index][:, :, :end], c.values[self.index][:, :, :end], start

    def attention_mask(self, start: int, num_tokens: int):
        """None without padding (plain causal attention); else (b, 1, num_tokens, start + num_tokens),
        True where a query may attend: earlier real keys, and itself (a padding query needs one key)."""
        real = self.cache.real
        if real is None:
            return None
        q_pos = torch.arange(start, start + num_tokens, device=real.device)[:, None]
        k_pos = torch.arange(start + num_tokens, device=real.device)[None, :]
        allowed = (k_pos <= q_pos) & real[:, None, :start + num_tokens]  # (b, num_tokens, keys)
        return (allowed | (k_pos == q_pos))[:, None]  # (b, 1, num_tokens, keys)
