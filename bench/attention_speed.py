"""Forward+backward time of the book's attention classes vs the fused SDPA fast path.

    python -m bench.attention_speed            # (8, 1024, 768), 12 heads, CPU

Prints seconds per forward+backward and each variant's speed relative to the book MHA.
"""

from __future__ import annotations

import argparse

import torch

from bench.timing import machine_line, median_seconds
from ch03_attention.attention import MultiHeadAttention, MultiHeadAttentionWrapper
from ch03_attention.fast_attention import FastMultiHeadAttention


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.attention_speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--emb-dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--iters", type=int, default=3)
    args = p.parse_args(argv)

    d, h = args.emb_dim, args.heads
    torch.manual_seed(123)
    book = MultiHeadAttention(d, d, args.tokens, 0.0, h)
    variants = {
        "wrapper (12 CausalAttention heads)": MultiHeadAttentionWrapper(d, d // h, args.tokens, 0.0, h),
        "book MultiHeadAttention": book,
        "fast MHA (fused QKV + SDPA)": FastMultiHeadAttention.from_book(book),
    }
    x = torch.randn(args.batch, args.tokens, d)

    def step(module):
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    print(f"machine: {machine_line()}")
    print(f"input {tuple(x.shape)}, {h} heads, forward+backward, median of {args.iters}")
    times = {name: median_seconds(lambda m=m: step(m), iters=args.iters) for name, m in variants.items()}
    ref = times["book MultiHeadAttention"]
    results = {}
    for name, t in times.items():
        results[name] = ref / t
        print(f"{name:38s} {t * 1000:9.1f} ms   speed vs book MHA: {ref / t:5.2f}x")
    return results


if __name__ == "__main__":
    main()
