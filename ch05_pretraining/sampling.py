"""Decoding strategies (section 5.3): temperature, top-k, and beyond the book top-p.

What this adds over chapter 4's greedy loop: sampling the next token from the model's
distribution. ``generate`` keeps the book's signature and adds ``top_p``; it runs on
chapter 4's ``generate_loop``, so a fast-attention model uses the KV cache.

>>> logits = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
>>> top_k_filter(logits[None], 3).isfinite().nonzero()[:, 1].tolist()
[0, 3, 7]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ch02_text.errors import UserInputError
from .previous_chapters import generate_loop


def softmax_with_temperature(logits, temperature):
    """Section 5.3.1: divide logits by ``temperature`` before the softmax."""
    scaled_logits = logits / temperature
    return torch.softmax(scaled_logits, dim=0)


def print_sampled_tokens(probas, inverse_vocab, num_samples=1_000, seed=123):
    """Section 5.3.1: sample ``num_samples`` tokens and print how often each came up."""
    torch.manual_seed(seed)
    sample = [torch.multinomial(probas, num_samples=1).item() for _ in range(num_samples)]
    sampled_ids = torch.bincount(torch.tensor(sample), minlength=len(probas))
    for i, freq in enumerate(sampled_ids):
        print(f"{freq} x {inverse_vocab[i]}")
    return sampled_ids


MIN_TEMPERATURE = 1e-6  # the smallest temperature > 0: logits up to ~1e30 stay finite when divided by it


@dataclass(frozen=True)
class SamplingSettings:
    """How ``generate`` picks tokens; checked when made, so a bad value never reaches the loop.

    >>> SamplingSettings(temperature=1.5, top_k=50).top_k, SamplingSettings(top_k=0).top_k  # 0: off, everywhere
    (50, None)
    >>> SamplingSettings(temperature=float("nan"))
    Traceback (most recent call last):
    ch02_text.errors.UserInputError: temperature must be a finite number >= 0 (0 = greedy), got nan
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 50

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t >= 0):
            raise UserInputError(f"temperature must be a finite number >= 0 (0 = greedy), got {t}")
        if 0 < t < MIN_TEMPERATURE:  # logits / t would overflow to inf: the probabilities NaN
            raise UserInputError(f"temperature {t} is too small to divide by: give 0 (greedy) or at least "
                                 f"{MIN_TEMPERATURE}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 0):
            raise UserInputError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k}")
        if self.top_k == 0:
            object.__setattr__(self, "top_k", None)
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise UserInputError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise UserInputError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens}")


def top_k_filter(logits, top_k):
    """Keep the ``top_k`` largest logits of each row, set the rest to -inf (section 5.3.2)."""
    top_k = min(top_k, logits.shape[-1])
    top_logits, _ = torch.topk(logits, top_k)
    min_val = top_logits[:, -1:]
    return torch.where(logits < min_val, torch.tensor(float("-inf")).to(logits.device), logits)


def top_p_filter(logits, top_p):
    """Nucleus filter: keep the smallest set of tokens whose probability mass reaches ``top_p``."""
    sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of the strictly more likely tokens
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, sorted_idx, sorted_logits)


def next_token_probs(logits, temperature=0.0, top_k=None, top_p=None):
    """The distribution ``make_sampler`` draws the next token from, for logits (b, vocab): the book's
    order (top-k, temperature, then top-p); greedy (temperature 0) is all mass on the argmax.

    >>> next_token_probs(torch.tensor([[1.0, 3.0, 2.0]]), temperature=1.0, top_k=2).round(decimals=4)
    tensor([[0.0000, 0.7311, 0.2689]])
    """
    top_k = SamplingSettings(temperature, top_k, top_p).top_k  # checks the values; 0 is off
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if temperature == 0.0:
        greedy = torch.argmax(logits, dim=-1, keepdim=True)
        return torch.zeros_like(logits).scatter_(-1, greedy, 1.0)
    logits = logits / temperature
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def make_sampler(temperature=0.0, top_k=None, top_p=None, generator=None):
    """``pick_next(logits (b, vocab)) -> ids (b, 1)``: a draw from ``next_token_probs`` (with ``generator``, a
    ``torch.Generator``, else PyTorch's global one), or the argmax when greedy."""
    top_k = SamplingSettings(temperature, top_k, top_p).top_k  # checks the values; 0 is off

    def pick_next(logits):
        if temperature == 0.0:
            if top_k is not None:
                logits = top_k_filter(logits, top_k)
            return torch.argmax(logits, dim=-1, keepdim=True)
        probs = next_token_probs(logits, temperature, top_k, top_p)
        return torch.multinomial(probs, num_samples=1, generator=generator)

    return pick_next


def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None,
             top_p=None, use_cache=None, on_token=None):
    """Listing 5.4 plus top-p: sample up to ``max_new_tokens`` tokens after ``idx``.

    ``temperature=0`` is greedy; stops early at ``eos_id``; ``use_cache=None`` uses the
    KV cache when the model has fast attention.
    """
    pick_next = make_sampler(temperature, top_k, top_p)
    return generate_loop(model, idx, max_new_tokens, context_size, pick_next=pick_next, eos_id=eos_id,
                  use_cache=use_cache, on_token=on_token)
