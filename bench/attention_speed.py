"""Forward+backward time of the book's attention classes vs the fused SDPA fast path.

    python -m bench.attention_speed            # (8, 1024, 768), 12 heads, CPU
    python -m bench.attention_speed --batch 2 --tokens 256 --dropout 0.1 --bf16   # the book's training run
    python -m bench.attention_speed --decode    # one query per head (a decoding step): SDPA against one_query
    python -m bench.attention_speed --blockwise # training in bf16: SDPA's flash kernel against blockwise_causal

Prints seconds per forward+backward and each variant's speed relative to the book MHA. With ``--dropout``
it adds the fast module's earlier paths for dropout in training (the scores masked, then scaled, in two more
passes; before that SDPA's own dropout) beside the one it takes on a CPU now (``attend_with_dropout``); all of
them draw the same masks from the global generator.
"""

from __future__ import annotations

import argparse

import torch

from bench.timing import machine_line, median_seconds
from ch03_attention.attention import MultiHeadAttention, MultiHeadAttentionWrapper
from ch03_attention.fast_attention import FastMultiHeadAttention, blockwise_causal, one_query


class SDPADropout(FastMultiHeadAttention):
    """The fast module with SDPA's own dropout in training (its path on a CPU before ``attend_with_dropout``)."""

    def attend_with_dropout(self, q, k, v, mask, dropout_p):
        return self.sdpa(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None)


class MaskThenScale(FastMultiHeadAttention):
    """The fast module's ``attend_with_dropout`` before the scores came masked and scaled out of one ``baddbmm``:
    the product, then ``masked_fill_`` and ``mul_`` over the scores, each a pass forward and backward (for the
    book's multi-head shape this bench builds: no grouped heads, ``F.dropout``)."""

    def attend_with_dropout(self, q, k, v, mask, dropout_p):
        num_tokens = q.shape[-2]
        scores = q @ k.transpose(-2, -1)  # (b, num_heads, num_tokens, num_tokens)
        if mask is None:
            mask = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=q.device).tril_()
        weights = torch.softmax(scores.masked_fill_(~mask, float("-inf")).mul_(self.scale), dim=-1)
        return torch.nn.functional.dropout(weights, dropout_p) @ v


def bench_decode(iters: int) -> None:
    """A decoding step's attention in bf16 and fp32: one query per head (Qwen3-0.6B's 16 heads over 8 kv heads
    of 128 dims) over growing caches, SDPA against ``one_query``, microseconds per call."""
    import torch.nn.functional as F

    print(f"machine: {machine_line()}")
    print("| dtype | keys | SDPA (us) | one_query (us) | SDPA / one_query |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for dtype in (torch.bfloat16, torch.float32):
        for keys in (64, 256, 1024, 2048):
            q, k, v = torch.randn(1, 16, 1, 128, dtype=dtype), *torch.randn(2, 1, 8, keys, 128, dtype=dtype)
            with torch.no_grad():
                sdpa = median_seconds(lambda: [F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                                               for _ in range(20)], iters=iters) / 20
                ours = median_seconds(lambda: [one_query(q, k, v) for _ in range(20)], iters=iters) / 20
            print(f"| {str(dtype)[6:]} | {keys} | {sdpa * 1e6:.0f} | {ours * 1e6:.0f} | {sdpa / ours:.2f}x |")


def bench_blockwise(iters: int) -> None:
    """Causal attention's forward and backward in bf16, as training calls it (no mask, no dropout): SDPA's flash
    kernel against ``blockwise_causal`` over 64 heads (GPT-2's 64 dims, and Qwen3's 128 with 2 query heads per
    key head), milliseconds per forward and backward."""
    import torch.nn.functional as F

    print(f"machine: {machine_line()}")
    print("| head dims | query heads per key head | tokens | SDPA (ms) | blockwise_causal (ms) | SDPA / blockwise |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for head_dim, group in ((64, 1), (128, 2)):
        for tokens in (256, 512, 1024):
            heads = 64 if tokens <= 512 else 16  # about the same work per call
            q = torch.randn(1, heads, tokens, head_dim, dtype=torch.bfloat16, requires_grad=True)
            k, v = (torch.randn(1, heads // group, tokens, head_dim, dtype=torch.bfloat16, requires_grad=True)
                    for _ in range(2))

            def step(attention):
                attention(q, k, v).float().sum().backward()
            sdpa = median_seconds(lambda: step(lambda *t: F.scaled_dot_product_attention(
                *t, is_causal=True, enable_gqa=group > 1)), iters=iters)
            ours = median_seconds(lambda: step(blockwise_causal), iters=iters)
            print(f"| {head_dim} | {group} | {tokens} | {sdpa * 1e3:.1f} | {ours * 1e3:.1f} | {sdpa / ours:.2f}x |")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.attention_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--emb-dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout on the attention weights, in training (default: 0)")
    p.add_argument("--bf16", action="store_true", help="under bf16 autocast, as the train CLI on a bf16 CPU")
    p.add_argument("--decode", action="store_true", help="a decoding step's attention instead (one query)")
    p.add_argument("--blockwise", action="store_true", help="bf16 training's attention: SDPA against blockwise_causal")
    args = p.parse_args(argv)
    if args.decode:
        return bench_decode(max(args.iters, 5))
    if args.blockwise:
        return bench_blockwise(max(args.iters, 5))

    d, h = args.emb_dim, args.heads
    torch.manual_seed(123)
    book = MultiHeadAttention(d, d, args.tokens, args.dropout, h)
    variants = {
        "wrapper (12 CausalAttention heads)": MultiHeadAttentionWrapper(d, d // h, args.tokens, args.dropout, h),
        "book MultiHeadAttention": book,
        "fast MHA (fused QKV + " + ("attend_with_dropout)" if args.dropout else "SDPA)"):
            FastMultiHeadAttention.from_book(book),
    }
    if args.dropout:
        variants["fast MHA, scores masked then scaled (before)"] = MaskThenScale.from_book(book)
        variants["fast MHA with SDPA's dropout (earlier)"] = SDPADropout.from_book(book)
    x = torch.randn(args.batch, args.tokens, d)

    def step(module):
        module.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = module(x)
        out.float().sum().backward()

    print(f"machine: {machine_line()}")
    print(f"input {tuple(x.shape)}, {h} heads, forward+backward, median of {args.iters}, dropout {args.dropout}"
          f"{', bf16 autocast' if args.bf16 else ''}")
    times = {name: median_seconds(lambda m=m: step(m), iters=args.iters) for name, m in variants.items()}
    ref = times["book MultiHeadAttention"]
    results = {}
    for name, t in times.items():
        results[name] = ref / t
        print(f"{name:46s} {t * 1000:9.1f} ms   speed vs book MHA: {ref / t:5.2f}x")
    return results


if __name__ == "__main__":
    main()
