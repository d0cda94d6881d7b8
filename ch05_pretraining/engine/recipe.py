"""The small-model recipe: how the ladders and the benches train a small GPT, written once.

Unlike the book's run (AdamW with PyTorch's betas, every parameter decayed, a constant rate, no clipping):
nanoGPT's recipe for small models on small data: AdamW with beta2 0.99, weight decay 0.1 on weight matrices
and embeddings only, a linear warmup (a tenth of the steps, at most 50), cosine decay to a tenth of the peak
rate (``schedule.py``), and gradients clipped to norm 1.

>>> SMALL_MODEL_RECIPE.warmup_steps(300), SMALL_MODEL_RECIPE.warmup_steps(2000)
(30, 50)
>>> SMALL_MODEL_RECIPE.settings(300, 2e-3).min_lr
0.0002
"""

from __future__ import annotations

from dataclasses import dataclass

from .trainer import TrainSettings, make_optimizer


@dataclass(frozen=True)
class Recipe:
    """Optimizer and schedule of a training run, as data; ``optimizer`` and ``settings`` apply it."""

    betas: tuple = (0.9, 0.99)
    weight_decay: float = 0.1
    decay: str = "matrices"       # which parameters decay: "matrices" (and embeddings) or "all" (the book's)
    warmup_share: float = 0.1     # warmup steps: this share of the run ...
    warmup_cap: int = 50          # ... and at most this many
    min_lr_ratio: float = 0.1     # the cosine's floor, as a share of the peak rate
    grad_clip: float = 1.0

    def warmup_steps(self, steps: int) -> int:
        return min(self.warmup_cap, int(steps * self.warmup_share))

    def optimizer(self, model, lr: float, fused: bool = False):
        """AdamW over ``model``'s parameters with the recipe's betas and decay groups."""
        return make_optimizer(model, lr, self.weight_decay, fused=fused, betas=self.betas, decay=self.decay)

    def settings(self, steps: int, lr: float, warmup_steps: int | None = None, **others) -> TrainSettings:
        """The trainer's settings for ``steps`` optimizer steps peaking at ``lr`` (``others``: evaluation,
        samples, kernels)."""
        warmup = self.warmup_steps(steps) if warmup_steps is None else warmup_steps
        return TrainSettings(max_steps=steps, lr=lr, warmup_steps=warmup, min_lr=lr * self.min_lr_ratio,
                             grad_clip=self.grad_clip, **others)


SMALL_MODEL_RECIPE = Recipe()
