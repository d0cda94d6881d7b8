"""Linear layers with their weights packed once for decoding on a CPU.

Unlike ``nn.Linear`` (whose weight oneDNN reorders into its blocked layout again on every call, or which
falls back to a plain matrix-vector kernel): ``PackedLinear`` holds the weight already in oneDNN's layout,
so a decoding step, one token's matrix-vector product per layer, reads the weights at close to the memory's
speed (bench/README.md: 1.7-3x the tokens/s of nn.Linear for one row, in fp32 and bf16). Inference only: the
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


def can_pack(dtype: torch.dtype, device: torch.device | str = "cpu") -> bool:
    """Whether this PyTorch packs linear weights for ``dtype`` on ``device`` (CPU with oneDNN; bf16 where oneDNN
    runs it natively)."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


class PackedLinear(nn.Module):
    """``nn.Linear``'s forward with the weight in oneDNN's layout (packed once, for single rows)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # tuned for one row: decoding
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)  # (b * num_tokens, in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def pack_for_decoding(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` of ``model`` by a ``PackedLinear`` where the model's dtype and device allow it
    (see ``can_pack``); returns how many were packed. Do it last: the packed model cannot change dtype or device,
    and trains no more."""
    first = next(model.parameters())
    if not can_pack(first.dtype, first.device):
        return 0
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear and child.weight.dtype == first.dtype]
    for parent, name, child in targets:
        setattr(parent, name, PackedLinear(child))
    return len(targets)
