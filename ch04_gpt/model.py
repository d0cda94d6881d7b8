"""Chapter 4 GPT model: transformer blocks stacked between embeddings and an output head.

What this adds over chapter 3: the whole GPT architecture. ``GPTModel(cfg)`` follows the book (module
creation order and RNG use identical) and, beyond it, builds every family of ``families.py`` from
named parts: the config's ``norm``, ``ff``, ``block``, ``positions`` and attention fields pick the
classes (``NORM_CLASSES``, ``ATTENTION_KINDS``, ...), and one ``TransformerBlock`` composes them.
``impl`` picks kernels only: "fast" (the default: fused QKV + SDPA attention, fused LayerNorm/GELU) or
"book" (the book's own classes from chapters 3 and 4, GPT-2 configs only); both have the same
parameter names. ``forward`` also accepts a ``KVCache``.

>>> cfg = {**GPT_CONFIG_124M, "vocab_size": 100, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2}
>>> GPTModel(cfg)(torch.tensor([[1, 2, 3]])).shape
torch.Size([1, 3, 100])
>>> llama = GPTModel(model_config("llama-3.2-1b", vocab_size=100, emb_dim=16, n_heads=4, n_kv_heads=2,
...                               head_dim=None, hidden_dim=32, n_layers=2))
>>> llama(torch.tensor([[1, 2, 3]])).shape, sorted(llama.trf_blocks[0].ff.state_dict())
(torch.Size([1, 3, 100]), ['fc1.weight', 'fc2.weight', 'fc3.weight'])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ch02_text.errors import UserInputError

from .attention import GroupedQueryAttention
from .config import GPT_CONFIG_124M, kernel_choice, model_config, validate_config  # noqa: F401 (doctest)
from .feed_forward import GatedFeedForward, MixtureOfExperts, load_balancing_loss
from .kv_cache import KVCache
from .layers import FusedLayerNorm, FeedForward, LayerNorm
from .norms import GemmaRMSNorm, OlmoRMSNorm, RMSNorm
from .previous_chapters import FastMultiHeadAttention, LayerKVCache, MultiHeadAttention
from .rope import RotaryEmbedding, Rotation

# config name -> class; the LayerNorm by kernel choice ("book" = listing 4.2, "fast" = one fused kernel).
NORM_CLASSES = {"layernorm": {"book": LayerNorm, "fast": FusedLayerNorm}, "rmsnorm": RMSNorm,
                "rmsnorm_olmo": OlmoRMSNorm, "rmsnorm_gemma": GemmaRMSNorm}
# attention kind (attention_kind) -> class; the book's multi-head attention by kernel choice ("book" = listing
# 3.5, "fast" = chapter 3's fused QKV + SDPA).
ATTENTION_KINDS = {"multi_head": {"book": MultiHeadAttention, "fast": FastMultiHeadAttention},
                   "grouped_query": GroupedQueryAttention}
GATED_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu_tanh", "moe": "silu"}
_QKV = ("W_query", "W_key", "W_value")


def make_norm(cfg, impl="fast", width=None):
    """The config's norm over ``width`` features (emb_dim by default), with ``cfg.norm_eps``."""
    cls = NORM_CLASSES[cfg.norm]
    if isinstance(cls, dict):
        norm = cls[impl](width or cfg.emb_dim)
        norm.eps = cfg.norm_eps
        return norm
    return cls(width or cfg.emb_dim, eps=cfg.norm_eps)


def beyond_multi_head(cfg, layer: int | None = None) -> list[str]:
    """The config's attention fields that the book's multi-head attention cannot express, in ``layer`` (its
    window) or, with None, in any layer."""
    sliding = "sliding" in cfg.layer_types if layer is None else cfg.window(layer) is not None
    return [name for name, differs in (
        ("positions", cfg.positions == "rope"), ("n_kv_heads", cfg.n_kv_heads != cfg.n_heads),
        ("head_dim", cfg.head_dim * cfg.n_heads != cfg.emb_dim), ("qk_norm", cfg.qk_norm is not None),
        ("sliding_window", sliding), ("attn_bias", not cfg.attn_bias),
        ("attn_scale", cfg.attn_scale != cfg.head_dim ** -0.5)) if differs]


