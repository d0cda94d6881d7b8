"""Text generation: the book's greedy loop and a KV-cached loop that gives the same tokens.

What this adds over the model: turning logits into new tokens. ``generate_text_simple``
is listing 4.8 (re-runs the whole window every step). ``generate_loop`` is the shared loop
used by ``generate_text_cached`` and chapter 5's ``generate``: with a fast-attention
model it keeps a KV cache and applies the output head to the last position only.

Context rule: while prompt + generated tokens fit in ``context_size``, each step
feeds one new token through the cache. Once the window is full, every step re-encodes
the last ``context_size`` tokens from scratch (absolute position embeddings cannot be
shifted), exactly what ``generate_text_simple`` does, so outputs stay identical.

>>> # generate_text_cached(model, idx, 200, context_size=1024)  ==  generate_text_simple(...)
"""

from __future__ import annotations

import torch

from ch02_text.errors import UserInputError
from ch02_text.hardware import bf16_supported


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def decode_dtype(device, name: str = "auto") -> torch.dtype:
    """The dtype to generate in: ``auto`` = bf16 where the processor has it (bf16 GPUs, AVX512-BF16/AMX
    CPUs), else fp32. Decoding one token reads every weight once, so half the bytes is up to twice the
    speed; fp32 gives the book's exact texts.

    >>> decode_dtype(torch.device("cpu"), "float32")
    torch.float32
    """
    if name == "auto":
        return torch.bfloat16 if bf16_supported(torch.device(device)) else torch.float32
    if name not in DTYPES:
        raise UserInputError(f"dtype {name!r}: use auto, float32 or bfloat16")
    return DTYPES[name]


def check_max_new_tokens(max_new_tokens: int) -> None:
    if max_new_tokens < 0:
        raise UserInputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """Listing 4.8: greedy decoding, re-encoding the last ``context_size`` tokens each step.

    ``idx`` is (batch, n_tokens); returns (batch, n_tokens + max_new_tokens).
    """
    check_max_new_tokens(max_new_tokens)
    for _ in range(max_new_tokens):
        # Crop current context if it exceeds the supported context size
        idx_cond = idx[:, -context_size:]

        with torch.no_grad():
            logits = model(idx_cond)

        # Focus only on the last time step: (batch, n_token, vocab_size) -> (batch, vocab_size)
        logits = logits[:, -1, :]
        probas = torch.softmax(logits, dim=-1)  # (batch, vocab_size)
        idx_next = torch.argmax(probas, dim=-1, keepdim=True)  # (batch, 1)
        idx = torch.cat((idx, idx_next), dim=1)  # (batch, n_tokens+1)
    return idx


def stop_ids(eos_id, device) -> torch.Tensor | None:
    """``eos_id`` (None, one id, or several: a chat model's end-of-turn and end-of-text) as a tensor."""
    if eos_id is None:
        return None
    return torch.tensor([eos_id] if isinstance(eos_id, int) else list(eos_id), device=device)


def greedy(logits):
    return torch.argmax(logits, dim=-1, keepdim=True)


def generate_loop(model, idx, max_new_tokens, context_size, pick_next=greedy, eos_id=None, use_cache=None,
                  on_token=None):
    """Generation loop shared by every sampler; ``pick_next(logits (b, vocab)) -> ids (b, 1)``.

    ``use_cache=None`` uses the KV cache whenever the model supports it. Stops early when
    every sequence's next token is ``eos_id`` (one id or several; that token is not appended). ``on_token(ids)``
    is called with each new (b, 1) column as it is made (for streaming).
    """
    check_max_new_tokens(max_new_tokens)
    if idx.shape[1] == 0:
        raise UserInputError("the prompt has zero tokens: give at least one token to start from")
    context_size = min(context_size, model.context_length)
    if use_cache is None:
        use_cache = model.supports_kv_cache
    eos = stop_ids(eos_id, idx.device)
    with torch.inference_mode():  # no autograd bookkeeping at all, cheaper per token than no_grad
        cache = model.new_kv_cache(idx.shape[0]) if use_cache else None
        for step in range(max_new_tokens):
            if cache is None:
                logits = model(idx[:, -context_size:])
            elif step == 0 or cache.pos >= context_size:  # (re-)encode the whole window
                cache.reset()
                logits = model(idx[:, -context_size:], kv_cache=cache, last_only=True)
            else:  # feed only the newest token
                logits = model(idx[:, -1:], kv_cache=cache, last_only=True)
            idx_next = pick_next(logits[:, -1, :].float())  # fp32 even for a bf16 model: same sampling math
            if eos is not None and bool(torch.all(torch.isin(idx_next, eos))):
                break
            idx = torch.cat((idx, idx_next), dim=1)
            if on_token is not None:
                on_token(idx_next)
    return idx.clone()  # a normal tensor again: usable as training input outside inference mode


def generate_batch(model, prompts, max_new_tokens, pick_next=greedy, eos_id=None, pad_id=0):
    """Continue several prompts of different lengths at once; returns each row's new token ids.

    The prompts are padded on the left; the KV cache masks the padding and counts each row's
    positions from its first real token, so every row gets the tokens it would get alone. A row
    stops at ``eos_id`` (not included); the others go on. Prompt + new tokens must fit the
    context (a batch does not slide its window).

    >>> # generate_batch(model, [[15496, 11], [40, 1101, 257, 3797]], 10)  -> [[...10 ids], [...10 ids]]
    """
    check_max_new_tokens(max_new_tokens)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserInputError("every prompt needs at least one token")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > model.context_length:
        raise UserInputError(f"the longest prompt ({longest} tokens) + {max_new_tokens} new tokens exceed the "
                             f"context of {model.context_length}: shorten the prompts or generate fewer tokens")
    if not model.supports_kv_cache:
        raise UserInputError("batched generation needs the KV cache (impl='fast')")
    device = model.tok_emb.weight.device
    idx = torch.tensor([[pad_id] * (longest - len(p)) + list(p) for p in prompts], device=device)
    cache = model.new_kv_cache(len(prompts))
    cache.set_padding(torch.tensor([[False] * (longest - len(p)) + [True] * len(p) for p in prompts],
                                   device=device))
    out = [[] for _ in prompts]
    eos = stop_ids(eos_id, device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    with torch.inference_mode():
        logits = model(idx, kv_cache=cache, last_only=True)
        for _ in range(max_new_tokens):
            idx_next = pick_next(logits[:, -1, :].float())  # (b, 1)
            if eos is not None:
                done |= torch.isin(idx_next[:, 0], eos)
            for row in (~done).nonzero()[:, 0].tolist():
                out[row].append(int(idx_next[row, 0]))
            if bool(done.all()):
                break
            logits = model(idx_next.masked_fill(done[:, None], pad_id), kv_cache=cache, last_only=True)
    return out


def generate_text_cached(model, idx, max_new_tokens, context_size):
    """Greedy decoding like ``generate_text_simple``, with the KV cache (fast attention)."""
    return generate_loop(model, idx, max_new_tokens, context_size, pick_next=greedy, use_cache=True)
