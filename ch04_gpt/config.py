"""Model configuration: one validated, frozen architecture for every family, built from the book's dict.

Unlike the book's open dict ``GPT_CONFIG_124M``: ``ModelConfig`` names every choice of the architecture
(positions, norm, block layout, feed-forward, attention variants), rejects unknown keys with one line,
and derives what can be derived (head_dim, kv heads, hidden size, attention scale, layer types). It is a
read-only mapping, so the book's ``cfg["emb_dim"]`` and ``{**cfg, "n_layers": 6}`` keep working.
Kernel choices (the book's classes or fused ones, dtype) are not architecture and are not in it.

>>> cfg = validate_config(GPT_CONFIG_124M)
>>> cfg["emb_dim"], cfg.head_dim, cfg.hidden_dim, cfg.n_kv_heads
(768, 64, 3072, 12)
>>> validate_config({**GPT_CONFIG_124M, "n_kv_head": 4})
Traceback (most recent call last):
ch02_text.errors.UserInputError: model config: unknown key 'n_kv_head' (did you mean n_kv_heads?)
>>> model_config("gpt2-medium")["n_layers"], model_config("qwen3-0.6b").n_kv_heads
(24, 8)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from ch02_text.errors import UserInputError

from .families import FAMILIES, PRESETS

GPT_CONFIG_124M = {
    "vocab_size": 50257,     # Vocabulary size
    "context_length": 1024,  # Context length
    "emb_dim": 768,          # Embedding dimension
    "n_heads": 12,           # Number of attention heads
    "n_layers": 12,          # Number of layers
    "drop_rate": 0.1,        # Dropout rate
    "qkv_bias": False,       # Query-Key-Value bias
}

# GPT-2's sizes: a view of the one preset table (families.PRESETS), as the book's chapter 4 lists them.
MODEL_PRESETS = {name: values for name, values in PRESETS.items() if values["family"] == "gpt2"}
# The book's spelling of the same presets (chapter 5's model_configs).
BOOK_PRESET_NAMES = {
    "gpt2-small (124M)": "gpt2-small", "gpt2-medium (355M)": "gpt2-medium",
    "gpt2-large (774M)": "gpt2-large", "gpt2-xl (1558M)": "gpt2-xl",
    "124M": "gpt2-small", "355M": "gpt2-medium", "774M": "gpt2-large", "1558M": "gpt2-xl",
}

# The named parts (model.py resolves each name to its class).
NORMS = ("layernorm", "rmsnorm", "rmsnorm_olmo", "rmsnorm_gemma")
BLOCKS = ("pre", "post", "post_branch", "sandwich")
FEED_FORWARDS = ("gelu", "swiglu", "geglu", "moe")
POSITIONS = ("learned", "rope")
QK_NORMS = (None, "head", "proj")
LAYER_TYPES = ("full", "sliding")
ROPE_TYPES = ("default", "linear", "llama3", "yarn")
IMPLS = ("fast", "book")  # kernels, not architecture: GPTModel(cfg, impl=...)
REQUIRED_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias")
LEGACY_KEYS = ("impl", "attn_impl", "norm_position")  # read from dicts of earlier versions, never stored
# Keys of the book's bonus code that are no architecture here, with what they do there (read, checked, never stored)
BOOK_CACHE_KEYS = {"kv_window_size": "the length of the KV-cache buffer of the book's ch04/03_kv-cache code"}
_NOTED: set[str] = set()  # the cache keys already noted in this process (the note is given once)


@dataclass(frozen=True)
class ModelConfig(Mapping):
    """The architecture. ``None`` fields are derived in ``__post_init__`` (see the module docstring)."""

    vocab_size: int
    context_length: int
    emb_dim: int
    n_heads: int
    n_layers: int
    drop_rate: float
    qkv_bias: bool
    family: str = "gpt2"                 # a label: which published family these choices make
    n_kv_heads: int | None = None        # < n_heads: grouped-query attention (1: multi-query)
    head_dim: int | None = None          # emb_dim // n_heads unless given (Qwen3, Gemma 3)
    attn_bias: bool = True               # bias of the attention's output projection (GPT-2)
    qk_norm: str | None = None           # None, "head" (Qwen3, Gemma 3) or "proj" (OLMo 2/3)
    attn_scale: float | None = None      # head_dim ** -0.5 unless given (Gemma 3's query_pre_attn_scalar)
    sliding_window: int | None = None    # keys a sliding layer sees, itself included
    layer_types: tuple | None = None     # "full"/"sliding" per layer (None: from full_every and the window)
    full_every: int | None = None        # with a window: every k-th layer full, the rest sliding (Gemma 3: 6)
    positions: str = "learned"           # "learned" (GPT-2) or "rope"
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None     # {"rope_type": "linear"|"llama3"|"yarn", ...} on full layers
    local_rope_theta: float | None = None  # sliding layers' own plain RoPE base (Gemma 3, OLMo 3)
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    block: str = "pre"                   # "pre" (GPT-2), "post" (GPT-1), "post_branch" (OLMo 2), "sandwich"
    ff: str = "gelu"
    hidden_dim: int | None = None        # 4 * emb_dim unless given
    ff_bias: bool = True
    n_experts: int = 0
    n_experts_per_token: int = 0
    moe_hidden_dim: int | None = None    # each expert's hidden size (hidden_dim unless given)
    norm_topk_prob: bool = True          # renormalise the top-k router weights to sum to 1
    moe_dense_layers: tuple = ()         # layers that keep a dense SwiGLU MLP (Qwen3-MoE's mlp_only_layers)
    router_aux_loss_coef: float = 0.0    # load-balancing loss weight during training
    emb_scale: bool = False              # multiply token embeddings by sqrt(emb_dim) (Gemma)
    tie_weights: bool = False            # output head shares the token embedding

    def __post_init__(self):
        check_fields(self)
        object.__setattr__(self, "_given", frozenset(k for k in DERIVED if getattr(self, k) is not None))
        if self.head_dim is None and self.emb_dim % self.n_heads:
            _fail(f"emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads}), or give head_dim")
        derive = object.__setattr__
        derive(self, "n_kv_heads", self.n_kv_heads or self.n_heads)
        derive(self, "head_dim", self.head_dim or self.emb_dim // self.n_heads)
        derive(self, "hidden_dim", self.hidden_dim or 4 * self.emb_dim)
        derive(self, "attn_scale", float(self.attn_scale or self.head_dim ** -0.5))
        if self.ff == "moe":
            derive(self, "moe_hidden_dim", self.moe_hidden_dim or self.hidden_dim)
        if self.layer_types is None:
            every = self.full_every if self.sliding_window else None
            derive(self, "layer_types", tuple("full" if not self.sliding_window or every and (i + 1) % every == 0
                                              else "sliding" for i in range(self.n_layers)))
        derive(self, "layer_types", tuple(self.layer_types))
        derive(self, "moe_dense_layers", tuple(self.moe_dense_layers))
        check_derived(self)

    # -- the read-only mapping of the book's dict: derived values are read, but not copied --
    def __getitem__(self, key):
        if key not in FIELD_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        """The fields given, not those derived: ``{**cfg, "emb_dim": 64}`` derives head_dim anew."""
        return iter(k for k in FIELD_NAMES if k not in DERIVED or k in self._given)

    def __len__(self):
        return sum(1 for _ in self)

    __hash__ = None  # rope_scaling is a dict

    def replace(self, **changes) -> "ModelConfig":
        """The config with ``changes``; fields it derived are derived again (as ``{**cfg, ...}``)."""
        return validate_config({**self, **changes})

    def to_dict(self) -> dict:
        """Every field, derived ones too, as plain values (lists for tuples): what a checkpoint stores and
        ``validate_config`` reads back."""
        out = {}
        for name in FIELD_NAMES:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value
        return out

    # -- derived facts --
    def is_sliding(self, layer: int) -> bool:
        return self.layer_types[layer] == "sliding"

    def window(self, layer: int) -> int | None:
        return self.sliding_window if self.is_sliding(layer) else None

    def is_moe(self, layer: int) -> bool:
        return self.ff == "moe" and layer not in self.moe_dense_layers


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ModelConfig))
DERIVED = ("n_kv_heads", "head_dim", "hidden_dim", "attn_scale", "moe_hidden_dim", "layer_types")


def _fail(message: str):
    raise UserInputError(f"model config: {message}")


def _positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(f"{name} must be a positive integer, got {value!r}")


def _choice(name, value, choices):
    if value not in choices:
        _fail(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")


def check_fields(cfg: ModelConfig) -> None:
    """Types and choices of the given fields (before derivation)."""
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
        _positive_int(key, cfg[key])
    for key in ("n_kv_heads", "head_dim", "hidden_dim", "sliding_window", "moe_hidden_dim", "full_every"):
        _positive_int(key, cfg[key], allow_none=True)
    rate = cfg.drop_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and 0 <= rate < 1):
        _fail(f"drop_rate must be in [0, 1), got {rate!r}")
    if not (isinstance(cfg.norm_eps, float) and 0 < cfg.norm_eps < 1):
        _fail(f"norm_eps must be a small positive number, got {cfg.norm_eps!r}")
    for key, choices in (("norm", NORMS), ("block", BLOCKS), ("ff", FEED_FORWARDS), ("positions", POSITIONS),
                         ("qk_norm", QK_NORMS)):
        _choice(key, cfg[key], choices)
    for key in ("qkv_bias", "attn_bias", "ff_bias", "norm_topk_prob", "emb_scale", "tie_weights"):
        if not isinstance(cfg[key], bool):
            _fail(f"{key} must be true or false, got {cfg[key]!r}")
    for key in ("rope_theta", "local_rope_theta", "attn_scale", "router_aux_loss_coef"):
        value = cfg[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            _fail(f"{key} must be a non-negative number, got {value!r}")
    check_rope_scaling(cfg.rope_scaling)


def check_rope_scaling(scaling) -> None:
    if scaling is None:
        return
    if not isinstance(scaling, dict):
        _fail(f"rope_scaling must be a dict with a rope_type, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise UserInputError(f"model config: RoPE type {kind!r} is not implemented here (implemented: "
                             f"{', '.join(ROPE_TYPES)})")
    needs = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                                               "original_max_position_embeddings"),
             "yarn": ("factor", "original_max_position_embeddings")}.get(kind, ())
    missing = [k for k in needs if k not in scaling]
    if missing:
        _fail(f"rope_scaling of type {kind} needs {', '.join(missing)}")


def check_derived(cfg: ModelConfig) -> None:
    """Relations between fields, once the derived ones are filled in."""
    if cfg.n_heads % cfg.n_kv_heads:
        _fail(f"n_heads ({cfg.n_heads}) must be a multiple of n_kv_heads ({cfg.n_kv_heads})")
    if cfg.positions == "rope" and cfg.head_dim % 2:
        _fail(f"RoPE rotates pairs of dimensions: head_dim ({cfg.head_dim}) must be even")
    if len(cfg.layer_types) != cfg.n_layers or any(t not in LAYER_TYPES for t in cfg.layer_types):
        _fail(f"layer_types must give 'full' or 'sliding' for each of the {cfg.n_layers} layers")
    if "sliding" in cfg.layer_types and not cfg.sliding_window:
        _fail("sliding layers need a sliding_window (keys per query)")
    if cfg.ff == "moe":
        _positive_int("n_experts", cfg.n_experts)
        _positive_int("n_experts_per_token", cfg.n_experts_per_token)
        if cfg.n_experts_per_token > cfg.n_experts:
            _fail(f"n_experts_per_token ({cfg.n_experts_per_token}) exceeds n_experts ({cfg.n_experts})")
    if any(not isinstance(i, int) or not 0 <= i < cfg.n_layers for i in cfg.moe_dense_layers):
        _fail(f"moe_dense_layers must be layer indices below {cfg.n_layers}")


def validate_config(cfg) -> ModelConfig:
    """A ``ModelConfig`` from the book's dict (or a config), or UserInputError saying what's off.

    Dicts written by earlier versions are migrated: ``norm_position`` becomes ``block``; the kernel
    keys ``impl``/``attn_impl`` are dropped (see ``GPTModel(cfg, impl=...)``). The book's KV-cache code's
    ``kv_window_size`` is accepted and noted once as having no effect (see ``BOOK_CACHE_KEYS``).

    >>> validate_config({**GPT_CONFIG_124M, "n_heads": 0})
    Traceback (most recent call last):
    ch02_text.errors.UserInputError: model config: n_heads must be a positive integer, got 0
    """
    if isinstance(cfg, ModelConfig):
        return cfg
    if not isinstance(cfg, Mapping):
        raise UserInputError(f"model config must be a dict like GPT_CONFIG_124M, got {type(cfg).__name__}")
    cfg = dict(cfg)
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise UserInputError(f"model config is missing {', '.join(missing)}: start from GPT_CONFIG_124M")
    if "norm_position" in cfg:
        position = cfg.pop("norm_position")
        _choice("norm_position", position, ("pre", "post"))
        cfg.setdefault("block", position)
        if position == "post":
            cfg.setdefault("family", "gpt1")
    for key in LEGACY_KEYS:
        cfg.pop(key, None)
    _note_book_cache_keys(cfg)
    unknown = [k for k in cfg if k not in FIELD_NAMES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], (*FIELD_NAMES, *BOOK_CACHE_KEYS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f": the keys are {', '.join(FIELD_NAMES)}"
        raise UserInputError(f"model config: unknown key {unknown[0]!r}{hint}")
    if isinstance(cfg.get("rope_scaling"), Mapping):
        cfg["rope_scaling"] = dict(cfg["rope_scaling"])
    return ModelConfig(**cfg)


def _note_book_cache_keys(cfg: dict) -> None:
    """Take the book's cache keys out of ``cfg``: checked, noted once (a warning), and without effect, since
    ``GPTModel``'s KV cache holds every position it is given (sliding layers keep their own window)."""
    for key, meaning in BOOK_CACHE_KEYS.items():
        if key not in cfg:
            continue
        _positive_int(key, cfg.pop(key))
        if key not in _NOTED:
            _NOTED.add(key)
            warnings.warn(f"model config: {key} ({meaning}) has no effect here: GPTModel's KV cache holds every "
                          "position up to the context length", UserWarning, stacklevel=3)


