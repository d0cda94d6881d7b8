"""Greedy generation speed: the book's loop vs the KV cache, GPT-124M, random weights.

    python -m bench.generate_speed             # 200 new tokens, batch 1, CPU
    python -m bench.generate_speed --batched   # generate_batch: tokens/s for batches of 1, 4 and 16 prompts
    python -m bench.generate_speed --dtypes --checkpoint checkpoints/model_and_optimizer.pth
        # fp32 vs bf16 decoding against the memory-bandwidth limit, transformers beside them, and how often
        # bf16's greedy choice differs from fp32's on the validation text (teacher-forced, chapter-5 model)

Both loops start from "Hello, I am" with the same seed-123 weights; the script also
checks that they produce the same tokens.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.timing import machine_line
from ch03_attention.fast_attention import book_to_fast_state_dict
from ch04_gpt.config import GPT_CONFIG_124M, estimate
from ch04_gpt.generate import generate_batch, generate_text_cached, generate_text_simple
from ch04_gpt.model import GPTModel
from ch04_gpt.packed_linear import MatVecLinear, PackedLinear, decoding_layer, pack_for_decoding
from ch04_gpt.previous_chapters import gpt2_tokenizer


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.generate_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--prompt", default="Hello, I am")
    p.add_argument("--batched", action="store_true", help="time generate_batch at batch 1, 4 and 16 instead")
    p.add_argument("--dtypes", action="store_true", help="fp32 vs bf16 decoding and the bandwidth limit instead")
    p.add_argument("--checkpoint", default="checkpoints/model_and_optimizer.pth",
                   help="--dtypes: the chapter-5 model for the greedy-agreement check")
    args = p.parse_args(argv)
    if args.batched:
        return batched(args.new_tokens)
    if args.dtypes:
        return dtypes(args.new_tokens, args.checkpoint)

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


def memory_bandwidth(megabytes=512, repeats=5) -> float:
    """Bytes per second of a large copy (each byte read once and written once), best of ``repeats``."""
    src = torch.ones(megabytes * 2 ** 20 // 4)
    dst = torch.empty_like(src)
    best = min(timed(lambda: dst.copy_(src))[1] for _ in range(repeats))
    return 2 * src.numel() * 4 / best


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decoding step reads: everything but the two embedding look-ups (the head is read),
    and of a mixture of experts only the experts a token is routed to."""
    positions = model.pos_emb.weight.numel() if hasattr(model, "pos_emb") else 0  # RoPE: none
    lookups = model.tok_emb.weight.numel() * (0 if model.cfg.tie_weights else 1) + positions
    params = sum(p.numel() for p in model.parameters())
    e = estimate(model.cfg)
    active = params - (e["params"] - e["active_params"])  # the experts not routed to are not read
    return (active - lookups) * next(model.parameters()).element_size()


