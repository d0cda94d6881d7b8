"""Fast multi-head attention: one fused QKV projection + PyTorch's fused SDPA kernel.

What this adds over the book's ``MultiHeadAttention``: the same computation with one
``(d_in, 3*d_out)`` matmul instead of three, and
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels, no materialised ``(T, T)`` mask). In eval mode it equals the book class
(tested to 1e-5), and so does it in training on a CPU, with the book's dropout masks
(``attend_with_dropout``); ``from_book`` copies a book module's weights in. Training in bf16 on a CPU,
causal attention without a mask or dropout over 256 x 64 / head_dim to 512 tokens goes through
``blockwise_causal`` instead (SDPA's result to bf16's rounding, in fewer and larger matrix products than its CPU
flash kernel); shorter sequences train in fp32 SDPA (``attend``).

It also accepts a key/value cache, for the book's GPT generating text (chapter 4's ``KVCache``): any
object that ``LayerKVCache`` describes. Every mask, cached or not, comes from ``causal_mask``. Chapter 4's
``GroupedQueryAttention`` extends this class to the attention of the open-weight families (grouped-query
heads, QK-norm, sliding windows, RoPE).

With ``qkv_bias=False`` its initialisation draws the same random numbers in the same
order as the book class (``qkv.weight`` rows = ``W_query``, ``W_key``, ``W_value``).

>>> book = MultiHeadAttention(8, 8, context_length=16, dropout=0.0, num_heads=2).eval()
>>> fast = FastMultiHeadAttention.from_book(book).eval()
>>> x = torch.rand(2, 5, 8)
>>> torch.allclose(book(x), fast(x), atol=1e-6)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .attention import MultiHeadAttention, check_context_length, check_heads


def unpacked(x, live):
    """Packed tokens (1, n_live, width) back in their rows (b, T, width), zeros elsewhere: ``live`` (b, T) says
    where they go. A batch of padded rows is packed as ``x[live][None]`` to skip its pads.

    >>> live = torch.tensor([[True, True, False], [True, False, False]])
    >>> unpacked(torch.tensor([[[1.], [2.], [3.]]]), live)[..., 0].tolist()
    [[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
    """
    return x.new_zeros(*live.shape, x.shape[-1]).index_put((live,), x[0])


def causal_mask(q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """True where a query may attend to a key: keys at or before it. Shapes broadcast: (..., num_q, 1) and
    (..., 1, num_k).

    >>> causal_mask(torch.arange(3)[:, None], torch.arange(3)[None, :]).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    return k_pos <= q_pos


@runtime_checkable
class LayerKVCache(Protocol):
    """What attention calls on a key/value cache, one layer's view of it (chapter 4's ``LayerCache`` and
    ``RingLayerCache`` are two). Keys and values are (b, kv_heads, num_tokens, head_dim)."""

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Store the new keys and values; return all the keys and values to attend to, and the position of
        the first new one."""

    def attention_mask(self, start: int, num_tokens: int) -> torch.Tensor | None:
        """True where each of the ``num_tokens`` new queries may attend to a key ``update`` returned; None:
        plain causal attention by position."""


# Below this many (tokens x head dims) per head, a CPU trains attention faster in fp32 than in bf16: PyTorch's
# bf16 flash-attention backward has a fixed cost per block that short sequences cannot amortise (measured in
# bench/README.md; from 256 tokens x 64 dims on, bf16 is the faster).
SHORT_ATTENTION = 256 * 64


# Up to this many tokens, a CPU trains causal attention in bf16 faster as matrix products over blocks of
# queries (``blockwise_causal``) than through SDPA's bf16 flash kernel; for heads of 64 dims the flash kernel is
# the faster from about 1,024 on (``python -m bench.attention_speed --blockwise``; figures in bench/README.md).
BLOCKWISE_ATTENTION = 512


def blockwise_causal(q, k, v, scale=None):
    """Causal attention of queries (b, heads, T, head_dim) to keys and values (b, kv_heads, T, head_dim), each
    key/value head shared by a group of query heads, in blocks of queries: each block's scores against the keys
    up to its last query are one product (the group's queries stacked into its rows), their softmax in fp32,
    and one product with the values. Backward recomputes each block's weights from the log-sum-exp forward
    kept (as flash attention does), so no (T, T) matrix is kept either.

    Unlike SDPA's CPU flash kernel, whose many small products cost more than they compute in bf16 up to a few
    hundred tokens: fewer, larger products. As in that kernel, the scores and their gradients are products in
    fp32 (bf16 scores, as eager attention rounds them, would make the error grow with their size), the
    products with the values and the gradients in the inputs' dtype; the error against fp64 is the flash
    kernel's, large scores included (tests/test_ch03_attention.py).

    >>> q, k, v = torch.randn(2, 4, 9, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    >>> expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    >>> torch.allclose(blockwise_causal(q, k, v), expected, atol=1e-6)
    True
    """
    return _BlockwiseCausal.apply(q, k, v, scale if scale is not None else q.shape[-1] ** -0.5)


def _query_blocks(num_tokens: int) -> list[tuple[int, int]]:
    rows = 64 if num_tokens <= 256 else 128
    return [(lo, min(lo + rows, num_tokens)) for lo in range(0, num_tokens, rows)]


class _BlockwiseCausal(torch.autograd.Function):
    """``blockwise_causal``'s forward and backward. Shapes: B = b x kv_heads; g query heads per key head; each
    block: n queries (lo to hi) against the keys up to hi."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.bfloat16)  # under autocast: bf16 in, none inside
    def forward(ctx, q, k, v, scale):
        q4, k3, v3 = _grouped(q, k, v)  # (B, g, T, head_dim), (B, T, head_dim), (B, T, head_dim)
        k32 = k3.float()
        out = torch.empty_like(q4)
        lse = q4.new_empty(*q4.shape[:-1], 1, dtype=torch.float32)  # (B, g, T, 1): each row's log-sum-exp
        for lo, hi in _query_blocks(q.shape[2]):
            weights = _block_scores(q4, k32, lo, hi, scale)  # (B, g, n, hi)
            top = weights.amax(-1, keepdim=True)
            total = weights.sub_(top).exp_().sum(-1, keepdim=True)
            lse[:, :, lo:hi] = top + total.log()
            weights = weights.div_(total).to(v.dtype).flatten(1, 2)  # (B, g x n, hi)
            out[:, :, lo:hi] = torch.bmm(weights, v3[:, :hi]).unflatten(1, (q4.shape[1], -1))
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale = scale
        return out.view(q.shape)

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")  # autocast as in forward (off), wherever backward() is called
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        q4, k3, v3 = _grouped(q, k, v)
        k32, v32 = k3.float(), v3.float()
        grad4 = grad_out.reshape(q4.shape).to(q.dtype)
        rowdot = (grad4.float() * out.float()).sum(-1, keepdim=True)  # (B, g, T, 1): each row's sum of P * dP
        dq = torch.empty_like(q4)
        dk, dv = (torch.zeros(k3.shape, dtype=torch.float32, device=k.device) for _ in range(2))
        for lo, hi in _query_blocks(q.shape[2]):
            weights = _block_scores(q4, k32, lo, hi, ctx.scale).sub_(lse[:, :, lo:hi]).exp_()  # (B, g, n, hi)
            grad_rows = grad4[:, :, lo:hi].flatten(1, 2)  # (B, g x n, head_dim)
            dv[:, :hi] += torch.bmm(weights.flatten(1, 2).to(v.dtype).transpose(1, 2), grad_rows)
            d_weights = torch.bmm(grad_rows.float(), v32[:, :hi].transpose(1, 2)).unflatten(1, (q4.shape[1], -1))
            d_scores = weights.mul_(d_weights.sub_(rowdot[:, :, lo:hi])).mul_(ctx.scale).to(q.dtype).flatten(1, 2)
            dq[:, :, lo:hi] = torch.bmm(d_scores, k3[:, :hi]).unflatten(1, (q4.shape[1], -1))
            dk[:, :hi] += torch.bmm(d_scores.transpose(1, 2), q4[:, :, lo:hi].flatten(1, 2))
        return dq.view(q.shape), dk.to(k.dtype).view(k.shape), dv.to(v.dtype).view(v.shape), None


def _grouped(q, k, v):
    """Queries (B, g, T, head_dim), each key head's group of query heads together; keys, values (B, T, head_dim)."""
    b, heads, num_tokens, head_dim = q.shape
    group = heads // k.shape[1]
    return q.reshape(-1, group, num_tokens, head_dim), *(t.reshape(-1, num_tokens, head_dim) for t in (k, v))


def _block_scores(q4, k32, lo, hi, scale):
    """The scaled scores (B, g, n, hi) in fp32 of the queries ``lo:hi`` against the keys up to ``hi`` (``k32``:
    the keys in fp32); -inf where a key comes after its query."""
    group = q4.shape[1]
    later = torch.ones(hi - lo, hi - lo, dtype=torch.bool, device=q4.device).triu_(1)
    bias = torch.zeros(group, hi - lo, hi, device=q4.device)
    bias[:, :, lo:].masked_fill_(later, float("-inf"))
    queries = q4[:, :, lo:hi].flatten(1, 2).float()  # (B, g x n, head_dim)
    scores = torch.baddbmm(bias.flatten(0, 1), queries, k32[:, :hi].transpose(1, 2), alpha=scale)  # (B, g x n, hi)
    return scores.unflatten(1, (group, -1))


def bf16_on_cpu(q: torch.Tensor) -> bool:
    """Whether SDPA would run on ``q`` in bf16 on a CPU (bf16 queries, or bf16 autocast)."""
    if q.device.type != "cpu":
        return False
    return q.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def attend(q, k, v, **sdpa_options):
    """``F.scaled_dot_product_attention``, except that a short sequence that trains in bf16 on a CPU attends
    in fp32 (see ``SHORT_ATTENTION``) and comes back in its own dtype: the same values, computed more exactly;
    that a longer one, up to ``BLOCKWISE_ATTENTION`` tokens, causal without a mask or dropout, takes
    ``blockwise_causal``; and that one query per head in bf16 on a CPU without gradients (a decoding step)
    takes ``one_query``.

    >>> q = torch.randn(1, 2, 8, 4, dtype=torch.bfloat16, requires_grad=True)
    >>> attend(q, q, q, is_causal=True).dtype
    torch.bfloat16
    """
    if q.shape[-2] == 1 and q.dtype == torch.bfloat16 and q.device.type == "cpu" and not (
            q.requires_grad and torch.is_grad_enabled()) and not sdpa_options.get("dropout_p"):
        return one_query(q, k, v, sdpa_options.get("attn_mask"), sdpa_options.get("scale"))
    short = q.shape[-2] * q.shape[-1] < SHORT_ATTENTION
    if short and q.requires_grad and torch.is_grad_enabled() and bf16_on_cpu(q):
        mask = sdpa_options.get("attn_mask")
        if mask is not None and mask.is_floating_point():  # an additive mask: in the queries' dtype
            sdpa_options = {**sdpa_options, "attn_mask": mask.float()}
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **sdpa_options)
        return out.to(torch.bfloat16)  # as bf16 SDPA, or autocast's, would return it
    if (q.shape[-2] <= BLOCKWISE_ATTENTION and q.shape[-2] == k.shape[-2] and sdpa_options.get("is_causal")
            and sdpa_options.get("attn_mask") is None and not sdpa_options.get("dropout_p")
            and q.requires_grad and torch.is_grad_enabled() and bf16_on_cpu(q)):
        return blockwise_causal(*(t.to(torch.bfloat16) for t in (q, k, v)), sdpa_options.get("scale"))
    return F.scaled_dot_product_attention(q, k, v, **sdpa_options)


def one_query(q, k, v, attn_mask=None, scale=None):
    """Attention of one query per head, (b, heads, 1, head_dim), over keys and values (b, kv_heads, T,
    head_dim) shared by groups of heads: two small matrix products, the scores and their softmax in fp32.

    Unlike SDPA: PyTorch's CPU kernel for bf16 works through the keys in blocks made for many queries, and
    for a single one (each decoding step) costs several times these two products (``python -m
    bench.attention_speed --decode``). The result agrees with SDPA's to bf16's rounding.

    >>> q, k = torch.randn(2, 4, 1, 8), torch.randn(2, 2, 5, 8)
    >>> expected = F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
    >>> torch.allclose(one_query(q, k, k), expected, atol=1e-6)
    True
    """
    b, heads, _, head_dim = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    group = heads // kv_heads
    grouped = q.reshape(b, kv_heads, group, head_dim).float()  # each kv head's group of queries
    scores = torch.matmul(grouped, k.float().transpose(-1, -2))  # (b, kv_heads, group, keys)
    scores *= scale if scale is not None else head_dim ** -0.5
    if attn_mask is not None:
        mask = torch.broadcast_to(attn_mask, (b, heads, 1, keys)).reshape(b, kv_heads, group, keys)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.matmul(weights, v).reshape(b, heads, 1, head_dim)  # (b, heads, 1, head_dim)


class FastMultiHeadAttention(nn.Module):
    """Causal multi-head attention, fused QKV + SDPA; the book class's constructor and computation."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.head_dim = check_heads(d_out, num_heads)
        self.d_in, self.d_out = d_in, d_out
        self.num_heads = num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.scale = self.head_dim ** -0.5
        self.weight_dropout = None  # its dropout (use_generator_dropout, use_prefetched_dropout); None: F.dropout
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)  # rows: W_query, W_key, W_value
        self.out_proj = nn.Linear(d_out, d_out)

    def project(self, x, live=None):
        """Queries, keys and values, each (b, num_heads, T, head_dim) (``live``: see ``forward``)."""
        qkv = self.qkv(x) if live is None else unpacked(self.qkv(x), live)  # (b, num_tokens, 3 * d_out)
        b, num_tokens, _ = qkv.shape
        q, k, v = qkv.split(self.d_out, dim=-1)  # each (b, num_tokens, d_out)
        q, k, v = (t.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        return q, k, v  # (b, heads, num_tokens, head_dim)

    def forward(self, x, kv_cache: LayerKVCache | None = None, live=None):
        """``live``: a (b, T) bool mask when ``x`` (1, n_live, d_in) holds only its True positions (padded rows
        without their pads): the projections see those tokens alone, attention sees them in their rows."""
        return self.attend_heads(*self.project(x, live), kv_cache, live)

    def attend_heads(self, q, k, v, kv_cache: LayerKVCache | None = None, live=None):
        """The output (b, T, d_out) of queries (b, num_heads, T, head_dim) attending causally to the keys and
        values, placed after those of ``kv_cache`` when one is given (``live``: (1, n_live, d_out), packed)."""
        b, _, num_tokens, _ = q.shape
        start, mask = 0, None
        if kv_cache is not None:
            k, v, start = kv_cache.update(k, v)  # (b, kv_heads, keys, head_dim)
            mask = kv_cache.attention_mask(start, num_tokens)  # None: causal by position
        check_context_length(start + num_tokens, self.context_length)
        if mask is None:
            mask = self.position_mask(start, num_tokens, q.device)  # None: SDPA's own causal mask
        dropout_p = self.dropout if self.training else 0.0
        if dropout_p > 0 and kv_cache is None and (self.weight_dropout is not None or q.device.type == "cpu"):
            ctx = self.attend_with_dropout(q, k, v, mask, dropout_p)
        else:
            ctx = self.sdpa(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None and num_tokens > 1)
        ctx = ctx.transpose(1, 2).reshape(b, num_tokens, self.num_heads * self.head_dim)  # (b, T, heads x dims)
        return self.out_proj(ctx if live is None else ctx[live][None])

    def position_mask(self, start: int, num_tokens: int, device) -> torch.Tensor | None:
        """(num_tokens, start + num_tokens), True where the queries at positions ``start``... may attend; None
        where SDPA's causal mask says the same (no earlier keys) or nothing is masked (one query)."""
        if start == 0 or num_tokens == 1:
            return None
        q_pos = torch.arange(start, start + num_tokens, device=device)[:, None]
        return causal_mask(q_pos, torch.arange(start + num_tokens, device=device)[None, :])

    def sdpa(self, q, k, v, **sdpa_options):
        """``attend`` (SDPA) with this module's options; its scale is SDPA's default, head_dim ** -0.5."""
        return attend(q, k, v, **sdpa_options)

    def attend_with_dropout(self, q, k, v, mask, dropout_p):
        """Causal attention in training, its weights dropped as the book drops them (listing 3.5).

        With ``self.weight_dropout`` the masks come from it (a ``GeneratorDropout``'s generator, or a
        ``PrefetchedDropout``'s masks drawn ahead, the same as ``F.dropout``'s); otherwise
        from ``F.dropout``: PyTorch's global generator, one draw per weight in the order SDPA's CPU kernel
        (and the book's class) draws them, so the masks are the book's. On a CPU this is faster than SDPA
        with dropout, whose kernel guards against fully masked rows (a causal mask has none), under bf16
        autocast and in fp32 (``python -m bench.attention_speed``; the figures are in bench/README.md). The
        scores come out of one ``baddbmm``, scaled and with -inf added above the diagonal, not masked and scaled
        in two more passes over them (forward and backward)."""
        b, num_heads, num_tokens, head_dim = q.shape
        if mask is None:
            mask = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=q.device).tril_()
        masked = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
        scores = torch.baddbmm(masked, q.reshape(b * num_heads, num_tokens, head_dim),  # scaled, masked
                               k.reshape(b * num_heads, num_tokens, head_dim).transpose(1, 2), alpha=self.scale)
        weights = torch.softmax(scores.view(b, num_heads, num_tokens, num_tokens), dim=-1)
        if self.weight_dropout is not None:
            weights = self.weight_dropout(weights)
        else:
            weights = F.dropout(weights, dropout_p)
        return weights @ v  # (b, num_heads, num_tokens, head_dim)

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