def attention_kind(cfg, layer: int) -> str:
    """The name of the layer's attention in ``ATTENTION_KINDS``: "multi_head" where the book's attention
    expresses it (GPT-2, GPT-1), else "grouped_query"."""
    return "grouped_query" if beyond_multi_head(cfg, layer) else "multi_head"


def make_attention(cfg, layer: int, impl="fast") -> nn.Module:
    """The layer's attention by name (``attention_kind``): the book's ``MultiHeadAttention`` (impl="book") or its
    fused twin, or grouped-query attention with this layer's variants; every one takes the book's arguments."""
    kind = attention_kind(cfg, layer)
    book_arguments = (cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.drop_rate, cfg.n_heads, cfg.qkv_bias)
    if kind == "grouped_query":
        att = ATTENTION_KINDS[kind](*book_arguments, **grouped_query_options(cfg, layer))
    else:
        att = ATTENTION_KINDS[kind][impl](*book_arguments)
    if isinstance(att, MultiHeadAttention):  # the book's class: its W_query/W_key/W_value appear as one qkv
        att._register_state_dict_hook(_book_attention_to_canonical)
        att.register_load_state_dict_pre_hook(_canonical_to_book_attention)
    else:
        att.register_load_state_dict_pre_hook(_book_layout_to_fused)
    return att


def grouped_query_options(cfg, layer: int) -> dict:
    """``GroupedQueryAttention``'s keyword arguments for the layer: heads, scale, window and QK-norms."""
    q_norm = k_norm = None
    if cfg.qk_norm == "head":
        q_norm, k_norm = make_norm(cfg, width=cfg.head_dim), make_norm(cfg, width=cfg.head_dim)
    elif cfg.qk_norm == "proj":
        q_norm = make_norm(cfg, width=cfg.n_heads * cfg.head_dim)
        k_norm = make_norm(cfg, width=cfg.n_kv_heads * cfg.head_dim)
    return dict(num_kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, out_bias=cfg.attn_bias, scale=cfg.attn_scale,
                window=cfg.window(layer), q_norm=q_norm, k_norm=k_norm, qk_norm_per_head=cfg.qk_norm == "head")


def _book_attention_to_canonical(module, state_dict, prefix, local_metadata):
    """State-dict hook of the book's attention: its W_query/W_key/W_value appear as one ``qkv``."""
    for leaf in ("weight", "bias"):
        parts = [state_dict.pop(f"{prefix}{name}.{leaf}", None) for name in _QKV]
        if parts[0] is not None:
            state_dict[f"{prefix}qkv.{leaf}"] = torch.cat(parts, dim=0)
    state_dict.pop(f"{prefix}mask", None)


def _canonical_to_book_attention(module, state_dict, prefix, *args):
    """Load hook of the book's attention: split ``qkv`` back into its three matrices; keep its mask."""
    for leaf in ("weight", "bias"):
        fused = state_dict.pop(f"{prefix}qkv.{leaf}", None)
        if fused is not None:
            for name, part in zip(_QKV, fused.chunk(3, dim=0)):
                state_dict[f"{prefix}{name}.{leaf}"] = part
    state_dict.setdefault(f"{prefix}mask", module.mask)


def _book_layout_to_fused(module, state_dict, prefix, *args):
    """Load hook of the fused attention: files written with the book's layout (earlier versions) migrate."""
    for leaf in ("weight", "bias"):
        if f"{prefix}W_query.{leaf}" in state_dict:
            state_dict[f"{prefix}qkv.{leaf}"] = torch.cat(
                [state_dict.pop(f"{prefix}{name}.{leaf}") for name in _QKV], dim=0)
    state_dict.pop(f"{prefix}mask", None)


