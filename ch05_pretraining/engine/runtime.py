"""Where training runs: bf16 support, physical cores, glibc's heap, and joining a torchrun job.

What this adds: the machine-level settings of the fast path, decided once per run in
``Runtime.choose`` (``--book`` turns them all off), so the trainer and the benches share them.

>>> Runtime.choose(torch.device("cpu"), book=True).impl
'book'
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ch02_text.hardware import bf16_supported  # noqa: F401 (re-exported for the benches)

from ..loss import eval_pass_tokens


def keep_freed_memory(keep: bool = True) -> bool:
    """Ask glibc to serve big blocks from its heap instead of fresh mmap()s, and not to trim it.

    Every training step frees and re-allocates the same large tensors (the 50257x768 embedding
    gradient, the logits). With glibc's defaults each one is a new mmap whose pages fault in
    again on every step; reusing heap memory avoids that (measured in bench/train_speed.py).
    ``keep=False`` restores glibc's default thresholds. Linux/glibc only; elsewhere a no-op.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    # mallopt takes a C int: the largest trim threshold is 2**31 - 1 (a bigger Python int
    # would wrap around to 0 and make glibc trim after every free).
    mmap_max, trim = (0, 2 ** 31 - 1) if keep else (65536, 128 * 1024)
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))
    except (OSError, AttributeError):
        return False


def seconds_since_process_start() -> float | None:
    """How long this process has run (Linux: from /proc), for a --breakdown that counts Python's own start and
    the imports; None where the system does not say."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: start time in ticks
    except (OSError, ValueError, IndexError):
        return None


def physical_cores() -> int:
    """Physical cores (hyper-threads share a core's matmul units), from /proc/cpuinfo."""
    cores, phys = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "physical id":
                    phys = value.strip()
                elif key.strip() == "core id":
                    cores.add((phys, value.strip()))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def init_distributed(device):
    """Under torchrun (WORLD_SIZE > 1) join the process group: gloo on CPU, nccl on CUDA.

    Returns ``(rank, world_size, device)``; a single process gets ``(0, 1, device)``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def average_gradients(model: torch.nn.Module) -> int:
    """Data-parallel training without a ``DistributedDataParallel`` wrapper, for a task that calls the model's
    parts (chapter 6's tail): every trainable parameter starts as rank 0's (a broadcast), and its gradient is
    averaged over the processes as soon as backward has accumulated it. Micro-batches accumulated into one step
    stay right: the part already averaged is the same on every rank. Returns how many parameters it hooks."""
    import torch.distributed as dist

    world_size = dist.get_world_size()

    def average(param):
        dist.all_reduce(param.grad)
        param.grad.div_(world_size)

    params = [p for p in model.parameters() if p.requires_grad]
    for param in params:
        dist.broadcast(param.data, src=0)
        param.register_post_accumulate_grad_hook(average)
    return len(params)


def finish_distributed(completed: bool = True) -> None:
    """Leave the torchrun job's process group together: after a completed run every rank waits at a
    barrier first (rank 0 may still be writing the checkpoint), then all destroy the group. A process
    that exits while its peers still use the group can abort in gloo's threads ("terminate called")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()


@dataclass(frozen=True)
class Runtime:
    """The fast path's settings, or the book's (``book=True``): chosen once per run."""

    impl: str                 # "fast" or "book" layers
    amp_dtype: torch.dtype | None
    fused_adamw: bool
    keep_heap: bool
    own_dropout: bool = False  # dropout masks from the model's own generator (use_generator_dropout)
    masks_ahead: bool = False  # the book's masks drawn ahead on two cores (use_prefetched_dropout): CPU only
    loss_by_rows: bool = False  # the loss and its gradient a few rows at a time (cross_entropy_by_rows): CPU only
    eval_in_passes: bool = False  # evaluations with several batches a pass (evaluate_in_passes): CPU only

    @classmethod
    def choose(cls, device: torch.device, book: bool = False, amp: bool = True,
               own_dropout: bool = False, shapes_vary: bool = False) -> "Runtime":
        """``shapes_vary``: batches of other lengths (chapter 7's): glibc's heap is left as it is, since kept
        blocks of ever other sizes only add up (a peak gigabytes higher for a few percent of speed: bench/README.md).

        >>> Runtime.choose(torch.device("cpu"), shapes_vary=True).keep_heap
        False
        """
        if book:
            return cls(impl="book", amp_dtype=None, fused_adamw=False, keep_heap=False)
        cpu = device.type == "cpu"
        return cls(impl="fast", amp_dtype=torch.bfloat16 if amp and bf16_supported(device) else None,
                   fused_adamw=device.type in ("cpu", "cuda"), keep_heap=cpu and not shapes_vary,
                   own_dropout=own_dropout,
                   masks_ahead=cpu and not own_dropout, loss_by_rows=cpu, eval_in_passes=cpu)

    def train_settings(self, vocab_size: int) -> dict:
        """The ``TrainSettings`` fields this runtime decides, for a model with ``vocab_size`` outputs.

        >>> Runtime.choose(torch.device("cpu"), book=True).train_settings(50257)
        {'amp_dtype': None, 'loss_by_rows': False, 'eval_pass_tokens': None}
        """
        return {"amp_dtype": self.amp_dtype, "loss_by_rows": self.loss_by_rows,
                "eval_pass_tokens": eval_pass_tokens(vocab_size) if self.eval_in_passes else None}

    def apply(self, device: torch.device, threads: int | None = None) -> None:
        """Set the process-wide parts: CPU threads (default: physical cores) and glibc's heap."""
        if device.type == "cpu":
            torch.set_num_threads(threads or physical_cores())
            if self.keep_heap:
                keep_freed_memory()
