"""The exercises of chapter 3 with runnable solutions: ``python -m ch03_attention.exercises [--only 3.2]``.

Each solution uses the chapter's own classes and prints what the book's published solution prints.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ch02_text.chapter_runner import run_exercises

from .attention import EXAMPLE_INPUTS, MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1, SelfAttention_v2


def exercise_3_1(args):
    """Comparing SelfAttention_v1 and SelfAttention_v2"""
    torch.manual_seed(123)  # the published solution seeds 123 before each module
    sa_v1 = SelfAttention_v1(d_in=3, d_out=2)
    torch.manual_seed(123)
    sa_v2 = SelfAttention_v2(d_in=3, d_out=2)
    # nn.Linear stores its weight as (d_out, d_in); v1 multiplies x @ W with W of shape (d_in, d_out)
    sa_v1.W_query = nn.Parameter(sa_v2.W_query.weight.T)
    sa_v1.W_key = nn.Parameter(sa_v2.W_key.weight.T)
    sa_v1.W_value = nn.Parameter(sa_v2.W_value.weight.T)
    out_v1, out_v2 = sa_v1(EXAMPLE_INPUTS), sa_v2(EXAMPLE_INPUTS)
    print(out_v1)
    print(out_v2)
    print("equal:", torch.allclose(out_v1, out_v2))
    return out_v1, out_v2


def exercise_3_2(args):
    """Returning two-dimensional embedding vectors"""
    torch.manual_seed(123)
    batch = torch.stack((EXAMPLE_INPUTS, EXAMPLE_INPUTS), dim=0)
    context_length = batch.shape[1]
    d_in, d_out = 3, 1  # two heads of output size 1 each: 2-dimensional context vectors
    mha = MultiHeadAttentionWrapper(d_in, d_out, context_length, 0.0, num_heads=2)
    context_vecs = mha(batch)
    print(context_vecs)
    print("context_vecs.shape:", context_vecs.shape)
    return context_vecs


def exercise_3_3(args):
    """Initializing GPT-2 size attention modules"""
    mha = MultiHeadAttention(d_in=768, d_out=768, context_length=1024, dropout=0.0, num_heads=12)
    n_params = sum(p.numel() for p in mha.parameters())
    print(f"{n_params:,} parameters")
    return n_params


EXERCISES = [("3.1", exercise_3_1), ("3.2", exercise_3_2), ("3.3", exercise_3_3)]


def main(argv=None):
    return run_exercises("ch03_attention", EXERCISES, argv)


if __name__ == "__main__":
    main()