def make_feed_forward(cfg, layer: int, impl="fast") -> nn.Module:
    """The book's GELU MLP, a gated MLP (SwiGLU/GeGLU), or a mixture of experts on its MoE layers."""
    if cfg.ff == "gelu":
        return FeedForward(cfg, impl=impl)
    if cfg.is_moe(layer):
        return MixtureOfExperts(cfg.emb_dim, cfg.moe_hidden_dim, cfg.n_experts, cfg.n_experts_per_token,
                                cfg.norm_topk_prob, GATED_ACTIVATIONS[cfg.ff])
    return GatedFeedForward(cfg.emb_dim, cfg.hidden_dim, GATED_ACTIVATIONS[cfg.ff], bias=cfg.ff_bias)


class TransformerBlock(nn.Module):
    """Listing 4.6: attention and feed-forward, each with norms, dropout and a shortcut.

    ``cfg.block`` says where the norms sit: "pre" (GPT-2, Llama: before each branch), "post" (GPT-1:
    after each residual addition), "post_branch" (OLMo 2: on each branch's output, none before) or
    "sandwich" (Gemma 3: before and after each branch).
    """

    def __init__(self, cfg, layer: int = 0, impl: str = "fast"):
        super().__init__()
        cfg = validate_config(cfg)
        self.att = make_attention(cfg, layer, impl)
        self.ff = make_feed_forward(cfg, layer, impl)
        self.layout = cfg.block
        has_input_norms = cfg.block != "post_branch"
        self.norm1 = make_norm(cfg, impl) if has_input_norms else nn.Identity()
        self.norm2 = make_norm(cfg, impl) if has_input_norms else nn.Identity()
        has_output_norms = cfg.block in ("sandwich", "post_branch")
        self.post_att_norm = make_norm(cfg, impl) if has_output_norms else nn.Identity()
        self.post_ff_norm = make_norm(cfg, impl) if has_output_norms else nn.Identity()
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)
        for linear in (self.att.out_proj, *self.ff.output_projections()):
            linear.writes_residual = True  # GPT-2's init scales these by 1 / sqrt(2 * n_layers)

    def attend(self, x, rope: Rotation | None = None, kv_cache: LayerKVCache | None = None, live=None):
        """The attention branch (``live``: see ``forward``)."""
        options = {} if live is None else {"live": live}
        if rope is not None:  # only grouped-query attention rotates
            return self.att(x, kv_cache=kv_cache, rope=rope, **options)
        return self.att(x, **options) if kv_cache is None else self.att(x, kv_cache=kv_cache)

    def forward(self, x, rope: Rotation | None = None, kv_cache: LayerKVCache | None = None, live=None):
        """``live``: a (batch, num_tokens) bool mask when ``x`` holds only its True positions, packed as (1, n_live,
        emb_dim): everything but the attention of queries to keys works on those tokens alone."""
        if self.layout == "post":  # GPT-1: normalise after adding the shortcut (its output norms are Identity)
            x = self.norm1(x + self.shortcut(self.post_att_norm, self.attend(x, rope, kv_cache, live)))
            return self.norm2(x + self.shortcut(self.post_ff_norm, self.ff(x)))
        # Shortcut connections around attention, then feed-forward (shape [batch_size, num_tokens, emb_size])
        x = x + self.shortcut(self.post_att_norm, self.attend(self.norm1(x), rope, kv_cache, live))
        return x + self.shortcut(self.post_ff_norm, self.ff(self.norm2(x)))

    def shortcut(self, post_norm, branch):
        """A branch's output norm (if any) and dropout (in training), as ``drop_shortcut(post_norm(branch))``
        without the calls that change nothing (a decoding step makes four per layer)."""
        if not isinstance(post_norm, nn.Identity):
            branch = post_norm(branch)
        return self.drop_shortcut(branch) if self.training else branch


LIVE_MULTIPLE = 64  # packed tokens come in multiples of this: a run's tensors in few sizes, which the heap reuses


