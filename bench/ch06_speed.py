"""Chapter 6's whole run: the book's loop (train --book) against the default fast path, as whole processes.

    python -m bench.ch06_speed                 # the book's 5 epochs each (an hour or more on 2 cores)
    python -m bench.ch06_speed --epochs 1      # one epoch each

Both start from one saved initial state (the book's GPT-124M with qkv bias, freshly initialised under seed 123,
written as GPT-2's model.safetensors: GPT-2's own weights cannot be downloaded here, and the work is the same), on the SMS Spam
Collection, and run in turn; each is timed from outside (start-up, data, training, every evaluation and the final
accuracies included) and its peak memory is its maximum resident set. The fast path's frozen blocks run once
per text (a cache of their outputs), the rest under bf16 autocast where the processor has it.
"""

from __future__ import annotations

import argparse
import re
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.timing import machine_line


def initial_state(folder: Path) -> Path:
    """GPT-124M freshly initialised under seed 123, written as GPT-2's model.safetensors is (the file readers
    start chapter 6 from)."""
    from ch04_gpt.config import GPT_CONFIG_124M
    from ch04_gpt.model import GPTModel
    from ch05_pretraining.gpt2_weights import export_gpt2_safetensors

    torch.manual_seed(123)
    model = GPTModel({**GPT_CONFIG_124M, "context_length": 1024, "qkv_bias": True, "drop_rate": 0.0}, impl="book")
    return export_gpt2_safetensors(model, folder)


def run(argv) -> tuple[float, float, str]:
    """Seconds, peak MiB and the output of one process (run through ``--child``, which reports its peak)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.ch06_speed", "--child", *argv], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    peak = float(re.findall(r"peak (\d+) KiB", done.stdout)[-1]) / 1024
    return seconds, peak, done.stdout


def child(argv) -> None:
    """Run the command line ``argv`` (a module and its options) here, then print this process's peak memory."""
    sys.argv = [argv[0], *argv[1:]]
    try:
        runpy.run_module(argv[0], run_name="__main__")
    finally:
        print(f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.ch06_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5, help="epochs of each run (the book's 5)")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    print(f"machine: {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        start = initial_state(Path(tmp) / "gpt124m")
        results = {}
        for name, extra in (("default fast path", []), ("--book (the book's loop)", ["--book"])):
            seconds, peak, out = run(["ch06_classification.train", "--init-from", str(start), "--epochs",
                                      str(args.epochs), "--no-progress", "--out", f"{tmp}/c.pt", *extra])
            test = re.findall(r"Test accuracy: ([\d.]+)%", out)[-1]
            results[name] = seconds
            print(f"{name:<28} {seconds / 60:7.2f} min  peak {peak:6.0f} MiB  test accuracy {test} %", flush=True)
    fast, book = results.values()
    print(f"the default path: {book / fast:.2f}x the book's loop over {args.epochs} epoch(s)")


if __name__ == "__main__":
    main()
