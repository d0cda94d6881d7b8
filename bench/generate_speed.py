"""Greedy generation speed: the book's loop vs the KV cache, GPT-124M, random weights.

    python -m bench.generate_speed             # 200 new tokens, batch 1, CPU
    python -m bench.generate_speed --batched   # generate_batch: tokens/s for batches of 1, 4 and 16 prompts

Both loops start from "Hello, I am" with the same seed-123 weights; the script also
checks that they produce the same tokens.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.timing import machine_line
from ch03_attention.fast_attention import book_to_fast_state_dict
from ch04_gpt.config import GPT_CONFIG_124M
from ch04_gpt.generate import generate_batch, generate_text_cached, generate_text_simple
from ch04_gpt.model import GPTModel
from ch04_gpt.previous_chapters import gpt2_tokenizer


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--prompt", default="Hello, I am")
    p.add_argument("--batched", action="store_true", help="time generate_batch at batch 1, 4 and 16 instead")
    args = p.parse_args(argv)
    if args.batched:
        return batched(args.new_tokens)

    torch.manual_seed(123)
    book = GPTModel(GPT_CONFIG_124M, impl="book").eval()
    fast = GPTModel(GPT_CONFIG_124M).eval()
    fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
    idx = torch.tensor([gpt2_tokenizer().encode(args.prompt)])
    ctx, n = GPT_CONFIG_124M["context_length"], args.new_tokens

    generate_text_cached(fast, idx, 5, ctx)  # warm-up
    runs = {
        "book loop (generate_text_simple, book layers)": lambda: generate_text_simple(book, idx, n, ctx),
        "book loop, fast layers": lambda: generate_text_simple(fast, idx, n, ctx),
        "KV cache (generate_text_cached, fast layers)": lambda: generate_text_cached(fast, idx, n, ctx),
    }
    print(f"machine: {machine_line()}")
    print(f"GPT-124M (seed 123), prompt {args.prompt!r}, {n} new tokens, batch 1")
    outs, rates = {}, {}
    for name, fn in runs.items():
        outs[name], seconds = timed(fn)
        rates[name] = n / seconds
        print(f"{name:50s} {seconds:7.2f} s  {rates[name]:7.1f} tokens/s")
    ref = next(iter(rates.values()))
    for name, rate in rates.items():
        print(f"{name:50s} speed vs book loop: {rate / ref:5.1f}x")
    same = all(torch.equal(o, outs[next(iter(outs))]) for o in outs.values())
    print("identical tokens:", same)
    return rates


def batched(n, sizes=(1, 4, 16)):
    """New tokens per second of ``generate_batch`` for batches of prompts of different lengths (3 to 18 tokens)."""
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG_124M).eval()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 50257, (3 + i % 16,), generator=g).tolist() for i in range(max(sizes))]
    generate_batch(model, prompts[:2], 3)  # warm-up
    print(f"machine: {machine_line()}")
    print(f"GPT-124M (seed 123), {n} new tokens per prompt, prompts of 3-18 tokens, greedy, fp32")
    print("| batch | seconds | new tokens/s | vs batch 1 |\n| ---: | ---: | ---: | ---: |")
    rates = {}
    for size in sizes:
        _, seconds = timed(lambda: generate_batch(model, prompts[:size], n))
        rates[size] = size * n / seconds
        print(f"| {size} | {seconds:.2f} | {rates[size]:.1f} | {rates[size] / rates[sizes[0]]:.2f}x |")
    return rates


if __name__ == "__main__":
    main()
