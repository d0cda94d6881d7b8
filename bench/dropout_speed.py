"""Dropout of one GPT-124M training step (context 256, batch 2): PyTorch's vs ``GeneratorDropout``.

    python -m bench.dropout_speed

One step of the chapter-5 model drops 25 activations of (2, 256, 768) (embeddings, and two shortcuts per
block) and 12 attention-weight tensors of (2, 12, 256, 256). Both variants run forward and backward over
exactly these tensors, in alternating rounds; the median round is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.timing import machine_line
from ch03_attention.generator_dropout import GeneratorDropout
from ch05_pretraining.engine.runtime import keep_freed_memory, physical_cores

SHAPES = [(2, 256, 768)] * 25 + [(2, 12, 256, 256)] * 12


def one_step(dropout, tensors):
    for x in tensors:
        dropout(x).backward(torch.ones_like(x))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.dropout_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds; the median is reported")
    rounds = p.parse_args(argv).rounds
    torch.set_num_threads(physical_cores())
    keep_freed_memory()
    tensors = [torch.randn(shape, requires_grad=True) for shape in SHAPES]
    variants = {"PyTorch's dropout (global generator, bernoulli_)": lambda x: F.dropout(x, 0.1, training=True),
                "GeneratorDropout (own generator, 4 masks per 64-bit draw)":
                    GeneratorDropout(0.1, torch.Generator().manual_seed(0))}
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, dropout in variants.items():
            start = time.perf_counter()
            one_step(dropout, tensors)
            times[name].append(time.perf_counter() - start)
    print(f"machine: {machine_line()}; {sum(torch.Size(s).numel() for s in SHAPES):,} elements per step")
    base = statistics.median(times[next(iter(variants))])
    for name, t in times.items():
        median = statistics.median(t)
        print(f"{name}: {1e3 * median:.0f} ms per step, forward + backward ({base / median:.2f}x)")


if __name__ == "__main__":
    main()
