"""The device a run uses and what its processor can do (bf16 matmuls, vendor).

>>> pick_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import torch

from .errors import UserInputError


def pick_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"`` picks cuda, then mps, then cpu; anything else is taken as asked.

    >>> pick_device("cpu").type
    'cpu'
    """
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("device 'cuda' asked for but CUDA is not available: use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError("device 'mps' asked for but MPS is not available: use --device cpu")
    return device


def bf16_supported(device: torch.device) -> bool:
    """bf16 matmuls in hardware: AVX512-BF16/AMX on CPU, a bf16 GPU on CUDA."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        flags = cpu_info()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def cpu_info() -> str:
    """The text of ``/proc/cpuinfo`` (flags, vendor), or "" where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def intel_cpu() -> bool:
    """Whether the processor is Intel's (``vendor_id: GenuineIntel``): MKL, PyTorch's fp32 matmul library on
    x86, is tuned for these."""
    return "GenuineIntel" in cpu_info()
