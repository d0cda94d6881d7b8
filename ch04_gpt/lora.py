"""Low-rank adapters (the book's appendix E): a frozen linear layer plus a trainable product of two thin matrices.

Unlike full fine-tuning, which updates every weight W (out x in): LoRA keeps W frozen and learns
``delta W = scale * (A @ B).T`` with A (in x rank) and B (rank x out), rank much smaller than in and out, so a
GPT-124M classifier trains 2.7 M parameters instead of 124 M. B starts at zero, so an adapted model starts as
the model it adapts. ``LoRALayer``, ``LinearWithLoRA`` and ``replace_linear_with_lora`` are the appendix's:
its scale is ``alpha`` itself, as the printed book writes ``alpha * (x @ A @ B)``; PEFT's convention,
``alpha / rank``, is ``scale=alpha / rank``. ``merge_lora`` folds the adapters into the weights (for export
or inference at the frozen layer's speed), ``unmerge_lora`` takes them out again.

>>> _ = torch.manual_seed(123)
>>> layer = LinearWithLoRA(torch.nn.Linear(4, 3), rank=2, alpha=8)
>>> x = torch.rand(5, 4)
>>> torch.equal(layer(x), layer.linear(x))      # B starts at zero: the layer is the frozen one
True
>>> _ = torch.nn.init.normal_(layer.lora.B)
>>> before = layer(x)
>>> _ = merge_lora(layer)
>>> torch.allclose(layer.linear(x), before, atol=1e-6)   # merged: the plain layer computes the same
True
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class LoRALayer(nn.Module):
    """Appendix E: ``scale * (x @ A @ B)``, A drawn as ``nn.Linear`` draws its weight, B zero."""

    def __init__(self, in_dim, out_dim, rank, alpha, scale=None):
        super().__init__()
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # similar to standard weight initialization
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha
        self.scale = alpha if scale is None else scale

    def forward(self, x):
        return self.scale * (x @ self.A @ self.B)

    def delta_weight(self) -> torch.Tensor:
        """The change of the frozen layer's weight (out, in) that the adapter makes."""
        return self.scale * (self.A @ self.B).T


class LinearWithLoRA(nn.Module):
    """Appendix E: a linear layer (frozen by the caller) plus a ``LoRALayer``; once merged, the layer alone."""

    def __init__(self, linear, rank, alpha, scale=None):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha, scale)
        self.merged = False

    def forward(self, x):
        if self.merged:
            return self.linear(x)
        return self.linear(x) + self.lora(x)

    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.linear.weight += self.lora.delta_weight().to(self.linear.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.linear.weight -= self.lora.delta_weight().to(self.linear.weight.dtype)
            self.merged = False


def replace_linear_with_lora(model, rank, alpha, scale=None):
    """Appendix E: wrap every ``nn.Linear`` of ``model`` (recursively, in place) in a ``LinearWithLoRA``."""
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha, scale))
        else:
            replace_linear_with_lora(module, rank, alpha, scale)


def lora_layers(model) -> list[LinearWithLoRA]:
    return [m for m in model.modules() if isinstance(m, LinearWithLoRA)]


def merge_lora(model):
    """Fold every adapter into its frozen weight (``model`` is returned, changed in place)."""
    for layer in [model] if isinstance(model, LinearWithLoRA) else lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model):
    """Take every merged adapter out of its weight again (to rounding: ``merge`` added what this subtracts)."""
    for layer in [model] if isinstance(model, LinearWithLoRA) else lora_layers(model):
        layer.unmerge()
    return model