def kernel_choice(cfg, impl=None) -> str:
    """The kernels a model is built with: ``impl`` if given, else an earlier version's dict key, else fast."""
    impl = impl or (cfg.get("impl") or cfg.get("attn_impl") if isinstance(cfg, dict) else None) or "fast"
    if impl not in IMPLS:
        raise UserInputError(f"impl must be 'fast' or 'book', not {impl!r}")
    return impl


def preset_heads(emb_dim: int) -> int | None:
    """The head count of the GPT-2 preset with this width (None for other widths).

    >>> preset_heads(1024), preset_heads(100)
    (16, None)
    """
    return {p["emb_dim"]: p["n_heads"] for p in MODEL_PRESETS.values()}.get(emb_dim)


ALL_PRESETS = tuple(PRESETS)


def preset_values(name: str) -> dict:
    """The config values of a preset by name (or the book's name for it): the preset on top of the book's
    GPT_CONFIG_124M.

    >>> preset_values("gpt2-medium (355M)")["emb_dim"], preset_values("qwen3-0.6b")["drop_rate"]
    (1024, 0.0)
    """
    key = BOOK_PRESET_NAMES.get(name, name)
    if key not in PRESETS:
        raise UserInputError(f"unknown model preset '{name}': choose one of {', '.join(ALL_PRESETS)}")
    return {**GPT_CONFIG_124M, **PRESETS[key]}


