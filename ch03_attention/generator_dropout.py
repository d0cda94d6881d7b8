"""Dropout with masks from its own ``torch.Generator``, four masks per 64-bit random word.

What this adds over ``nn.Dropout`` (section 3.5.2): speed, and a random stream of its own.
PyTorch's CPU dropout draws one 64-bit number per element from the global generator, one
element at a time (a noticeable share of a GPT-124M training step: bench/README.md). Here one
64-bit draw gives four 15-bit lanes, each compared with ``p`` (so ``p`` is exact to 1/32768),
and the draws come from a generator of the caller's, so the global generator, which shuffles
the data, advances only as the data loaders use it.

>>> g = torch.Generator().manual_seed(0)
>>> drop = GeneratorDropout(0.5, g)
>>> y = drop(torch.ones(10_000))
>>> sorted(set(y.tolist())), round((y == 0).float().mean().item(), 1)
([0.0, 2.0], 0.5)
>>> torch.equal(drop.eval()(torch.ones(3)), torch.ones(3))   # eval mode: the identity
True
"""

from __future__ import annotations

import torch
import torch.nn as nn

LANE = 1 << 15  # each 16-bit lane of a random word, its sign bit cleared, is uniform on [0, LANE)


def drop_mask(shape, p: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """Boolean tensor of ``shape``, True (drop) with probability ``p`` (to 1/32768), from ``generator``."""
    n = 1
    for size in shape:
        n *= size
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(generator=generator)
    lanes = words.view(torch.int16)[:n].bitwise_and_(LANE - 1)  # four 15-bit uniform numbers per word
    return (lanes < round(p * LANE)).view(shape)


class _Masked(torch.autograd.Function):
    """``x`` with the ``drop`` elements zeroed and the rest scaled; the gradient likewise."""

    @staticmethod
    def forward(ctx, x, drop, scale):
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return x.masked_fill(drop, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (drop,) = ctx.saved_tensors
        return grad.masked_fill(drop, 0).mul_(ctx.scale), None, None


class GeneratorDropout(nn.Module):
    """``nn.Dropout(p)`` whose masks come from ``generator`` (shared by all the model's dropouts)."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        lanes_dropped = round(self.p * LANE)
        scale = LANE / (LANE - lanes_dropped)  # 1 / (1 - p) for the p actually used
        return _Masked.apply(x, drop_mask(x.shape, self.p, self.generator, x.device), scale)

    def extra_repr(self):
        return f"p={self.p}, own generator"


def replace_dropouts(model: nn.Module, make_dropout) -> nn.Module:
    """Swap every ``nn.Dropout`` in ``model`` for ``make_dropout(p)``, and give the attention modules that can
    take one (``weight_dropout``) one for their attention weights; each keeps its train/eval mode."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Dropout):
                setattr(module, name, make_dropout(child.p).train(child.training))
        if hasattr(module, "weight_dropout") and getattr(module, "dropout", 0) > 0:
            module.weight_dropout = make_dropout(module.dropout).train(module.training)
    return model


def use_generator_dropout(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Swap every dropout of ``model`` for a ``GeneratorDropout`` on ``generator`` (``replace_dropouts``)."""
    return replace_dropouts(model, lambda p: GeneratorDropout(p, generator))


def dropout_generator(model: nn.Module) -> torch.Generator | None:
    """The generator of ``model``'s ``GeneratorDropout`` modules, None if it has none."""
    return next((m.generator for m in model.modules() if isinstance(m, GeneratorDropout)), None)
