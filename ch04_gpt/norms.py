"""RMSNorm in the three placements of the weight that open-weight models use.

Unlike the book's ``LayerNorm``: no mean is subtracted and there is no shift; each vector is divided by
its root mean square, in fp32 whatever the input's dtype. Where the weight multiplies and where the
result is cast back differ between families, which matters in bf16:

- ``RMSNorm`` (Llama, Qwen, Mistral): ``weight * normalised.to(dtype)``;
- ``OlmoRMSNorm`` (OLMo 2/3): ``(weight * normalised).to(dtype)``;
- ``GemmaRMSNorm`` (Gemma): ``(normalised * (1 + weight)).to(dtype)``, its weight stored zero-centred.

>>> x = torch.tensor([[3.0, 4.0]])
>>> RMSNorm(2, eps=0.0)(x)                      # rms = sqrt((9 + 16) / 2)
tensor([[0.8485, 1.1314]], grad_fn=<MulBackward0>)
>>> torch.equal(GemmaRMSNorm(2, eps=0.0)(x), RMSNorm(2, eps=0.0)(x).detach())   # zero weight = 1 + 0
True
"""

from __future__ import annotations

import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    """Llama's RMSNorm: normalise in fp32, cast back, then multiply by the weight."""

    init_value = 1.0

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((dim,), self.init_value))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        return h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)

    def forward(self, x):
        return self.weight * self.normalised(x).to(x.dtype)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


class OlmoRMSNorm(RMSNorm):
    """OLMo 2/3: multiply in fp32, then cast."""

    def forward(self, x):
        return (self.weight * self.normalised(x)).to(x.dtype)


class GemmaRMSNorm(RMSNorm):
    """Gemma: scale by ``1 + weight`` in fp32 (the weight starts at 0), then cast."""

    init_value = 0.0

    def forward(self, x):
        return (self.normalised(x) * (1.0 + self.weight.float())).to(x.dtype)
