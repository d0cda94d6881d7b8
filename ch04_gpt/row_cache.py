"""A KV cache whose rows decode together while each has its own length: continuous batching.

Unlike ``KVCache`` (one write position for the whole batch, rows padded on the left to start together): a row
joins with its prompt's keys and values (``add``, from a one-row ``KVCache`` the prompt was encoded into alone)
and leaves when it is done (``remove``), between decoding steps, while the others go on. Each step feeds one
token per row; a row's token is placed at that row's own position and attends to that row's own keys only (and,
on a sliding-window layer, to the last ``window`` of them), so each row computes what it would alone. The rows
in use are always the first ``rows``: a row that leaves is replaced by the last one, so a step reads views, not
copies.

>>> cache = RowKVCache(n_layers=1, max_rows=4, n_heads=2, max_len=16, head_dim=8)
>>> alone = KVCache(n_layers=1, batch_size=1, n_heads=2, max_len=16, head_dim=8)
>>> keys, values, _ = alone.layer(0).update(torch.ones(1, 2, 3, 8), torch.ones(1, 2, 3, 8)); alone.advance(3)
>>> cache.add(alone), cache.add(alone)           # two rows, each with a 3-token prompt
(0, 1)
>>> cache.lengths
[3, 3]
>>> cache.positions(cache.pos, 1, "cpu").tolist()  # where each row's next token goes
[[3], [3]]
"""

from __future__ import annotations

import torch

from .kv_cache import KVCache
from .previous_chapters import LayerKVCache

ZERO_AHEAD = 64  # columns a row's unread memory is zeroed ahead of its reads (one small zero_ per step otherwise)


class RowKVCache:
    """Keys and values (max_rows, n_kv_heads, max_len, head_dim) per layer; row r holds ``lengths[r]``
    positions. ``windows[i]``: layer i's sliding window (None: it sees every earlier key)."""

    def __init__(self, n_layers, max_rows, n_heads, max_len, head_dim, device=None, dtype=torch.float32,
                 windows=None):
        shape = (max_rows, n_heads, max_len, head_dim)
        # untouched pages cost nothing; a column is zeroed before a step first reads it (``ready``): a shorter
        # row's unused columns are read, masked, and masked keys must still hold finite numbers
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.windows = list(windows) if windows is not None else [None] * n_layers
        self.max_rows, self.max_len = max_rows, max_len
        self.lengths: list[int] = []  # per row in use
        self.ready = [0] * max_rows  # per row: its columns [0, ready) hold finite numbers
        self.masks: dict = {}  # per window, this step's (rows, 1, 1, keys) mask
        self.at = self.row_ids = None  # this step's write positions and row indices, (rows,) each

    @classmethod
    def of(cls, model, max_rows: int, max_len: int | None = None) -> "RowKVCache":
        """A cache for ``model``'s layers (its dtype, device and windows), ``max_len`` positions per row."""
        cfg, weight = model.cfg, model.tok_emb.weight
        return cls(cfg.n_layers, max_rows, cfg.n_kv_heads, max_len or cfg.context_length, cfg.head_dim,
                   device=weight.device, dtype=weight.dtype, windows=[cfg.window(i) for i in range(cfg.n_layers)])

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def pos(self) -> int:
        """Keys before this step's: the longest row's length (shorter rows' extra columns are masked)."""
        return max(self.lengths, default=0)

    def add(self, alone: KVCache) -> int:
        """A new row holding the keys and values of ``alone`` (one row, no sliding rings); returns its index."""
        if self.rows == self.max_rows:
            raise ValueError(f"all {self.max_rows} rows are in use")
        if any(w is not None for w in alone.windows) or alone.keys[0].shape[0] != 1:
            raise ValueError("add takes a one-row KVCache without sliding windows")
        row, n = self.rows, alone.pos
        if n >= self.max_len:
            raise ValueError(f"the row holds {n} positions; the cache {self.max_len}")
        for mine, theirs in zip((*self.keys, *self.values), (*alone.keys, *alone.values)):
            mine[row, :, :n] = theirs[0, :, :n]
        self.ready[row] = max(self.ready[row], n)
        self.lengths.append(n)
        return row

    def remove(self, row: int) -> None:
        """Free ``row``; the last row takes its place (its index becomes ``row``)."""
        last = self.rows - 1
        if row != last:
            n = self.lengths[last]
            for t in (*self.keys, *self.values):
                t[row, :, :n] = t[last, :, :n]
            self.lengths[row] = n
            self.ready[row] = max(self.ready[row], n)
        self.lengths.pop()

    def positions(self, start: int, num_tokens: int, device) -> torch.Tensor:
        """Position ids (rows, 1) of each row's next token. Before the step reads them, the columns up to
        ``start`` + 1 are made finite in every row, and this step's masks are built."""
        if num_tokens != 1:
            raise ValueError("a RowKVCache step feeds one token per row (encode prompts alone, then add them)")
        if start + 1 > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {start + 1} needed")
        for row in range(self.rows):
            if self.ready[row] < start + 1:  # zeroed ahead, ZERO_AHEAD columns at a time
                end = min(self.max_len, start + ZERO_AHEAD)
                for t in (*self.keys, *self.values):
                    t[row, :, self.ready[row]:end].zero_()
                self.ready[row] = end
        lengths = torch.tensor(self.lengths, device=device)
        self.at, self.row_ids = lengths, torch.arange(self.rows, device=device)
        k_pos = torch.arange(start + 1, device=device)
        visible = k_pos[None, :] <= lengths[:, None]  # (rows, keys): the row's keys and its new one
        self.masks = {w: (visible if w is None else visible & (k_pos[None, :] > lengths[:, None] - w))[:, None, None]
                      for w in set(self.windows)}  # (rows, 1, 1, keys)
        return lengths[:, None]

    def layer(self, i) -> LayerKVCache:
        return RowLayerCache(self, i)

    def advance(self, num_tokens: int) -> None:
        self.lengths = [n + num_tokens for n in self.lengths]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class RowLayerCache:
    """One layer's view: each row's new key and value written at that row's own position."""

    def __init__(self, cache: RowKVCache, index: int):
        self.cache, self.index = cache, index

    def update(self, k, v):
        c, start = self.cache, self.cache.pos
        keys, values = c.keys[self.index], c.values[self.index]
        keys[c.row_ids, :, c.at] = k[:, :, 0]  # k: (rows, kv_heads, 1, head_dim); one column per row
        values[c.row_ids, :, c.at] = v[:, :, 0]
        return keys[:c.rows, :, :start + 1], values[:c.rows, :, :start + 1], start

    def attention_mask(self, start: int, num_tokens: int):
        return self.cache.masks[self.cache.windows[self.index]]