def greedy_agreement(checkpoint):
    """Teacher-forced over the-verdict's validation text: share of positions whose greedy token differs
    between fp32 and bf16, and the largest logit difference, for the chapter-5 model."""
    from ch02_text.data_files import read_data_text
    from ch05_pretraining.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    model.eval()
    text = read_data_text("the-verdict.txt")
    ids = torch.tensor(gpt2_tokenizer().encode(text[int(0.9 * len(text)):]))
    ctx = model.context_length
    windows = ids[: len(ids) // ctx * ctx].view(-1, ctx)
    with torch.no_grad():
        fp32 = model(windows)
        bf16 = model.to(torch.bfloat16)(windows).float()
    differ = (fp32.argmax(-1) != bf16.argmax(-1)).float().mean().item()
    return differ, (fp32 - bf16).abs().max().item(), windows.numel()


def dtypes(n, checkpoint, rounds=4):
    """The book loop once; each cached loop best of ``rounds - 1`` alternating rounds after a warm-up."""
    torch.manual_seed(123)
    book = GPTModel(GPT_CONFIG_124M, impl="book").eval()
    fast = GPTModel(GPT_CONFIG_124M).eval()
    fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
    idx = torch.tensor([gpt2_tokenizer().encode("Hello, I am")])
    ctx = GPT_CONFIG_124M["context_length"]
    bandwidth = memory_bandwidth()
    bf16 = GPTModel(GPT_CONFIG_124M).eval()
    bf16.load_state_dict(fast.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    packed = {}
    for name, model, layer in (("fp32", fast, PackedLinear), ("bf16", bf16, PackedLinear),
                               ("bf16 matvec", bf16, MatVecLinear)):  # the layers generate may pick
        packed[name] = GPTModel(GPT_CONFIG_124M).eval().to(model.tok_emb.weight.dtype)
        packed[name].load_state_dict(model.state_dict())
        pack_for_decoding(packed[name], layer=layer)
    runs = {"book loop (generate_text_simple), fp32": (book, lambda: generate_text_simple(book, idx, n, ctx)),
            "KV cache, fp32": (fast, lambda: generate_text_cached(fast, idx, n, ctx)),
            "KV cache, bf16": (bf16, lambda: generate_text_cached(bf16, idx, n, ctx)),
            "KV cache, fp32, packed weights": (
                fast, lambda: generate_text_cached(packed["fp32"], idx, n, ctx)),
            "KV cache, bf16, packed weights": (
                bf16, lambda: generate_text_cached(packed["bf16"], idx, n, ctx)),
            "KV cache, bf16, ATen's matrix-vector products (MatVecLinear)": (
                bf16, lambda: generate_text_cached(packed["bf16 matvec"], idx, n, ctx))}
    try:
        import tempfile

        import transformers

        from ch05_pretraining.gpt2_weights import export_gpt2_safetensors

        with tempfile.TemporaryDirectory() as tmp:
            export_gpt2_safetensors(fast, tmp)
            hf = transformers.GPT2LMHeadModel.from_pretrained(tmp).eval()
        runs["transformers GPT2LMHeadModel.generate (its cache), fp32"] = (fast, lambda: hf.generate(
            idx, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=50256))
    except ImportError:
        pass
    print(f"machine: {machine_line()}; memory bandwidth (copy) {bandwidth / 1e9:.1f} GB/s")
    print(f"GPT-124M (seed 123), {n} new tokens, batch 1, greedy; cached loops best of {rounds - 1} rounds")
    print("| decoding | tokens/s | weight bytes per token | limit (bandwidth / bytes) | share of the limit |")
    print("| --- | ---: | ---: | ---: | ---: |")
    seconds = {name: timed(fn)[1] for name, (_, fn) in runs.items()}  # the book loop's only timing
    cached = [name for name in runs if "book loop" not in name]
    seconds.update({name: float("inf") for name in cached})  # that first call was their warm-up
    for _ in range(rounds - 1):  # alternating rounds of the cached loops, so drift on a shared VM hits all
        for name in cached:
            seconds[name] = min(seconds[name], timed(runs[name][1])[1])
    rates = {}
    for name, (model, fn) in runs.items():
        rates[name] = n / seconds[name]
        per_token = weight_bytes_per_token(model)
        limit = bandwidth / per_token
        print(f"| {name} | {rates[name]:.1f} | {per_token / 1e6:.0f} MB | {limit:.0f} | {rates[name] / limit:.0%} |")
    same = torch.equal(runs["KV cache, fp32"][1](), runs["book loop (generate_text_simple), fp32"][1]())
    print(f"fp32 KV cache = book loop, token for token: {same}")
    same = torch.equal(runs["KV cache, fp32, packed weights"][1](),
                       runs["book loop (generate_text_simple), fp32"][1]())
    print(f"fp32 packed = book loop, token for token: {same}")
    picks = {dtype: getattr(decoding_layer(dtype), "__name__", "nn.Linear")
             for dtype in (torch.bfloat16, torch.float32)}
    print(f"generate here: bf16 {picks[torch.bfloat16]}, --dtype float32 {picks[torch.float32]} (decoding_layer)")
    differ, max_diff, positions = greedy_agreement(checkpoint)
    print(f"bf16 vs fp32, teacher-forced over the-verdict's validation text ({positions} positions, "
          f"{checkpoint}): greedy choice differs at {differ:.2%}, largest logit difference {max_diff:.3f}")
    return rates


if __name__ == "__main__":
    main()
