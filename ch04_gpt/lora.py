"""Low-rank adapters (the book's appendix E): a frozen linear layer plus a trainable product of two thin matrices.

Unlike full fine-tuning, which updates every weight W (out x in): LoRA keeps W frozen and learns
``delta W = scale * (A @ B).T`` with A (in x rank) and B (rank x out), rank much smaller than in and out, so a
GPT-124M classifier trains 2.7 M parameters instead of 124 M. B starts at zero, so an adapted model starts as
the model it adapts. ``LoRALayer``, ``LinearWithLoRA`` and ``replace_linear_with_lora`` are the appendix's:
its scale is ``alpha`` itself, as the printed book writes ``alpha * (x @ A @ B)``; PEFT's convention,
``alpha / rank``, is ``scale=alpha / rank``. ``merge_lora`` folds the adapters into the weights (for export
or inference at the frozen layer's speed), ``unmerge_lora`` takes them out again.

Beyond the appendix, for every family and every training command: ``LoRAConfig`` (rank, alpha, dropout,
targets, scale), ``add_lora`` puts ``AdaptedLinear`` layers where the targets name them (the names of the
family's Hugging Face checkpoints, which PEFT uses: ``q_proj`` is a part of our fused QKV layer),
``adapter_state_dict`` is what a LoRA checkpoint stores, ``merge_and_unload`` folds the adapters in and gives
back the plain model.

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

import contextlib
import math
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .families import FAMILY_SPECS


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


# -- LoRA for every family ------------------------------------------------------------------------------
SCALES = ("peft", "rslora", "book")  # alpha / rank (PEFT's default), alpha / sqrt(rank), alpha (the appendix)
GROUPS = ("all-linear", "attention", "mlp", "head")  # the targets that name several layers
HEAD = "lm_head"  # the output head's name (Hugging Face's)


@dataclass(frozen=True)
class LoRAConfig:
    """What adapters to add: rank, alpha, dropout before A, targets (``GROUPS`` or the layers' names) and
    the scale rule (``SCALES``).

    >>> LoRAConfig(rank=16, alpha=32).scaling, LoRAConfig(rank=16, alpha=16, scale="book").scaling
    (2.0, 16)
    """

    rank: int = 8
    alpha: float = 16
    dropout: float = 0.0
    targets: tuple = ("all-linear",)
    scale: str = "peft"

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        for name, value in (("rank", self.rank), ("alpha", self.alpha)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LoRA {name} must be a positive number, not {value!r}")
        if int(self.rank) != self.rank:
            raise ValueError(f"LoRA rank must be a whole number, not {self.rank!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), not {self.dropout!r}")
        if self.scale not in SCALES:
            raise ValueError(f"LoRA scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target")

    @property
    def scaling(self):
        return {"peft": self.alpha / self.rank, "rslora": self.alpha / math.sqrt(self.rank),
                "book": self.alpha}[self.scale]

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d) -> "LoRAConfig":
        return cls(**{**d, "targets": tuple(d["targets"])})


class AdaptedLinear(nn.Module):
    """A frozen linear layer whose output is one part or several side by side (our fused QKV: q, k and v),
    with a ``LoRALayer`` on each targeted part and dropout on the input the adapters see, as PEFT does.

    >>> _ = torch.manual_seed(0)
    >>> layer = AdaptedLinear(nn.Linear(4, 6), {"q_proj": 2, "k_proj": 2, "v_proj": 2}, ["q_proj", "v_proj"],
    ...                       LoRAConfig(rank=2, alpha=4))
    >>> _ = nn.init.normal_(layer.adapters["v_proj"].B)
    >>> x = torch.rand(3, 4)
    >>> delta = layer(x) - layer.linear(x)
    >>> bool(delta[:, :4].abs().max() == 0), bool(delta[:, 4:].abs().max() > 0)   # only v's rows change
    (True, True)
    """

    def __init__(self, linear: nn.Linear, parts: dict, targeted, config: LoRAConfig):
        super().__init__()
        self.linear, self.parts, self.config = linear, dict(parts), config
        self.adapters = nn.ModuleDict({name: LoRALayer(linear.in_features, size, config.rank, config.alpha,
                                                       config.scaling)
                                       for name, size in self.parts.items() if name in targeted})
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.merged = self.disabled = False

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):  # cast once for the frozen layer and the adapters
            x = x.to(torch.get_autocast_dtype(x.device.type))
        out = self.linear(x)
        if self.merged or self.disabled:
            return out
        a, b = self.stacked()  # the scale is in b: a (rank x out) product, not an output one
        low = self.dropout(x) @ a  # (..., k * rank)
        # out += low @ b in one pass over the output (the frozen product's backward does not need its output)
        out.view(-1, out.shape[-1]).addmm_(low.reshape(-1, low.shape[-1]), b.to(out.dtype))
        return out

    def stacked(self):
        """Every adapter's A side by side (in, k * rank) and their B, scaled, block-diagonally (k * rank, out):
        one product for all parts (zeros where a part has no adapter)."""
        loras = list(self.adapters.values())
        if len(self.parts) == 1:
            return loras[0].A, loras[0].B * loras[0].scale
        rank = loras[0].A.shape[1]
        b = loras[0].B.new_zeros(rank * len(loras), self.linear.out_features)
        start, row = 0, 0
        for name, size in self.parts.items():
            if name in self.adapters:
                lora = self.adapters[name]
                b = b.index_put((torch.arange(row, row + rank, device=b.device)[:, None],
                                 torch.arange(start, start + size, device=b.device)[None, :]), lora.B * lora.scale)
                row += rank
            start += size
        return torch.cat([lora.A for lora in loras], dim=1), b

    def delta_weight(self) -> torch.Tensor:
        """The change of the whole frozen weight (out, in), zero rows for the parts without an adapter."""
        rows = [self.adapters[name].delta_weight() if name in self.adapters
                else torch.zeros(size, self.linear.in_features, device=self.linear.weight.device)
                for name, size in self.parts.items()]
        return torch.cat(rows, dim=0)

    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.linear.weight += self.delta_weight().to(self.linear.weight.dtype)
            self.merged = True


def adaptable_linears(model):
    """``(module name, linear, {part name: rows})`` of every linear layer LoRA can adapt, its names the
    family's (``FamilySpec.lora_names``); the router is among them (named ``gate``), the head last."""
    cfg = model.cfg
    names = FAMILY_SPECS[cfg.family].lora_names
    for full, module in model.named_modules():
        module = module.linear if isinstance(module, AdaptedLinear) else module  # an adapted model's too
        match = re.fullmatch(r"trf_blocks\.\d+\.(.+)", full)
        if not isinstance(module, nn.Linear) or match is None or full.endswith(".linear"):
            continue
        for pattern, name in names.items():
            if re.fullmatch(pattern, match.group(1)):
                if isinstance(name, tuple):  # our fused QKV: q, then k and v of the grouped heads
                    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
                    yield full, module, dict(zip(name, (q, kv, kv)))
                else:
                    yield full, module, {name: module.out_features}
                break
    head = model.out_head.linear if isinstance(model.out_head, AdaptedLinear) else model.out_head
    yield "out_head", head, {HEAD: head.out_features}


def _group(module_name: str, part: str) -> str:
    if module_name == "out_head":
        return "head"
    if part == "gate":  # the router: only when named
        return "router"
    return "attention" if ".att." in module_name else "mlp"


def lora_target_names(model) -> list[str]:
    """The layer names ``LoRAConfig.targets`` may use for ``model``'s family, in order."""
    names = [part for _, _, parts in adaptable_linears(model) for part in parts]
    return list(dict.fromkeys(names))


def lora_targets(model, targets) -> dict:
    """``{module name: (linear, parts, targeted part names)}`` of the layers ``targets`` name; ValueError
    naming a target that matches no layer (and the names there are)."""
    found, hit = {}, set()
    for module_name, linear, parts in adaptable_linears(model):
        chosen = []
        for part in parts:
            group = _group(module_name, part)
            named = [t for t in targets if t == part or t == group or (t == "all-linear" and group in
                                                                          ("attention", "mlp"))]
            hit.update(named)
            if named:
                chosen.append(part)
        if chosen:
            found[module_name] = (linear, parts, chosen)
    unknown = [t for t in targets if t not in hit]
    if unknown:
        raise ValueError(f"LoRA target '{unknown[0]}' matches no layer of this {model.cfg.family} model: give "
                         f"{', '.join(GROUPS)} or names among {', '.join(lora_target_names(model))}")
    if "out_head" in found and model.cfg.tie_weights:
        raise ValueError(f"LoRA target '{HEAD}': this model's output head is its token embedding (tied weights), "
                         "which an adapter on the head would change too: leave head/lm_head out")
    return found


def add_lora(model, config: LoRAConfig) -> list[str]:
    """Put ``AdaptedLinear`` layers where ``config.targets`` name them, freeze every other parameter; returns
    the adapted modules' names. The adapters are fp32 on the frozen weights' device, whatever their dtype."""
    found = lora_targets(model, config.targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for module_name, (linear, parts, chosen) in found.items():
        adapted = AdaptedLinear(linear, parts, chosen, config).to(linear.weight.device)
        parent_name, _, child = module_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, adapted)
    return list(found)


def adapted_layers(model) -> dict:
    return {name: m for name, m in model.named_modules() if isinstance(m, AdaptedLinear)}


@contextlib.contextmanager
def adapters_off(model):
    """The model without its adapters for as long as the context lasts: its base (DPO's reference, no copy)."""
    layers = adapted_layers(model).values()
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def adapter_state_dict(model) -> dict:
    """The adapters' tensors (``...qkv.adapters.q_proj.A``), what a LoRA checkpoint stores of them."""
    return {name: t for name, t in model.state_dict().items() if ".adapters." in name}


def merge_and_unload(model):
    """Fold every adapter into its weight and put the plain linear layer back: the model as exported."""
    for name, layer in adapted_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.linear)
    return model
