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
