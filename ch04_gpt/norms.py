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
        return self.weighted(self.normalised(x), self.weight, x.dtype)

    def weighted(self, normalised: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``normalised`` (fp32) scaled by ``weight`` and cast to ``dtype``, in this placement's order."""
        return weight * normalised.to(dtype)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


class OlmoRMSNorm(RMSNorm):
    """OLMo 2/3: multiply in fp32, then cast."""

    def weighted(self, normalised, weight, dtype):
        return (weight * normalised).to(dtype)


class GemmaRMSNorm(RMSNorm):
    """Gemma: scale by ``1 + weight`` in fp32 (the weight starts at 0), then cast."""

    init_value = 0.0

    def weighted(self, normalised, weight, dtype):
        return (normalised * (1.0 + weight.float())).to(dtype)


def norm_of_heads(q_norm: RMSNorm, k_norm: RMSNorm, heads: torch.Tensor, num_q_heads: int) -> torch.Tensor:
    """``q_norm`` on the first ``num_q_heads`` heads of ``heads`` (..., heads, head_dim), ``k_norm`` on the rest,
    in one pass: the same numbers as the two calls (both norms are one class with one eps).

    >>> q_norm, k_norm = RMSNorm(4), RMSNorm(4)
    >>> _ = torch.nn.init.normal_(q_norm.weight), torch.nn.init.normal_(k_norm.weight)
    >>> heads = torch.randn(2, 3, 4)             # 2 query heads, then 1 key head
    >>> both = norm_of_heads(q_norm, k_norm, heads, 2)
    >>> torch.equal(both[:, :2], q_norm(heads[:, :2])), torch.equal(both[:, 2:], k_norm(heads[:, 2:]))
    (True, True)
    """
    weights = (q_norm.weight.expand(num_q_heads, -1), k_norm.weight.expand(heads.shape[-2] - num_q_heads, -1))
    return q_norm.weighted(q_norm.normalised(heads), torch.cat(weights), heads.dtype)
