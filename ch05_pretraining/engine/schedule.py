"""The learning-rate schedule: linear warmup, then cosine decay to a floor.

Unlike the book's constant rate (``train_model_simple`` keeps AdamW's lr): the rate rises linearly over the
first ``warmup_steps`` optimizer steps, then follows half a cosine down to ``min_lr`` at ``total_steps``
(GPT-2, nanoGPT, Chinchilla). Without ``min_lr`` the rate stays at its peak after warmup, the book's rate.

>>> lr_at(0, 1e-3, warmup_steps=10)          # linear warmup from base_lr / warmup_steps
0.0001
>>> lr_at(9, 1e-3, warmup_steps=10), lr_at(10, 1e-3, warmup_steps=10, total_steps=20, min_lr=1e-4)
(0.001, 0.001)
>>> round(lr_at(20, 1e-3, warmup_steps=10, total_steps=20, min_lr=1e-4), 6)   # the floor at the end
0.0001
"""

from __future__ import annotations

import math


def lr_at(step, base_lr, warmup_steps=0, total_steps=None, min_lr=None):
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to ``min_lr``.

    Without ``min_lr`` the rate stays at ``base_lr`` after warmup (the book's constant rate).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if min_lr is None or total_steps is None:
        return base_lr
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