def live_positions(kept, multiple: int | None = None):
    """Each row's positions up to its last True one in ``kept``: the tokens its kept logits depend on (attention
    is causal), and a few pads after them to make a ``multiple`` of tokens (harmless: they come after every kept
    position of their row; None: ``LIVE_MULTIPLE``); None where that is every position.

    >>> kept = torch.tensor([[True, False, True, False], [False, True, False, False]])
    >>> live_positions(kept, multiple=1).int().tolist()
    [[1, 1, 1, 0], [1, 1, 0, 0]]
    >>> live_positions(kept, multiple=3).int().tolist()       # 5 live tokens, and the first pad: 6
    [[1, 1, 1, 1], [1, 1, 0, 0]]
    """
    live = kept.flip(-1).cummax(-1).values.flip(-1)
    short = -int(live.sum()) % (multiple or LIVE_MULTIPLE)
    if short:
        spare = (~live).flatten().nonzero()[:short, 0]
        live.view(-1)[spare] = True
    return None if bool(live.all()) else live


def check_book_config(cfg) -> None:
    """impl="book" builds the book's classes, which have none of the later parts."""
    later = beyond_multi_head(cfg) + [name for name, differs in (
        ("norm", cfg.norm != "layernorm"), ("ff", cfg.ff != "gelu"), ("ff_bias", not cfg.ff_bias),
        ("hidden_dim", cfg.hidden_dim != 4 * cfg.emb_dim), ("block", cfg.block not in ("pre", "post")),
        ("emb_scale", cfg.emb_scale)) if differs]
    if later:
        raise UserInputError(f"impl='book' builds the book's GPT-2 classes, which cannot express "
                             f"{', '.join(later)}: use impl='fast'")


