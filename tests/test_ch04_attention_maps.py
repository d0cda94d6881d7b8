"""Attention weights of every layer (ch04_gpt/attention_maps.py) against independent oracles: transformers'
eager attention (output_attentions) for GPT-2, Llama, Qwen3 and Gemma 3's sliding layers, and the book's own
classes, whose output is those weights times the values."""

import pytest
import torch

from ch03_attention.attention import CausalAttention, MultiHeadAttention
from ch04_gpt.attention_maps import forward_with_attention, has_attention, weights_of
from ch04_gpt.config import model_config
from ch04_gpt.model import GPTModel


def test_the_book_classes_output_is_their_weights_times_the_values():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    mha = MultiHeadAttention(8, 8, 16, 0.0, num_heads=2).eval()
    w = weights_of(mha, x)  # (2, 2, 6, 6)
    values = mha.W_value(x).view(2, 6, 2, 4).transpose(1, 2)
    torch.testing.assert_close(mha.out_proj((w @ values).transpose(1, 2).reshape(2, 6, 8)), mha(x))
    single = CausalAttention(8, 4, 16, 0.0).eval()
    torch.testing.assert_close((weights_of(single, x)[:, 0] @ single.W_value(x)), single(x))


def test_book_and_fast_kernels_show_the_same_maps():
    torch.manual_seed(0)
    cfg = model_config("gpt2-small", vocab_size=50, context_length=16, emb_dim=16, n_heads=4, n_layers=2)
    fast = GPTModel(cfg).eval()
    book = GPTModel(cfg, impl="book").eval()
    book.load_state_dict(fast.state_dict())
    idx = torch.tensor([[3, 1, 4, 1, 5, 9, 2]])
    (lf, mf), (lb, mb) = forward_with_attention(fast, idx), forward_with_attention(book, idx)
    torch.testing.assert_close(lf, lb, atol=1e-5, rtol=1e-5)
    for a, b in zip(mf, mb, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert torch.equal(mf[0].triu(1), torch.zeros_like(mf[0]))  # nothing above the diagonal


def test_a_model_without_attention_has_no_maps():
    from ch05_pretraining.baselines import build_rung

    cfg = model_config("gpt2-small", vocab_size=20, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
    mlp = build_rung(cfg, {"name": "ngram-mlp", "n": 3})
    assert not has_attention(mlp) and forward_with_attention(mlp, torch.tensor([[1, 2, 3]]))[1] is None
    lm3 = build_rung(cfg, {"name": "LM3", "n_blocks": 1})
    maps = forward_with_attention(lm3, torch.tensor([[1, 2, 3]]))[1]
    assert len(maps) == 1 and maps[0].shape == (1, 2, 3, 3)


@pytest.mark.parametrize("case", ["gpt2", "llama", "qwen3", "gemma3_text"])
def test_maps_equal_transformers_eager_attentions(case, tmp_path):
    transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt")
    from ch05_pretraining.hf_weights import load_hf
    from hf_tiny import tiny_hf

    torch.manual_seed(0)
    if case == "gpt2":
        config = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4)
        theirs = transformers.GPT2LMHeadModel(config).eval()
        with torch.no_grad():
            for p in theirs.parameters():
                p.normal_(0.0, 0.2)
    else:
        theirs = tiny_hf(case)
    theirs.save_pretrained(tmp_path)
    theirs.config._attn_implementation = "eager"  # the one that returns its weights
    ids = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(ids, output_attentions=True).attentions
    _, maps = forward_with_attention(load_hf(tmp_path, dtype=torch.float32), ids)
    assert len(maps) == len(expected)
    for ours, ref in zip(maps, expected):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
