"""Linear layers laid out once for decoding on a CPU.

Unlike ``nn.Linear`` (whose weight oneDNN reorders into its blocked layout again on every call, or which
falls back to a plain matrix-vector kernel): ``PackedLinear`` holds the weight already in oneDNN's layout,
so a decoding step, one token's matrix-vector product per layer, reads the weights at close to the memory's
speed (bench/README.md compares it with nn.Linear for one row, in fp32 and bf16). ``MatVecLinear`` does
the same for one bf16 row through ATen's own matrix-vector kernel, which reads bf16 weights faster than
oneDNN's. ``pack_for_decoding`` puts in whichever is the faster here. Inference only: the laid-out weights
are plain tensors, not parameters, so a packed model is for generating, not for training.

>>> layer = torch.nn.Linear(64, 32)
>>> x = torch.randn(2, 5, 64)
>>> packed = PackedLinear(layer)
>>> bool(torch.allclose(packed(x), layer(x), atol=1e-5)) if can_pack(torch.float32) else True
True
"""

from __future__ import annotations

import threading

import torch
import torch.nn as nn
import torch.nn.functional as F

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
    memory speed already, while on AMD's packing pays in fp32 too. (For a single bf16 row ``MatVecLinear`` is
    faster still: ``decoding_layer`` picks.)"""
    return dtype != torch.float32 or not intel_cpu()


class PackedLinear(nn.Module):
    """``nn.Linear``'s forward with the weight in oneDNN's layout (packed once, for single rows)."""

    def __init__(self, linear: nn.Linear, rows: int = 1):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # laid out for ``rows`` rows per call (1: a decoding step; more: the server's batched steps)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)  # (b * num_tokens, in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def side_by_side(linears) -> nn.Linear:
    """One ``nn.Linear`` computing several linears of the same input, their outputs side by side (a copy)."""
    first = linears[0]
    both = nn.Linear(first.in_features, sum(m.out_features for m in linears), bias=first.bias is not None,
                     device="meta")
    both.weight = nn.Parameter(torch.cat([m.weight.detach() for m in linears]), requires_grad=False)
    if first.bias is not None:
        both.bias = nn.Parameter(torch.cat([m.bias.detach() for m in linears]), requires_grad=False)
    return both


# ATen's bf16 matrix-vector kernel reads rows of up to about this many columns at memory speed, longer ones
# slower (8192: about three quarters of it on the AMD EPYC of bench/README.md): longer rows are cut in pieces
COLUMNS_PER_PIECE = 4096
ONEDNN_SWITCH = threading.Lock()  # held while a MatVecLinear has oneDNN switched off


class MatVecLinear(nn.Module):
    """``nn.Linear``'s forward with one row at a time through ATen's own matrix-vector kernel (bf16 decoding).

    Unlike ``PackedLinear``: the weight keeps its plain layout (a tied head shares the embedding's tensor; no
    copy unless its rows are cut), and a single row's product runs with oneDNN switched off for its duration,
    so that ATen's vectorised dot products (fp32 sums) read the bf16 weight at memory speed, where oneDNN's
    kernels read it about a quarter slower on the CPUs measured. The switch is process-wide for those
    microseconds: another thread's product in that time takes ATen's kernel too (the same result, slower), and
    a lock keeps two threads' switches from interleaving.
    Rows longer than ``COLUMNS_PER_PIECE`` are cut into pieces whose products are added. Several rows (a
    prompt) go through oneDNN, as ``nn.Linear`` does.

    >>> layer = torch.nn.Linear(64, 32).to(torch.bfloat16)
    >>> x = torch.randn(1, 64, dtype=torch.bfloat16)
    >>> bool(torch.allclose(MatVecLinear(layer)(x), layer(x), atol=2e-2, rtol=2e-2))
    True
    """

    def __init__(self, linear: nn.Linear, rows: int = 1):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        pieces = -(-self.in_features // COLUMNS_PER_PIECE)
        width, wider = divmod(self.in_features, pieces)  # as even as can be: the first ``wider`` one column more
        self.widths = [width + 1] * wider + [width] * (pieces - wider)
        self.pieces = [weight] if pieces == 1 else [w.contiguous() for w in weight.split(self.widths, dim=1)]
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def products(self, rows):
        parts = rows.split(self.widths, dim=-1) if len(self.pieces) > 1 else (rows,)
        out = F.linear(parts[0], self.pieces[0], self.bias)
        for part, piece in zip(parts[1:], self.pieces[1:]):
            out.addmm_(part, piece.t())
        return out

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)  # (b * num_tokens, in_features)
        if rows.shape[0] != 1:
            return self.products(rows).view(*x.shape[:-1], self.out_features)
        with ONEDNN_SWITCH:  # two threads switching at once could otherwise leave oneDNN off for good
            was = torch._C._get_mkldnn_enabled()
            torch._C._set_mkldnn_enabled(False)  # ATen's matrix-vector kernel, not oneDNN's
            try:
                out = self.products(rows)
            finally:
                torch._C._set_mkldnn_enabled(was)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"pieces={len(self.pieces)}")


class PackedGatedFeedForward(nn.Module):
    """``GatedFeedForward`` with gate and up in one laid-out layer (one weight read, one call), down laid out
    too (``layer``: ``PackedLinear`` or ``MatVecLinear``)."""

    def __init__(self, ff: GatedFeedForward, rows: int = 1, layer=PackedLinear):
        super().__init__()
        self.hidden, self.activation = ff.fc1.out_features, ff.activation
        self.gate_up = layer(side_by_side([ff.fc1, ff.fc2]), rows)
        self.fc3 = layer(ff.fc3, rows)

    def forward(self, x):
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.fc3(ACTIVATIONS[self.activation](gate) * up)


def decoding_layer(dtype: torch.dtype, device: torch.device | str = "cpu", rows: int = 1):
    """The linear layer class that decodes ``rows`` rows per step fastest here, or None for ``nn.Linear`` as it
    is, as measured (bench/README.md): ``MatVecLinear`` for one bf16 row on a CPU, ``PackedLinear`` for several
    bf16 rows and for fp32 where packing pays (``packing_pays``: not on Intel's CPUs).

    >>> decoding_layer(torch.bfloat16).__name__, decoding_layer(torch.float32, "cuda")
    ('MatVecLinear', None)
    """
    if torch.device(device).type != "cpu":
        return None
    if dtype == torch.bfloat16 and rows == 1:
        return MatVecLinear
    return PackedLinear if can_pack(dtype, device) and packing_pays(dtype) else None


def pack_for_decoding(model: nn.Module, rows: int = 1, layer=None) -> int:
    """Replace every ``nn.Linear`` of ``model`` by the layer that decodes fastest here (``decoding_layer``; a
    gated MLP's gate and up stacked into one), or by ``layer`` (``PackedLinear`` or ``MatVecLinear``) where the
    model's dtype and device allow it; returns how many linears were replaced. ``rows``: the rows a step
    computes (the layout oneDNN picks for them). Do it last: the packed model cannot change dtype or device,
    and trains no more."""
    first = next(model.parameters())
    if layer is None:
        layer = decoding_layer(first.dtype, first.device, rows)
    elif first.device.type != "cpu" or (layer is PackedLinear and not can_pack(first.dtype, first.device)):
        layer = None
    if layer is None:
        return 0
    count = 0
    for kind in (GatedFeedForward, nn.Linear):
        targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
                   if type(child) is kind]
        for parent, name, child in targets:
            setattr(parent, name, PackedGatedFeedForward(child, rows, layer) if kind is GatedFeedForward
                    else layer(child, rows))
        count += len(targets) * (3 if kind is GatedFeedForward else 1)
    return count