def model_config(name: str = "gpt2-small", **overrides) -> ModelConfig:
    """A preset's config with any overrides applied (``impl=`` is accepted and ignored: see GPTModel)."""
    overrides.pop("impl", None)
    return validate_config({**preset_values(name), **overrides})


def estimate(cfg) -> dict:
    """Parameters, memory and training compute of a config (no model is built).

    Training FLOPs per token follow Kaplan et al. (2020): 6·N for the matmul weights N a token passes
    through (everything but the embedding look-ups; active experts only) plus 6·n_layers·context·q-width
    for attention. ``kv_bytes_per_token_bf16``: what the KV cache holds per token (sliding layers count
    too; they cap at their window).

    >>> e = estimate(model_config("gpt2-small"))
    >>> e["params"], e["kv_bytes_per_token_bf16"]
    (163009536, 36864)
    """
    cfg = validate_config(cfg)
    layer_totals = [_layer_params(cfg, i) for i in range(cfg.n_layers)]
    total = sum(t for t, _ in layer_totals)
    active = sum(a for _, a in layer_totals)
    d, V = cfg.emb_dim, cfg.vocab_size
    embeddings = V * d + (cfg.context_length * d if cfg.positions == "learned" else 0)
    final_norm = 0 if cfg.block == "post" else _norm_params(cfg, d)
    head = 0 if cfg.tie_weights else V * d
    params = embeddings + total + final_norm + head
    kv = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2
    return {
        "params": params,
        "active_params": params - total + active,
        "fp32_bytes": params * 4,
        "bf16_bytes": params * 2,
        "adamw_train_bytes_fp32": params * 16,  # weights + grads + two Adam moments
        "kv_bytes_per_token_bf16": kv,
        "train_flops_per_token": 6 * (active + V * d) + 6 * cfg.n_layers * cfg.context_length * cfg.n_heads
        * cfg.head_dim,
    }