class GPTModel(nn.Module):
    """Listing 4.7: token (+ position) embeddings, ``n_layers`` blocks, final norm, output head."""

    def __init__(self, cfg, impl=None):
        super().__init__()
        self.impl = kernel_choice(cfg, impl)
        cfg = validate_config(cfg)
        if self.impl == "book":
            check_book_config(cfg)
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)

        self.trf_blocks = nn.Sequential(
            *[TransformerBlock(cfg, i, self.impl) for i in range(cfg.n_layers)])

        self.final_norm = make_norm(cfg, self.impl) if cfg.block != "post" else nn.Identity()
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight
        if cfg.positions == "rope":
            self.rope = nn.ModuleDict({kind: self._rotary(kind) for kind in sorted(set(cfg.layer_types))})

    def _rotary(self, layer_type: str) -> RotaryEmbedding:
        cfg = self.cfg
        if layer_type == "sliding" and cfg.local_rope_theta is not None:  # Gemma 3, OLMo 3: plain RoPE locally
            return RotaryEmbedding(cfg.head_dim, cfg.local_rope_theta)
        return RotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)

    @property
    def context_length(self) -> int:
        return self.cfg.context_length

    @property
    def supports_kv_cache(self) -> bool:
        return self.impl == "fast"

    def blocks(self) -> list[TransformerBlock]:
        return list(self.trf_blocks)

    def new_kv_cache(self, batch_size: int, max_len: int | None = None, rings: bool = True,
                     dtype: torch.dtype | None = None) -> KVCache:
        """An empty cache for ``batch_size`` rows of up to ``max_len`` tokens (None: the context length), in the
        weights' dtype unless ``dtype`` says otherwise; sliding-window layers keep rings of their window unless
        ``rings`` is False (every key kept, e.g. to be copied into a longer cache)."""
        cfg, weight = self.cfg, self.tok_emb.weight
        windows = [cfg.window(i) for i in range(cfg.n_layers)] if rings else None
        return KVCache(cfg.n_layers, batch_size, cfg.n_kv_heads, max_len or cfg.context_length, cfg.head_dim,
                       device=weight.device, dtype=dtype or weight.dtype, windows=windows)

    def embed(self, in_idx, positions):
        x = self.tok_emb(in_idx)
        if self.cfg.emb_scale:  # Gemma: sqrt(width), rounded to the weights' dtype as Gemma does
            x = x * torch.tensor(self.cfg.emb_dim ** 0.5, dtype=x.dtype)
        if self.cfg.positions == "learned":
            x = x + self.pos_emb(positions)  # Shape [batch_size, num_tokens, emb_size]
        return self.drop_emb(x)

    def rotations(self, positions) -> dict[str, Rotation]:
        """Per layer type, the rotation of queries or keys (b, heads, T, head_dim) to ``positions``."""
        if self.cfg.positions != "rope":
            return {}
        return {kind: rope.rotation(positions) for kind, rope in self.rope.items()}

    def forward(self, in_idx, kv_cache=None, last_only=False, kept=None):
        """Logits (batch, num_tokens, vocab); with ``last_only`` just the last position's; with ``kept``, a
        (batch, num_tokens) bool mask, only its True positions' (n_kept, vocab), in row order (training on some
        targets): the head skips the rest, and without dropout so do the blocks, but for attention, after each
        row's last kept position (a padded batch's pads).

        With a ``kv_cache`` the tokens are placed after the ones already cached.
        """
        batch_size, seq_len = in_idx.shape
        start = 0 if kv_cache is None else kv_cache.pos
        if start + seq_len > self.context_length:
            raise ValueError(
                f"input has {start + seq_len} tokens but the model's context_length is "
                f"{self.context_length}: crop it to the last {self.context_length} tokens"
            )
        if kv_cache is not None and not self.supports_kv_cache:
            raise ValueError("the KV cache needs impl='fast' (the book's attention class has none)")
        positions = (torch.arange(start, start + seq_len, device=in_idx.device) if kv_cache is None
                     else kv_cache.positions(start, seq_len, in_idx.device))  # per row with left padding
        x = self.embed(in_idx, positions)
        rotations = self.rotations(positions)
        live = self.packing(kept) if kv_cache is None else None
        if live is not None:
            x, kept = x[live][None], kept[live]  # (1, n_live, emb_dim): the tokens the kept logits depend on
        for i, block in enumerate(self.trf_blocks):
            x = block(x, rope=rotations.get(self.cfg.layer_types[i]),
                      kv_cache=None if kv_cache is None else kv_cache.layer(i), live=live)
        if kv_cache is not None:
            kv_cache.advance(seq_len)
        if last_only:
            x = x[:, -1:, :]
        elif kept is not None:
            x = x[kept[None] if live is not None else kept]  # (n_kept, emb_dim)
        x = self.final_norm(x)
        return self.out_head(x)

    def packing(self, kept):
        """The positions to compute for logits at ``kept`` (``live_positions``), or None: all of them, the book's
        attention class (it takes whole rows), or dropout is on (its masks are drawn for the whole batch)."""
        if kept is None or self.impl != "fast" or (self.training and self.cfg.drop_rate > 0):
            return None
        return live_positions(kept)

    def router_aux_loss(self):
        """The MoE load-balancing loss of the last training forward, times its coefficient (None: no MoE)."""
        logits = [m.router_logits for m in self.modules()
                  if isinstance(m, MixtureOfExperts) and m.router_logits is not None]
        if not logits:
            return None
        return self.cfg.router_aux_loss_coef * load_balancing_loss(logits, self.cfg.n_experts,
                                                                   self.cfg.n_experts_per_token)


class DummyTransformerBlock(nn.Module):
    """Listing 4.1 placeholder block: passes its input through unchanged."""

    def __init__(self, cfg):
        super().__init__()

    def forward(self, x):
        return x


class DummyLayerNorm(nn.Module):
    """Listing 4.1 placeholder LayerNorm: passes its input through unchanged."""

    def __init__(self, normalized_shape, eps=1e-5):
        super().__init__()

    def forward(self, x):
        return x


class DummyGPTModel(nn.Module):
    """Listing 4.1: the GPT skeleton with pass-through blocks and norm, as the book writes it."""

    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[DummyTransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = DummyLayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        batch_size, seq_len = in_idx.shape
        x = self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = self.trf_blocks(self.drop_emb(x))
        return self.out_head(self.final_norm(x))
