"""The attention weights of every layer for a prompt: what each token looks at.

Unlike the book's ``attn_weights`` (a local variable inside ``forward``, printed once in chapter 3) and the
fused kernel (which never materialises them): one forward pass of any model of the project, with a hook on
each attention module that recomputes its weights from the module's own input, with its own projections,
QK-norms, RoPE, scale and (sliding-window) causal mask. The book's ``CausalAttention`` and
``MultiHeadAttention`` (the ladder's rungs) work the same way; a model without attention gets ``None``.

>>> from ch04_gpt.config import model_config
>>> model = GPTModel(model_config("gpt2-small", vocab_size=50, context_length=8, emb_dim=16, n_heads=2,
...                               n_layers=3)).eval()
>>> logits, maps = forward_with_attention(model, torch.tensor([[1, 2, 3, 4]]))
>>> len(maps), tuple(maps[0].shape), maps[0].sum(-1).allclose(torch.ones(1, 2, 4))
(3, (1, 2, 4, 4), True)
"""

from __future__ import annotations

import torch

from .attention import GroupedQueryAttention, sliding_window_mask
from .previous_chapters import CausalAttention, FastMultiHeadAttention, MultiHeadAttention
from .model import GPTModel  # noqa: F401 (the doctest)

ATTENTION_CLASSES = (FastMultiHeadAttention, MultiHeadAttention, CausalAttention)


def masked_softmax(scores, window=None):
    """Softmax over keys of (..., T, T) scores, each query seeing only keys at or before it (and in ``window``)."""
    pos = torch.arange(scores.shape[-1], device=scores.device)
    allowed = sliding_window_mask(pos[:, None], pos[None, :], window)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


def weights_of(module, x, rope=None) -> torch.Tensor:
    """``module``'s attention weights (b, num_heads, T, T) for its input ``x`` (b, T, d_in), in fp32."""
    b, num_tokens, _ = x.shape
    if isinstance(module, GroupedQueryAttention):
        q, k, _ = module.project(x, rope)  # (b, heads, T, head_dim), (b, kv_heads, T, head_dim)
        k = module.repeat_kv(k)  # (b, heads, T, head_dim)
        return masked_softmax(q.float() @ k.float().transpose(-2, -1) * module.scale, module.window)
    if isinstance(module, FastMultiHeadAttention):
        q, k, _ = module.project(x)  # (b, heads, T, head_dim)
        return masked_softmax(q.float() @ k.float().transpose(-2, -1) * module.scale)
    queries, keys = module.W_query(x).float(), module.W_key(x).float()
    if isinstance(module, MultiHeadAttention):
        heads = (b, num_tokens, module.num_heads, module.head_dim)
        queries, keys = queries.view(heads).transpose(1, 2), keys.view(heads).transpose(1, 2)
    else:  # CausalAttention: one head
        queries, keys = queries[:, None], keys[:, None]
    return masked_softmax(queries @ keys.transpose(-2, -1) / keys.shape[-1] ** 0.5)


def has_attention(model) -> bool:
    return any(isinstance(m, ATTENTION_CLASSES) for m in model.modules())


@torch.inference_mode()
def forward_with_attention(model, idx):
    """``(logits, maps)``: the model's logits for ``idx`` and, per attention layer in order, its weights
    (b, num_heads, T, T); ``maps`` is None for a model without attention."""
    maps, hooks = [], []

    def capture(module, args, kwargs):
        maps.append(weights_of(module, args[0], kwargs.get("rope")))

    for module in model.modules():
        if isinstance(module, ATTENTION_CLASSES):
            hooks.append(module.register_forward_pre_hook(capture, with_kwargs=True))
    try:
        logits = model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, (maps if hooks else None)
