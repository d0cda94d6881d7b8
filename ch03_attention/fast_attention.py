"""Fast multi-head attention: one fused QKV projection + PyTorch's fused SDPA kernel.

What this adds over the book's ``MultiHeadAttention``: the same computation with one
``(d_in, 3*d_out)`` matmul instead of three, and
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels, no materialised ``(T, T)`` mask). In eval mode it equals the book class
(tested to 1e-5); ``from_book`` copies a book module's weights in.

It also accepts an optional key/value cache for generation (chapter 4's ``KVCache``):
any object with ``update(k, v) -> (all_keys, all_values, start_pos)``.

With ``qkv_bias=False`` its initialisation draws the same random numbers in the same
order as the book class (``qkv.weight`` rows = ``W_query``, ``W_key``, ``W_value``).

>>> book = MultiHeadAttention(8, 8, context_length=16, dropout=0.0, num_heads=2).eval()
>>> fast = FastMultiHeadAttention.from_book(book).eval()
>>> x = torch.rand(2, 5, 8)
>>> torch.allclose(book(x), fast(x), atol=1e-6)
True
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiHeadAttention, check_context_length, check_heads


class FastMultiHeadAttention(nn.Module):
    """Causal multi-head attention, fused QKV + SDPA; same constructor as the book class."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.head_dim = check_heads(d_out, num_heads)
        self.d_in, self.d_out = d_in, d_out
        self.num_heads = num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.weight_dropout = None  # a GeneratorDropout for the weights (use_generator_dropout), else SDPA's
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)

    def forward(self, x, kv_cache=None):
        b, num_tokens, _ = x.shape
        qkv = self.qkv(x).view(b, num_tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, num_heads, num_tokens, head_dim)

        start = 0
        if kv_cache is not None:
            k, v, start = kv_cache.update(k, v)  # (b, num_heads, start + num_tokens, head_dim)
        check_context_length(start + num_tokens, self.context_length)

        mask, is_causal = None, num_tokens > 1
        padding_mask = None if kv_cache is None else kv_cache.attention_mask(start, num_tokens)
        if padding_mask is not None:  # a batch of left-padded prompts
            mask, is_causal = padding_mask, False
        elif start > 0 and num_tokens > 1:  # new queries sit at positions start..start+num_tokens-1
            q_pos = torch.arange(start, start + num_tokens, device=x.device)[:, None]
            mask = torch.arange(start + num_tokens, device=x.device)[None, :] <= q_pos
            is_causal = False
        dropout_p = self.dropout if self.training else 0.0
        if dropout_p > 0 and self.weight_dropout is not None and kv_cache is None:
            ctx = self.attend_with_own_masks(q, k, v)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                 is_causal=is_causal)
        ctx = ctx.transpose(1, 2).reshape(b, num_tokens, self.d_out)  # (b, num_tokens, d_out)
        return self.out_proj(ctx)

    def attend_with_own_masks(self, q, k, v):
        """Causal attention in training, its weights dropped by ``self.weight_dropout`` (SDPA's dropout
        would draw from PyTorch's global generator)."""
        num_tokens = q.shape[-2]
        scores = q @ k.transpose(-2, -1) * self.head_dim ** -0.5  # (b, num_heads, num_tokens, num_tokens)
        future = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=q.device).triu_(1)
        weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        return self.weight_dropout(weights) @ v  # (b, num_heads, num_tokens, head_dim)

    @classmethod
    def from_book(cls, book: MultiHeadAttention) -> "FastMultiHeadAttention":
        """A fast module holding a copy of a book ``MultiHeadAttention``'s weights."""
        d_out, d_in = book.W_query.weight.shape
        fast = cls(d_in, d_out, book.mask.shape[0], book.dropout.p, book.num_heads,
                   qkv_bias=book.W_query.bias is not None)
        fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
        return fast.to(book.W_query.weight.device)


_QKV = ("W_query", "W_key", "W_value")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def book_to_fast_state_dict(state_dict: dict) -> dict:
    """Convert any state dict holding book MHA layers (``*.W_query.weight`` ...) to the fast
    layout (``*.qkv.weight``); the book's ``mask`` buffers are dropped. Other keys pass through.
    """
    out = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        owner, _, name = prefix.rpartition(".")
        if name == "W_query":
            out[_join(owner, f"qkv.{leaf}")] = torch.cat(
                [state_dict[_join(owner, f"{n}.{leaf}")] for n in _QKV], dim=0)
        elif name in _QKV[1:]:
            continue
        elif leaf == "mask" and _join(prefix, "W_query.weight") in state_dict:
            continue
        else:
            out[key] = value
    return out


def fast_to_book_state_dict(state_dict: dict, context_length: int) -> dict:
    """Inverse of :func:`book_to_fast_state_dict` (the causal ``mask`` buffers are rebuilt)."""
    out = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        owner, _, name = prefix.rpartition(".")
        if name == "qkv":
            for n, part in zip(_QKV, value.chunk(3, dim=0)):
                out[_join(owner, f"{n}.{leaf}")] = part.clone()
            if leaf == "weight":
                out[_join(owner, "mask")] = torch.triu(
                    torch.ones(context_length, context_length), diagonal=1)
        else:
            out[key] = value
    return out
