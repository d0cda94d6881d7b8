"""Dropout from the model's own generator: the rate, the gradient, the attention weights, and the global
generator left alone."""

import torch

from ch03_attention.attention import MultiHeadAttention
from ch03_attention.fast_attention import FastMultiHeadAttention
from ch03_attention.generator_dropout import GeneratorDropout, drop_mask, dropout_generator, use_generator_dropout
from ch04_gpt.model import GPTModel
from conftest import TINY


def test_mask_drops_at_the_rate_asked_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    g = torch.Generator().manual_seed(1)
    for p in (0.1, 0.5):
        rate = drop_mask((1000, 1000), p, g).float().mean().item()
        assert abs(rate - p) < 0.002, (p, rate)
    assert torch.equal(torch.get_rng_state(), before)
    # the same seed gives the same masks; an odd number of elements uses part of the last word
    a = drop_mask((3, 7), 0.3, torch.Generator().manual_seed(5))
    b = drop_mask((3, 7), 0.3, torch.Generator().manual_seed(5))
    assert a.shape == (3, 7) and torch.equal(a, b)


def test_gradient_is_the_mask_times_the_scale():
    drop = GeneratorDropout(0.25, torch.Generator().manual_seed(2))
    x = torch.randn(64, 33, requires_grad=True)
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] * (1 / 0.75))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() / 0.75)


def test_fast_attention_drops_its_weights_like_the_book_class():
    """With the same generator seed, the fast class's own-mask path equals the book class whose
    attention-weight dropout draws from that generator."""
    torch.manual_seed(123)
    book = MultiHeadAttention(8, 8, context_length=6, dropout=0.3, num_heads=2)
    fast = FastMultiHeadAttention.from_book(book)
    book.dropout = GeneratorDropout(0.3, torch.Generator().manual_seed(7))
    use_generator_dropout(fast, torch.Generator().manual_seed(7))
    x = torch.randn(3, 6, 8)
    torch.testing.assert_close(fast(x), book(x))
    fast.eval(), book.eval()
    torch.testing.assert_close(fast(x), book(x))  # eval: no dropout, SDPA again


def test_use_generator_dropout_takes_every_dropout_of_a_gpt():
    torch.manual_seed(0)
    model = GPTModel({**TINY, "drop_rate": 0.1})
    idx = torch.randint(0, TINY["vocab_size"], (2, 8))
    expected = model.eval()(idx)
    g = torch.Generator().manual_seed(3)
    use_generator_dropout(model, g)
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert dropout_generator(model) is g and all(b.att.weight_dropout.generator is g for b in model.trf_blocks)
    torch.testing.assert_close(model(idx), expected)  # eval mode: unchanged
    before = torch.get_rng_state()
    model.train()(idx).sum().backward()
    assert torch.equal(torch.get_rng_state(), before)  # training draws only from g