def _norm_params(cfg, width) -> int:
    return 2 * width if cfg.norm == "layernorm" else width


def _layer_params(cfg: ModelConfig, layer: int) -> tuple[int, int]:
    """(parameters, active parameters per token) of one block."""
    d, h, hd, kv = cfg.emb_dim, cfg.n_heads, cfg.head_dim, cfg.n_kv_heads
    q_width, kv_width = h * hd, kv * hd
    att = d * (q_width + 2 * kv_width) + (q_width + 2 * kv_width if cfg.qkv_bias else 0)
    att += q_width * d + (d if cfg.attn_bias else 0)
    att += {None: 0, "head": 2 * hd, "proj": q_width + kv_width}[cfg.qk_norm]
    n_norms = {"pre": 2, "post": 2, "post_branch": 2, "sandwich": 4}[cfg.block]
    norms = n_norms * _norm_params(cfg, d)
    if cfg.is_moe(layer):
        expert = 3 * d * cfg.moe_hidden_dim
        router = d * cfg.n_experts
        return att + norms + router + cfg.n_experts * expert, att + norms + router + cfg.n_experts_per_token * expert
    ff = _mlp_params(cfg, cfg.hidden_dim)
    return att + norms + ff, att + norms + ff


def _mlp_params(cfg, hidden) -> int:
    d = cfg.emb_dim
    if cfg.ff == "gelu":
        return 2 * d * hidden + (hidden + d if cfg.ff_bias else 0)
    return 3 * d * hidden + (2 * hidden + d if cfg.ff_bias else 0)


