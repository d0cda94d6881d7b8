"""Timing helper shared by the bench scripts: median wall time of repeated calls."""

from __future__ import annotations

import platform
import statistics
import time

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
