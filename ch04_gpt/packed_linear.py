"""Linear layers with their weights packed once for decoding on a CPU.

Unlike ``nn.Linear`` (whose weight oneDNN reorders into its blocked layout again on every call, or which
falls back to a plain matrix-vector kernel): ``PackedLinear`` holds the weight already in oneDNN's layout,
so a decoding step, one token's matrix-vector product per layer, reads the weights at close to the memory's
speed (bench/README.md compares it with nn.Linear for one row, in fp32 and bf16). Inference only: the
packed weight is a buffer, not a parameter, so a packed model is for generating, not for training.

>>> layer = torch.nn.Linear(64, 32)
>>> x = torch.randn(2, 5, 64)
>>> packed = PackedLinear(layer)
>>> bool(torch.allclose(packed(x), layer(x), atol=1e-5)) if can_pack(torch.float32) else True
True
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ch02_text.hardware import intel_cpu

from .feed_forward import ACTIVATIONS, GatedFeedForward


def can_pack(dtype: torch.dtype, device: torch.device | str = "cpu") -> bool:
    """Whether this PyTorch packs linear weights for ``dtype`` on ``device`` (CPU with oneDNN; bf16 where oneDNN
    runs it natively)."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


def packing_pays(dtype: torch.dtype) -> bool:
    """Whether packed weights decode faster than ``nn.Linear`` on this CPU, as measured (bench/README.md): in
    bf16 everywhere, in fp32 not on Intel CPUs, whose fp32 ``nn.Linear`` runs MKL's matrix-vector kernel at
    memory speed already, while on AMD's packing pays in fp32 too."""
    return dtype != torch.float32 or not intel_cpu()


class PackedLinear(nn.Module):
    """``nn.Linear``'s forward with the weight in oneDNN's layout (packed once, for single rows)."""

    def __init__(self, linear: nn.Linear, rows: int = 1):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # laid out for ``rows`` rows per call (1: a decoding step; more: the server's batched steps)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    @classmethod
    def stacked(cls, linears, rows: int = 1) -> "PackedLinear":
        """One packed layer computing several linears of the same input, their outputs side by side."""
        first = linears[0]
        both = nn.Linear(first.in_features, sum(m.out_features for m in linears), bias=first.bias is not None,
                         device="meta")
        both.weight = nn.Parameter(torch.cat([m.weight.detach() for m in linears]), requires_grad=False)
        if first.bias is not None:
            both.bias = nn.Parameter(torch.cat([m.bias.detach() for m in linears]), requires_grad=False)
        return cls(both, rows)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)  # (b * num_tokens, in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class PackedGatedFeedForward(nn.Module):
    """``GatedFeedForward`` with gate and up in one packed matmul (one weight read, one call), down packed."""

    def __init__(self, ff: GatedFeedForward, rows: int = 1):
        super().__init__()
        self.hidden, self.activation = ff.fc1.out_features, ff.activation
        self.gate_up = PackedLinear.stacked([ff.fc1, ff.fc2], rows)
        self.fc3 = PackedLinear(ff.fc3, rows)

    def forward(self, x):
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.fc3(ACTIVATIONS[self.activation](gate) * up)


def pack_for_decoding(model: nn.Module, where_it_pays: bool = True, rows: int = 1) -> int:
    """Replace every ``nn.Linear`` of ``model`` by a ``PackedLinear`` (a gated MLP's gate and up stacked into one)
    where the model's dtype and device allow it (see ``can_pack``) and, with ``where_it_pays``, where it is the
    faster (``packing_pays``); returns how many linears were packed. ``rows``: the rows a step computes (the
    layout oneDNN picks for them). Do it last: the packed model cannot change dtype or device, and trains no
    more."""
    first = next(model.parameters())
    if not can_pack(first.dtype, first.device) or (where_it_pays and not packing_pays(first.dtype)):
        return 0
    count = 0
    for kind, packed in ((GatedFeedForward, PackedGatedFeedForward), (nn.Linear, PackedLinear)):
        targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
                   if type(child) is kind]
        for parent, name, child in targets:
            setattr(parent, name, packed(child, rows))
        count += len(targets) * (3 if kind is GatedFeedForward else 1)
    return count