def scaled_config(preset: str, family: str | None = None, *, emb_dim=None, n_layers=None, n_heads=None,
                  n_kv_heads=None, sliding_window=None, n_experts=None, n_experts_per_token=None,
                  **overrides) -> ModelConfig:
    """A preset's parts at another size: ``family``'s parts (default: the preset's own) on the preset's
    sizes, with any size given replaced. Ratios are kept: hidden sizes per width, query heads per kv
    head (the nearest ratio the new head count allows: ``grouped_kv_heads``); head_dim becomes
    emb_dim // n_heads once the width or the heads change. A sliding window is capped at half the context,
    so that it still matters in a short one.

    >>> cfg = scaled_config("qwen3-0.6b", emb_dim=64, n_heads=4, n_layers=2, context_length=32, vocab_size=50)
    >>> cfg.head_dim, cfg.n_kv_heads, cfg.hidden_dim
    (16, 2, 192)
    """
    base = preset_values(preset)
    values = {**base, **(FAMILIES[family] if family else {})}
    d, h = emb_dim or base["emb_dim"], n_heads or base["n_heads"]
    if emb_dim is not None or n_heads is not None:
        values.pop("head_dim", None)
        values.pop("attn_scale", None)
        for key in ("hidden_dim", "moe_hidden_dim"):
            if base.get(key):
                values[key] = max(1, round(base[key] * d / base["emb_dim"]))
        if base.get("n_kv_heads"):
            values["n_kv_heads"] = grouped_kv_heads(h, base["n_heads"] // base["n_kv_heads"])
    values.update(emb_dim=d, n_heads=h, n_layers=n_layers or base["n_layers"])
    if n_kv_heads:
        values["n_kv_heads"] = n_kv_heads
    context = overrides.get("context_length", base["context_length"])
    if sliding_window or base.get("sliding_window"):
        values["sliding_window"] = sliding_window or min(base["sliding_window"], max(1, context // 2))
    if n_experts:
        values["n_experts"] = n_experts
    if n_experts_per_token:
        values["n_experts_per_token"] = n_experts_per_token
    return validate_config({**values, **overrides})


def grouped_kv_heads(n_heads: int, group: int) -> int:
    """The kv heads for ``n_heads`` query heads that come nearest ``group`` query heads per kv head (fewer kv
    heads on a tie): the ratio itself where it divides, else the closest one a divisor of ``n_heads`` gives.

    >>> grouped_kv_heads(16, 4), grouped_kv_heads(4, 8), grouped_kv_heads(6, 4)
    (4, 1, 2)
    """
    divisors = [k for k in range(1, n_heads + 1) if n_heads % k == 0]
    return min(divisors, key=lambda k: (abs(n_heads / k - group), k))
