"""Training speed: the book's loop vs the fast path, GPT-124M, context 256, batch 2, the-verdict.

    python -m bench.train_speed                 # 10 timed steps per variant
    python -m bench.train_speed --breakdown     # also the steps in between: where the speed-up comes from
    python -m bench.train_speed --parity        # also the full 10 epochs of both: final losses

The variants take turns in blocks of steps (so background noise hits them alike) on the
same batches, each block starting with untimed warm-up steps after setting the variant's
allocator mode (the book loop runs with glibc's defaults, as readers run it; glibc needs
a couple of steps to hold the freed blocks the fast path reuses). Each step is zero_grad +
forward + backward + optimizer step, timed with the trainer's own code. MFU = training
tokens/s x training FLOPs per token / matmul peak, the peak measured in the same run
(4096^3 matmuls in bf16 and fp32).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch

from bench.timing import machine_line
from ch02_text.data_files import read_data_text
from ch05_pretraining.previous_chapters import GPTModel, estimate, gpt2_tokenizer, model_config
from ch05_pretraining.engine.runtime import bf16_supported, keep_freed_memory, physical_cores
from ch05_pretraining.engine.trainer import Trainer, TrainSettings, TrainState, make_optimizer


def matmul_peak(dtype, n=4096, iters=5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    return 2 * n ** 3 * iters / (time.perf_counter() - start)


def make_loaders(context_length=256, batch_size=2):
    from ch05_pretraining.previous_chapters import create_dataloader_v1

    text = read_data_text("the-verdict.txt")
    split = int(0.9 * len(text))
    torch.manual_seed(123)
    return (create_dataloader_v1(text[:split], batch_size, context_length, context_length, True, True),
            create_dataloader_v1(text[split:], batch_size, context_length, context_length, False, False))


def variant(name, impl, amp, fused, train_loader, val_loader, epochs=1, eval_freq=10 ** 9, use_compile=False):
    """(name, Trainer) for one way of training; ``impl``/``amp``/``fused``: model layers, bf16, fused AdamW."""
    cfg = model_config("gpt2-small", context_length=256, impl=impl)
    torch.manual_seed(123)
    model = GPTModel(cfg)
    if use_compile:
        model = torch.compile(model)
    optimizer = make_optimizer(model, lr=4e-4, weight_decay=0.1, fused=fused)
    settings = TrainSettings(epochs=epochs, eval_freq=eval_freq, amp_dtype=torch.bfloat16 if amp else None,
                             loss_by_rows=impl == "fast")  # the train CLI's loss on a CPU
    return name, Trainer(model, optimizer, train_loader, val_loader, "cpu", settings, tokenizer=gpt2_tokenizer(),
                         log=lambda *a: None)


def timed_steps(variants, batches, warmup, heap, rounds):
    """Median seconds per step; variants run in alternating blocks (allocator set per block,
    ``warmup`` untimed steps at the start of every block)."""
    times = {name: [] for name, _ in variants}
    state = {name: TrainState() for name, _ in variants}
    per_block = max(1, (len(batches) - warmup) // rounds)
    for r in range(rounds):
        block = batches[:warmup] + batches[warmup + r * per_block: warmup + (r + 1) * per_block]
        for name, trainer in variants:
            keep_freed_memory(heap[name])
            for i, (x, y) in enumerate(block):
                start = time.perf_counter()
                trainer.optimizer.zero_grad()
                trainer.backward(x, y)
                trainer.optimizer_step(state[name])
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every block (2)")
    p.add_argument("--rounds", type=int, default=2, help="blocks per variant, taken in turns (2)")
    p.add_argument("--breakdown", action="store_true",
                   help="also time the book loop with the heap kept, and the fast path in fp32")
    p.add_argument("--compile", action="store_true",
                   help="also time the fast path under torch.compile (compiles first: minutes)")
    p.add_argument("--parity", action="store_true", help="also train both for the book's 10 epochs")
    args = p.parse_args(argv)

    torch.set_num_threads(physical_cores())
    amp = bf16_supported(torch.device("cpu"))
    train_loader, val_loader = make_loaders()
    batches = []
    while len(batches) < args.steps + args.warmup:
        batches.extend(train_loader)
    batches = batches[: args.steps + args.warmup]

    book_name = "book loop (book layers, fp32, AdamW)"
    fast_name = "fast path (fast layers, bf16, fused AdamW, heap kept)"
    # (name, impl, bf16 autocast, fused AdamW, heap kept, torch.compile)
    specs = [(book_name, "book", False, False, False, False)]
    if args.breakdown:
        specs += [("book loop, heap kept", "book", False, False, True, False),
                  ("fast layers, fp32, fused AdamW, heap kept", "fast", False, True, True, False)]
    specs += [(fast_name, "fast", amp, True, True, False)]
    if args.compile:
        specs += [("fast path + torch.compile", "fast", amp, True, True, True)]
    variants = [variant(name, impl, v_amp, fused, train_loader, val_loader, use_compile=compiled)
                for name, impl, v_amp, fused, _, compiled in specs]
    heap = {spec[0]: spec[4] for spec in specs}  # switched before each block
    peaks = [(matmul_peak(torch.bfloat16), matmul_peak(torch.float32))]
    seconds = timed_steps(variants, batches, args.warmup, heap, args.rounds)
    keep_freed_memory(False)
    peaks.append((matmul_peak(torch.bfloat16), matmul_peak(torch.float32)))
    # the higher of the peaks measured before and after the steps (the conservative MFU)
    peak_bf16, peak_fp32 = (max(p) for p in zip(*peaks))
    flops_per_token = estimate(model_config("gpt2-small", context_length=256))["train_flops_per_token"]
    tokens_per_step = batches[0][0].numel()

    print(f"machine: {machine_line()}; bf16 autocast: {amp}")
    print(f"GPT-124M, context 256, batch 2: {tokens_per_step} tokens/step, "
          f"{flops_per_token / 1e6:.0f} MFLOP/token; median of {args.steps} steps per variant "
          f"({args.rounds} blocks, {args.warmup} warm-up steps each)")
    print(f"matmul peak (4096^3, higher of before/after): bf16 {peak_bf16 / 1e9:.0f} GFLOP/s "
          f"({' / '.join(f'{p[0] / 1e9:.0f}' for p in peaks)}), fp32 {peak_fp32 / 1e9:.0f} GFLOP/s "
          f"({' / '.join(f'{p[1] / 1e9:.0f}' for p in peaks)})")
    book = seconds[variants[0][0]]
    result = {}
    for name, _, v_amp, *_ in specs:
        peak = peak_bf16 if v_amp else peak_fp32
        rate = tokens_per_step / seconds[name]
        mfu = rate * flops_per_token / peak
        result[name] = {"tokens_per_s": rate, "speedup": book / seconds[name], "mfu": mfu}
        print(f"{name:55s} {seconds[name]:6.2f} s/step {rate:7.1f} tok/s  {book / seconds[name]:4.2f}x  "
              f"MFU {100 * mfu:4.1f}% of its dtype's peak")
    fast_rate = result[fast_name]["tokens_per_s"]
    print(f"fast path MFU against the bf16 peak: {100 * fast_rate * flops_per_token / peak_bf16:.1f}%")

    if args.parity:
        print("\n10 epochs of each (eval every 5 steps, 5 batches), final train/val loss:")
        for name, attn, v_amp, fused in (("book loop", "book", False, False), ("fast path", "fast", amp, True)):
            keep_freed_memory(name == "fast path")
            tl, vl = make_loaders()
            _, trainer = variant(name, attn, v_amp, fused, tl, vl, epochs=10, eval_freq=5)
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                state = trainer.fit()
            print(f"  {name:10s} train {state.train_losses[-1]:.3f}  val {state.val_losses[-1]:.3f}  "
                  f"({(time.perf_counter() - start) / 60:.1f} min)")
            result[name] = {**result.get(name, {}), "final": (state.train_losses[-1], state.val_losses[-1])}
    return result


if __name__ == "__main__":
    main()
