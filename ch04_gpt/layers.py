"""Chapter 4 building blocks: LayerNorm, GELU, FeedForward and the shortcut demo network.

What this adds over chapter 3: the pieces around attention that make a transformer
block. ``LayerNorm`` uses the biased variance and eps=1e-5 like GPT-2; ``GELU`` is
the tanh approximation. ``FusedLayerNorm`` and ``FusedGELU`` compute the same
functions with PyTorch's single-kernel ops (same parameters, so state dicts are
interchangeable); ``GPTModel``'s fast path uses them.

>>> torch.allclose(GELU()(torch.tensor([1.0])), torch.tensor([0.8412]), atol=1e-4)
True
>>> x = torch.randn(2, 5)
>>> torch.allclose(FusedLayerNorm(5)(x), LayerNorm(5)(x), atol=1e-5)
True
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import kernel_choice, validate_config


class LayerNorm(nn.Module):
    """Listing 4.2: normalise the last dimension to mean 0, variance 1, then scale and shift."""

    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift


class GELU(nn.Module):
    """Listing 4.3: GELU, tanh approximation (as used to train GPT-2)."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(
            torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))
        ))


class FusedLayerNorm(LayerNorm):
    """``LayerNorm`` through ``F.layer_norm``: one kernel forward and backward instead of eight ops."""

    def forward(self, x):
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class FusedGELU(GELU):
    """``GELU`` (tanh approximation) through ``F.gelu``: one kernel instead of seven ops."""

    def forward(self, x):
        return F.gelu(x, approximate="tanh")


# impl -> class: "book" = the listings above, "fast" = the fused kernels.
NORM_CLASSES = {"book": LayerNorm, "fast": FusedLayerNorm}
GELU_CLASSES = {"book": GELU, "fast": FusedGELU}


class FeedForward(nn.Module):
    """Listing 4.4: expand to 4·emb_dim (the config's ``hidden_dim``), GELU, project back."""

    def __init__(self, cfg, impl=None):
        super().__init__()
        gelu = GELU_CLASSES[kernel_choice(cfg, impl)]
        cfg = validate_config(cfg)
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], cfg["hidden_dim"], bias=cfg["ff_bias"]),
            gelu(),
            nn.Linear(cfg["hidden_dim"], cfg["emb_dim"], bias=cfg["ff_bias"]),
        )

    def forward(self, x):
        return self.layers(x)

    def output_projections(self):
        """The layer that writes into the residual stream."""
        return [self.layers[2]]


class ExampleDeepNeuralNetwork(nn.Module):
    """Listing 4.5: five Linear+GELU layers, optionally with shortcut connections."""

    def __init__(self, layer_sizes, use_shortcut):
        super().__init__()
        self.use_shortcut = use_shortcut
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Linear(layer_sizes[i], layer_sizes[i + 1]), GELU())
            for i in range(5)
        ])

    def forward(self, x):
        for layer in self.layers:
            layer_output = layer(x)
            if self.use_shortcut and x.shape == layer_output.shape:
                x = x + layer_output
            else:
                x = layer_output
        return x


def print_gradients(model, x):
    """Section 4.4: backprop an MSE loss against 0 and print each weight's mean |gradient|.

    Returns ``{name: mean_abs_grad}`` as well.
    """
    output = model(x)
    target = torch.tensor([[0.]])
    loss = nn.MSELoss()
    loss = loss(output, target)
    loss.backward()

    means = {}
    for name, param in model.named_parameters():
        if "weight" in name:
            means[name] = param.grad.abs().mean().item()
            print(f"{name} has gradient mean of {means[name]}")
    return means
