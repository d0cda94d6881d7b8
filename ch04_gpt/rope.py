"""Rotary position embeddings (RoPE), in the rotate-half layout of Hugging Face checkpoints.

Unlike GPT-2's learned ``pos_emb``: no parameters and no fixed length. Each pair of a head's dimensions
(i, i + head_dim/2) is rotated by the angle ``position * inv_freq[i]``, so a query-key dot product depends
on how far apart the two tokens are, not on where they sit. ``inv_freq[i] = theta ** (-2i / head_dim)``;
the scalings of longer-context models change it: ``linear`` (all frequencies / factor), ``llama3``
(Llama 3.1/3.2: only the low frequencies, with a smooth band between) and ``yarn`` (OLMo 3: a ramp between
the two, plus an attention factor on cos and sin).

>>> rope = RotaryEmbedding(head_dim=4, theta=10000.0)
>>> cos, sin = rope(torch.arange(3), torch.float32)          # (1, 1, num_tokens, head_dim)
>>> q = torch.ones(1, 1, 3, 4)
>>> torch.allclose(apply_rope(q, cos, sin)[0, 0, 0], q[0, 0, 0])   # position 0: no rotation
True

What attention asks of it is a ``Rotation``: a callable that rotates queries or keys to their positions.
``RotaryEmbedding.rotation(positions)`` makes one (a ``CosSinRotation``):

>>> rotate = rope.rotation(torch.arange(3))
>>> isinstance(rotate, Rotation), torch.equal(rotate(q), apply_rope(q, cos, sin))
(True, True)
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn


def default_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def llama3_frequencies(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama 3.1's scaling: long wavelengths / factor, short ones kept, a smooth blend between."""
    low_wavelen = original_max_position_embeddings / low_freq_factor
    high_wavelen = original_max_position_embeddings / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)


def yarn_frequencies(head_dim, theta, factor, original_max_position_embeddings, beta_fast=32.0, beta_slow=1.0,
                     attention_factor=None, truncate=True, **_):
    """YaRN (Peng et al. 2023): interpolate the low frequencies, keep the high ones, ramp between;
    returns (inv_freq, attention factor applied to cos and sin)."""
    if attention_factor is None:
        attention_factor = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0

    def correction_dim(rotations):
        return head_dim * math.log(original_max_position_embeddings / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast or 32.0), correction_dim(beta_slow or 1.0)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep the frequency), 0: interpolate (divide by factor)
    pos_freqs = theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - keep) + (1.0 / pos_freqs) * keep
    return inv_freq, float(attention_factor)


def rope_frequencies(head_dim: int, theta: float, scaling: dict | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq of shape (head_dim // 2,), attention factor) for a RoPE type (config.ROPE_TYPES)."""
    scaling = dict(scaling or {})
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    scaling.pop("rope_theta", None)
    inv_freq = default_frequencies(head_dim, theta)
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / scaling["factor"], 1.0
    if kind == "llama3":
        return llama3_frequencies(inv_freq, scaling["factor"], scaling["low_freq_factor"],
                                  scaling["high_freq_factor"], scaling["original_max_position_embeddings"]), 1.0
    if kind == "yarn":
        return yarn_frequencies(head_dim, theta, **scaling)
    raise ValueError(f"RoPE type {kind!r} is not implemented")  # ModelConfig refuses it first


class RotaryEmbedding(nn.Module):
    """cos and sin of each position's angles; ``forward(positions (T,) or (b, T), dtype)``."""

    def __init__(self, head_dim: int, theta: float, scaling: dict | None = None):
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        inv_freq, self.attention_factor = rope_frequencies(head_dim, theta, scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def reset_buffers(self, device="cpu"):
        """Recompute ``inv_freq`` on ``device`` (after a model built on the meta device is materialised)."""
        self.inv_freq = rope_frequencies(self.head_dim, self.theta, self.scaling)[0].to(device)

    def rotation(self, positions: torch.Tensor) -> "CosSinRotation":
        """The rotation to ``positions`` (T,) or (b, T), for queries and keys of any dtype."""
        return CosSinRotation(*self(positions, torch.float32))

    def forward(self, positions: torch.Tensor, dtype: torch.dtype):
        angles = positions[..., None].float() * self.inv_freq  # (T, head_dim/2) or (b, T, head_dim/2)
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos() * self.attention_factor, emb.sin() * self.attention_factor
        if positions.dim() == 1:
            return cos[None, None].to(dtype), sin[None, None].to(dtype)  # (1, 1, T, head_dim)
        return cos[:, None].to(dtype), sin[:, None].to(dtype)  # (b, 1, T, head_dim)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (b, heads, T, head_dim) by the angles whose cos and sin are given."""
    return x * cos + rotate_half(x) * sin


@runtime_checkable
class Rotation(Protocol):
    """What attention calls on a RoPE object: rotate queries or keys (b, heads, T, head_dim) to their positions,
    in their own dtype."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ...


class CosSinRotation:
    """The ``Rotation`` of some positions: their angles' cos and sin (fp32, from ``RotaryEmbedding``), cast to
    each input's dtype once (every layer of a forward pass shares them).

    ``apply_rope``'s sum, with ``rotate_half``'s minus moved into sin's first half: ``x * cos + roll(x) *
    signed_sin``, the same numbers in two fewer operations per call.

    >>> cos, sin = RotaryEmbedding(8, 10_000.0)(torch.arange(3), torch.float32)
    >>> x = torch.randn(1, 2, 3, 8)
    >>> torch.equal(CosSinRotation(cos, sin)(x), apply_rope(x, cos, sin))
    True
    """

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor):
        self.cos, self.sin = cos, sin  # (1, 1, T, head_dim) or (b, 1, T, head_dim)
        self.factors = {}  # dtype -> (cos, signed sin) in that dtype

    def factors_in(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if dtype not in self.factors:
            half = self.sin.shape[-1] // 2
            signed = torch.cat((-self.sin[..., :half], self.sin[..., half:]), dim=-1)
            self.factors[dtype] = self.cos.to(dtype), signed.to(dtype)
        return self.factors[dtype]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cos, signed_sin = self.factors_in(x.dtype)
        return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin  # roll: (x2, x1) of rotate_half
