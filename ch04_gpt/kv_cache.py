"""Key/value cache for generation: pre-allocated per-layer tensors, one write position.

What this adds: during generation each new token only needs its own query; the keys
and values of earlier tokens are kept here instead of being recomputed every step.
It holds ``n_kv_heads`` heads per layer (grouped-query attention shares them), and a
sliding-window layer keeps only its last ``window`` positions, in a ring: its memory
stays bounded however long the text gets.

>>> cache = KVCache(n_layers=2, batch_size=1, n_heads=4, max_len=8, head_dim=16)
>>> k = v = torch.zeros(1, 4, 3, 16)                 # (b, num_kv_heads, num_tokens, head_dim)
>>> keys, values, start = cache.layer(0).update(k, v)
>>> keys.shape, start
(torch.Size([1, 4, 3, 16]), 0)
>>> ring = KVCache(n_layers=1, batch_size=1, n_heads=4, max_len=8, head_dim=16, windows=[2])
>>> ring.keys[0].shape                               # the window, not max_len
torch.Size([1, 4, 2, 16])

Attention sees one layer's view, ``layer(i)``: what chapter 3's ``LayerKVCache`` describes.

>>> isinstance(cache.layer(0), LayerKVCache), isinstance(ring.layer(0), LayerKVCache)
(True, True)
"""

from __future__ import annotations

import torch

from .attention import sliding_window_mask
from .previous_chapters import LayerKVCache


def unzeroed(shape, **options) -> torch.Tensor:
    """Memory for cache positions that are written before they are read (``torch.empty``)."""
    return torch.empty(shape, **options)


class KVCache:
    """Keys and values of every layer, shape (b, n_kv_heads, length, head_dim), filled up to ``pos``;
    ``length`` is max_len, or a sliding layer's window."""

    def __init__(self, n_layers, batch_size, n_heads, max_len, head_dim, device=None, dtype=torch.float32,
                 windows=None):
        self.windows = list(windows) if windows is not None else [None] * n_layers
        self.keys, self.values, self.slot_pos = [], [], []
        for window in self.windows:
            length = max_len if window is None else min(window, max_len)
            shape = (batch_size, n_heads, length, head_dim)
            # a plain layer is read only up to ``pos`` (no need to zero it: untouched pages cost nothing, and
            # zeroing Qwen3-0.6B's 2,048 positions faults in 235 MB per generation); a ring is read whole,
            # its empty slots masked, and masked keys must still hold finite numbers
            alloc = unzeroed if window is None else torch.zeros
            self.keys.append(alloc(shape, device=device, dtype=dtype))
            self.values.append(alloc(shape, device=device, dtype=dtype))
            # a ring's slots: the position each holds (-1: empty)
            self.slot_pos.append(None if window is None else torch.full((length,), -1, device=device))
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
        for slots in self.slot_pos:
            if slots is not None:
                slots.fill_(-1)

    def layer(self, i) -> LayerKVCache:
        return LayerCache(self, i) if self.windows[i] is None else RingLayerCache(self, i)

    def advance(self, num_tokens: int):
        self.pos += num_tokens

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class LayerCache:
    """The view of one layer that the attention module writes into (a ``LayerKVCache``)."""

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
        if self.cache.real is None:
            return None
        return self.mask_for(start, num_tokens, torch.arange(start + num_tokens, device=self.cache.real.device))

    def mask_for(self, start, num_tokens, k_pos, window=None):
        real = self.cache.real
        q_pos = torch.arange(start, start + num_tokens, device=k_pos.device)[:, None]
        allowed = sliding_window_mask(q_pos, k_pos[None, :], window) & (k_pos >= 0)  # (num_tokens, keys)
        if real is None:
            return allowed  # broadcasts over batch and heads
        allowed = allowed & real[:, None, k_pos.clamp(min=0)]  # (b, num_tokens, keys)
        return (allowed | (k_pos[None, :] == q_pos))[:, None]  # (b, 1, num_tokens, keys)


class RingLayerCache(LayerCache):
    """A sliding-window layer: the last ``window`` positions, in slot ``position % window``.

    Until the ring is full, slot j holds position j and the layer reads the slots filled so far, as a plain
    layer does. After that, a single new token (a decoding step) takes the slot of the position that leaves
    its window, and the step reads the whole ring; several new tokens at once get the stored keys followed
    by theirs (order does not matter to attention: the mask is built from each key's position), and the
    newest ``window`` of them are kept.
    """

    key_pos = None  # the position of each key the last update returned (None: 0, 1, ... as a plain layer)

    def update(self, k, v):
        c, i, start = self.cache, self.index, self.cache.pos
        num_tokens = k.shape[2]
        if start + num_tokens > c.max_len:
            raise ValueError(f"KV cache holds {c.max_len} positions; {start + num_tokens} needed: reset it or "
                             "crop the input")
        slots = c.slot_pos[i]
        end, length = start + num_tokens, slots.shape[0]
        if end <= length:  # not full yet: no copies, no mask beyond a plain layer's
            self.key_pos = None
            slots[start:end] = torch.arange(start, end, device=slots.device)
            return super().update(k, v)
        if num_tokens == 1:  # the new key replaces the one leaving the window: every slot is then in it
            where = start % length
            c.keys[i][:, :, where] = k[:, :, 0]
            c.values[i][:, :, where] = v[:, :, 0]
            slots[where] = start
            self.key_pos = slots
            return c.keys[i], c.values[i], start
        new_pos = torch.arange(start, end, device=slots.device)
        keys, values = torch.cat((c.keys[i], k), dim=2), torch.cat((c.values[i], v), dim=2)
        self.key_pos = torch.cat((slots, new_pos))
        keep = min(num_tokens, length)
        where = new_pos[-keep:] % length
        c.keys[i][:, :, where] = k[:, :, -keep:]
        c.values[i][:, :, where] = v[:, :, -keep:]
        slots[where] = new_pos[-keep:]
        return keys, values, start

    def attention_mask(self, start: int, num_tokens: int):
        if self.key_pos is None:
            return super().attention_mask(start, num_tokens)
        return self.mask_for(start, num_tokens, self.key_pos, self.cache.windows[self.index])
