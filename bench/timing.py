"""Timing helpers shared by the bench scripts: median wall time of repeated calls, whole commands timed from
outside with their peak memory, and the GPT-124M start the fine-tuning benches share.

    python -m bench.timing MODULE [OPTIONS...]   # run a command, then print this process's peak memory
"""

from __future__ import annotations

import platform
import re
import resource
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def median_seconds(fn, iters: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def whole_command(argv) -> tuple[float, float, str]:
    """Seconds, peak MiB (the process's maximum resident set) and the output of the command line ``argv`` (a
    module and its options), run as a process of its own and timed from outside."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.timing", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    peak = float(re.findall(r"peak (\d+) KiB", done.stdout)[-1]) / 1024
    return seconds, peak, done.stdout


def gpt124m_start(folder: Path) -> Path:
    """GPT-124M with qkv bias freshly initialised under seed 123, written as GPT-2's model.safetensors is (the
    file readers start chapters 6 and 7 from; GPT-2's own weights cannot be downloaded here, and the work is
    the same)."""
    from ch04_gpt.config import GPT_CONFIG_124M
    from ch04_gpt.model import GPTModel
    from ch05_pretraining.gpt2_weights import export_gpt2_safetensors

    torch.manual_seed(123)
    model = GPTModel({**GPT_CONFIG_124M, "context_length": 1024, "qkv_bias": True, "drop_rate": 0.0}, impl="book")
    return export_gpt2_safetensors(model, folder)


def child(argv) -> None:
    """Run the command line ``argv`` (a module and its options) here, then print this process's peak memory."""
    sys.argv = [argv[0], *argv[1:]]
    try:
        runpy.run_module(argv[0], run_name="__main__")
    finally:
        print(f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB", flush=True)


if __name__ == "__main__":
    child(sys.argv[1:])
