"""Grouped-query attention: chapter 3's fused multi-head attention with the open-weight families' variants.

Unlike chapter 3's ``FastMultiHeadAttention`` (the book's multi-head attention, fused), keyword arguments add:
``num_kv_heads`` < ``num_heads`` shares each key/value head among a group of query heads (grouped-query
attention, Llama 3, Qwen3, Gemma 3, Mistral; 1 = multi-query), ``head_dim`` independent of ``d_out / num_heads``
(Qwen3, Gemma 3), ``out_bias`` (False: no bias on the output projection), ``scale`` (default head_dim ** -0.5;
Gemma 3's own), ``window`` (sliding-window attention: each query sees at most ``window`` keys, itself
included), and ``q_norm``/``k_norm`` modules applied to each head (``qk_norm_per_head``: Qwen3, Gemma 3) or to
the whole projection (OLMo 2/3). ``forward`` takes a ``rope`` (``rope.Rotation``) that rotates queries and keys
after the norms, and a cache (``LayerKVCache``) as chapter 3's class does. Everything else, the KV cache's use
and the dropout paths included, is chapter 3's; so are the parameter names (``qkv``, ``out_proj``, plus
``q_norm``, ``k_norm``), which checkpoints and the Hugging Face weight maps name.

>>> gqa = GroupedQueryAttention(16, 16, 8, 0.0, num_heads=4, num_kv_heads=2)
>>> gqa.qkv.weight.shape                    # 4 query heads, then 2 key and 2 value heads, of 4 dims each
torch.Size([32, 16])
>>> fast = FastMultiHeadAttention(8, 8, 16, 0.0, num_heads=2).eval()
>>> plain = GroupedQueryAttention(8, 8, 16, 0.0, num_heads=2).eval()   # no variant: chapter 3's attention
>>> _ = plain.load_state_dict(fast.state_dict())
>>> x = torch.rand(1, 5, 8)
>>> torch.equal(plain(x), fast(x))
True
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .previous_chapters import FastMultiHeadAttention, LayerKVCache, causal_mask, check_heads, unpacked
from .norms import norm_of_heads
from .rope import Rotation


def sliding_window_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """``causal_mask``, and for a sliding-window layer only the last ``window`` keys (the query's own included).
    Shapes broadcast: (..., num_q, 1) and (..., 1, num_k).

    >>> sliding_window_mask(torch.arange(3)[:, None], torch.arange(3)[None, :], window=2).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [0, 1, 1]], dtype=torch.int32)
    """
    allowed = causal_mask(q_pos, k_pos)
    if window is not None:
        allowed = allowed & (k_pos > q_pos - window)
    return allowed


class GroupedQueryAttention(FastMultiHeadAttention):
    """``FastMultiHeadAttention`` with the variants of the open-weight families (see the module docstring)."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False, *, num_kv_heads=None,
                 head_dim=None, out_bias=True, scale=None, window=None, q_norm=None, k_norm=None,
                 qk_norm_per_head=True):
        head_dim = head_dim or check_heads(d_out, num_heads)
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        # chapter 3's square projections are replaced below: made on the meta device, they take no memory and
        # draw no random numbers, so the initial weights are the draws of the projections built here
        with torch.device("meta"):
            super().__init__(d_in, num_heads * head_dim, context_length, dropout, num_heads, qkv_bias)
        self.d_out, self.num_kv_heads, self.window = d_out, num_kv_heads, window
        self.scale = scale or head_dim ** -0.5
        self.sdpa_scale = None if scale in (None, head_dim ** -0.5) else scale  # None: SDPA's own default
        q_width, kv_width = num_heads * head_dim, num_kv_heads * head_dim
        self.split_sizes = (q_width, kv_width, kv_width)
        self.qkv = nn.Linear(d_in, q_width + 2 * kv_width, bias=qkv_bias)
        self.out_proj = nn.Linear(q_width, d_out, bias=out_bias)
        self.q_norm, self.k_norm, self.qk_norm_per_head = q_norm, k_norm, qk_norm_per_head

    def project(self, x, rope: Rotation | None = None, live=None):
        """Queries (b, num_heads, T, head_dim), keys and values (b, num_kv_heads, T, head_dim): normed, rotated
        (``live``: chapter 3's packed tokens)."""
        qkv = self.qkv(x) if live is None else unpacked(self.qkv(x), live)  # (b, num_tokens, q + k + v widths)
        b, num_tokens, _ = qkv.shape
        q_width, kv_width, _ = self.split_sizes
        qk, v = qkv.split((q_width + kv_width, kv_width), dim=-1)  # queries and keys: normed and rotated together
        if self.q_norm is not None and not self.qk_norm_per_head:  # OLMo 2/3: over the whole projection
            qk = torch.cat((self.q_norm(qk[..., :q_width]), self.k_norm(qk[..., q_width:])), dim=-1)
        qk = qk.view(b, num_tokens, self.num_heads + self.num_kv_heads, self.head_dim)
        if self.q_norm is not None and self.qk_norm_per_head:  # Qwen3, Gemma 3: per head
            qk = norm_of_heads(self.q_norm, self.k_norm, qk, self.num_heads)
        qk = qk.transpose(1, 2)  # (b, heads + kv_heads, num_tokens, head_dim)
        if rope is not None:
            qk = rope(qk)
        q, k = qk.split((self.num_heads, self.num_kv_heads), dim=1)
        v = v.view(b, num_tokens, self.num_kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v  # (b, heads or kv_heads, num_tokens, head_dim)

    def forward(self, x, kv_cache: LayerKVCache | None = None, rope: Rotation | None = None, live=None):
        return self.attend_heads(*self.project(x, rope, live), kv_cache, live)

    def position_mask(self, start: int, num_tokens: int, device) -> torch.Tensor | None:
        """Chapter 3's mask, and on a sliding-window layer the window's once the keys outnumber it."""
        if self.window is None or start + num_tokens <= self.window:
            return super().position_mask(start, num_tokens, device)
        q_pos = torch.arange(start, start + num_tokens, device=device)[:, None]
        return sliding_window_mask(q_pos, torch.arange(start + num_tokens, device=device)[None, :], self.window)

    def sdpa(self, q, k, v, **sdpa_options):
        """SDPA with this module's scale, each key/value head shared by its group of query heads."""
        return super().sdpa(q, k, v, scale=self.sdpa_scale, enable_gqa=self.num_kv_heads != self.num_heads,
                            **sdpa_options)

    def repeat_kv(self, t: torch.Tensor) -> torch.Tensor:
        """Keys or values (b, num_kv_heads, T, head_dim) repeated to one head per query head."""
        return t.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)  # (b, num_heads, T, head_dim)

    def attend_with_dropout(self, q, k, v, mask, dropout_p):
        """Chapter 3's path for dropout in training, over keys and values repeated for each query head."""
        return super().attend_with_dropout(q, self.repeat_kv(k), self.repeat_kv(v), mask, dropout_p)
