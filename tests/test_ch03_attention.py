import pytest
import torch
import torch.nn.functional as F

from ch03_attention.attention import (
    CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1,
    SelfAttention_v2, softmax_naive,
)
from ch03_attention.fast_attention import (
    FastMultiHeadAttention, book_to_fast_state_dict, fast_to_book_state_dict,
)

INPUTS = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
                       [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])


def close4(actual, expected):
    torch.testing.assert_close(actual.detach(), torch.tensor(expected), atol=6e-5, rtol=0)


def test_simplified_attention_known_answers():
    scores = INPUTS @ INPUTS[1]
    close4(scores, [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])
    weights = torch.softmax(scores, dim=0)
    close4(weights, [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])
    torch.testing.assert_close(softmax_naive(scores), weights)
    close4(weights @ INPUTS, [0.4419, 0.6515, 0.5683])
    all_weights = torch.softmax(INPUTS @ INPUTS.T, dim=-1)
    torch.testing.assert_close(all_weights.sum(dim=-1), torch.ones(6))


def test_trainable_weights_known_answers():
    torch.manual_seed(123)
    W_query, W_key, W_value = (torch.rand(3, 2) for _ in range(3))
    query_2 = INPUTS[1] @ W_query
    close4(query_2, [0.4306, 1.4551])
    keys, values = INPUTS @ W_key, INPUTS @ W_value
    weights = torch.softmax(query_2 @ keys.T / 2 ** 0.5, dim=-1)
    close4(weights @ values, [0.3061, 0.8210])
    torch.manual_seed(123)
    close4(SelfAttention_v1(3, 2)(INPUTS)[1], [0.3061, 0.8210])
    torch.manual_seed(789)
    close4(SelfAttention_v2(3, 2)(INPUTS)[0], [-0.0739, 0.0713])


def test_causal_and_multihead_known_answers():
    batch = torch.stack((INPUTS, INPUTS), dim=0)
    torch.manual_seed(123)
    out = CausalAttention(3, 2, 6, 0.0)(batch)
    close4(out[0, 0], [-0.4519, 0.2216])
    close4(out[1, 5], [-0.5299, -0.1081])
    torch.manual_seed(123)
    out = MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)(batch)
    assert out.shape == (2, 6, 4)
    close4(out[0, 0], [-0.4519, 0.2216, 0.4772, 0.1063])
    torch.manual_seed(123)
    out = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)(batch)
    close4(out[0, 0], [0.3190, 0.4858])
    close4(out[0, 5], [0.2575, 0.4028])


def _causal_modules(d=8, ctx=10):
    torch.manual_seed(0)
    return {
        "CausalAttention": CausalAttention(d, d, ctx, 0.0),
        "MultiHeadAttentionWrapper": MultiHeadAttentionWrapper(d, 4, ctx, 0.0, num_heads=2),
        "MultiHeadAttention": MultiHeadAttention(d, d, ctx, 0.0, num_heads=2),
        "FastMultiHeadAttention": FastMultiHeadAttention(d, d, ctx, 0.0, num_heads=2),
    }


@pytest.mark.parametrize("name", list(_causal_modules()))
def test_causal_invariance(name):
    module = _causal_modules()[name].eval()
    x = torch.randn(2, 10, 8)
    base = module(x)
    for j in range(10):
        x2 = x.clone()
        x2[:, j] = torch.randn(2, 8)
        out = module(x2)
        torch.testing.assert_close(out[:, :j], base[:, :j])
        if j < 9:
            assert not torch.allclose(out[:, j:], base[:, j:])


@pytest.mark.parametrize("name", list(_causal_modules()))
def test_too_many_tokens_is_a_clear_error(name):
    module = _causal_modules()[name]
    with pytest.raises(ValueError, match="11 tokens.*context_length=10"):
        module(torch.randn(1, 11, 8))


@pytest.mark.parametrize("cls", [MultiHeadAttention, FastMultiHeadAttention])
def test_heads_must_divide_d_out(cls):
    with pytest.raises(ValueError, match=r"d_out \(10\) must be divisible by num_heads \(3\)"):
        cls(4, 10, 8, 0.0, num_heads=3)


def test_wrapper_with_one_head_equals_causal_attention():
    torch.manual_seed(1)
    ca = CausalAttention(5, 3, 7, 0.0)
    wrapper = MultiHeadAttentionWrapper(5, 3, 7, 0.0, num_heads=1)
    wrapper.heads[0].load_state_dict(ca.state_dict())
    x = torch.randn(3, 7, 5)
    torch.testing.assert_close(wrapper(x), ca(x))


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 12, 3), (2, 7, 12, 4), (3, 33, 48, 6), (2, 64, 64, 8)])
def test_fast_equals_book_outputs_and_grads(shape, qkv_bias):
    b, t, d, heads = shape
    torch.manual_seed(42)
    book = MultiHeadAttention(d, d, 64, 0.1, heads, qkv_bias=qkv_bias).eval()
    fast = FastMultiHeadAttention.from_book(book).eval()
    x = torch.randn(b, t, d, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out_book, out_fast = book(x), fast(x2)
    torch.testing.assert_close(out_fast, out_book, atol=1e-5, rtol=0)
    grad = torch.randn_like(out_book)
    out_book.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-5, rtol=1e-4)
    book_qkv_grad = torch.cat([book.W_query.weight.grad, book.W_key.weight.grad, book.W_value.weight.grad])
    torch.testing.assert_close(fast.qkv.weight.grad, book_qkv_grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.out_proj.weight.grad, book.out_proj.weight.grad, atol=1e-5, rtol=1e-4)


def test_fast_init_draws_the_book_numbers_without_bias():
    torch.manual_seed(123)
    book = MultiHeadAttention(6, 6, 8, 0.0, 2)
    torch.manual_seed(123)
    fast = FastMultiHeadAttention(6, 6, 8, 0.0, 2)
    assert torch.equal(fast.state_dict()["qkv.weight"], book_to_fast_state_dict(book.state_dict())["qkv.weight"])


def test_state_dict_conversion_round_trip():
    torch.manual_seed(3)
    book = MultiHeadAttention(8, 8, 5, 0.0, 2, qkv_bias=True)
    sd = {f"blocks.0.att.{k}": v for k, v in book.state_dict().items()}
    fast_sd = book_to_fast_state_dict(sd)
    assert set(fast_sd) == {"blocks.0.att.qkv.weight", "blocks.0.att.qkv.bias",
                            "blocks.0.att.out_proj.weight", "blocks.0.att.out_proj.bias"}
    back = fast_to_book_state_dict(fast_sd, context_length=5)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_dropout_is_off_in_eval_and_on_in_train():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    for module in (MultiHeadAttention(8, 8, 6, 0.5, 2), FastMultiHeadAttention(8, 8, 6, 0.5, 2)):
        module.eval()
        torch.testing.assert_close(module(x), module(x))
        module.train()
        assert not torch.allclose(module(x), module(x))


@pytest.mark.parametrize("options", [None, dict(num_kv_heads=2), dict(window=5), dict(scale=0.3),
                                     dict(num_kv_heads=1, window=3, scale=0.2)],
                         ids=["multi-head", "grouped-query", "sliding-window", "own-scale", "all-three"])
def test_attention_with_dropout_computes_what_sdpa_computes(options):
    """The path for dropout in training (``attend_with_dropout``, the scores from one ``baddbmm``), its dropout
    taken out, against SDPA's eval path: the book's heads, and (chapter 4's grouped-query attention, which
    extends this class) grouped-query heads, a sliding window and a scale of its own."""
    from ch04_gpt.attention import GroupedQueryAttention

    torch.manual_seed(0)
    if options is None:
        attn = FastMultiHeadAttention(12, 16, 10, 0.5, 4)
    else:
        attn = GroupedQueryAttention(12, 16, 10, 0.5, 4, **options)
    attn.weight_dropout = torch.nn.Identity()  # the training path, dropping nothing
    calls, real = [], attn.attend_with_dropout
    attn.attend_with_dropout = lambda *a: calls.append(1) or real(*a)
    x = torch.randn(2, 10, 12)
    train = attn.train()(x)
    torch.testing.assert_close(train, attn.eval()(x), atol=1e-6, rtol=1e-5)
    assert calls == [1]  # training took it, evaluation did not


def test_walkthrough_prints_book_values_and_saves_figure(tmp_path, capsys):
    from ch03_attention.__main__ import main

    ns = main(["--image-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])" in out
    assert "Attention weights: tensor([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])" in out
    assert "tensor([0.4419, 0.6515, 0.5683])" in out
    assert "tensor([0.4306, 1.4551])" in out and "tensor([0.3061, 0.8210])" in out
    assert "[[-0.4519,  0.2216]," in out and "[[0.3190, 0.4858]," in out
    assert ns["context_vecs"].shape == (2, 6, 2)
    assert (tmp_path / "ch03_attention_weights.png").stat().st_size > 10_000


def test_readme_names_only_files_and_objects_that_exist():
    from conftest import check_readme

    check_readme("ch03_attention")


def test_short_sequences_train_their_attention_in_fp32_under_bf16():
    """attend(): a short sequence that needs gradients in bf16 goes through fp32 SDPA (PyTorch's bf16 CPU
    backward is slow there), a longer one through blockwise_causal; the longest and inference keep SDPA's
    bf16 kernel."""
    from ch03_attention.fast_attention import BLOCKWISE_ATTENTION, SHORT_ATTENTION, attend, blockwise_causal

    torch.manual_seed(0)

    def qkv(tokens, dims, grad=True):
        return [torch.randn(2, 4, tokens, dims, dtype=torch.bfloat16, requires_grad=grad) for _ in range(3)]

    q, k, v = qkv(16, 8)
    out = attend(q, k, v, is_causal=True)
    out.float().sum().backward()
    ref = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref_out = F.scaled_dot_product_attention(*ref, is_causal=True).to(torch.bfloat16)
    ref_out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref_out)
    assert all(torch.equal(t.grad, r.grad.to(torch.bfloat16)) for t, r in zip((q, k, v), ref))
    bf16 = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not torch.equal(out, bf16)  # the two paths differ, so the comparisons above tell them apart

    with torch.no_grad():  # inference: SDPA's own bf16 kernel
        assert torch.equal(attend(q, k, v, is_causal=True), bf16)
    long_q, long_k, long_v = qkv(SHORT_ATTENTION // 64, 64)
    assert torch.equal(attend(long_q, long_k, long_v, is_causal=True), blockwise_causal(long_q, long_k, long_v))
    assert not torch.equal(blockwise_causal(long_q, long_k, long_v),
                           F.scaled_dot_product_attention(long_q, long_k, long_v, is_causal=True))
    longest = qkv(BLOCKWISE_ATTENTION + 1, 64)
    assert torch.equal(attend(*longest, is_causal=True), F.scaled_dot_product_attention(*longest, is_causal=True))

    causal = torch.ones(16, 16, dtype=torch.bool).tril()
    additive = torch.zeros(16, 16, dtype=torch.bfloat16).masked_fill(~causal, float("-inf"))
    assert torch.equal(attend(q, k, v, attn_mask=additive), attend(q, k, v, attn_mask=causal))  # float masks too

    x = torch.randn(2, 16, 32, requires_grad=True)  # fp32 queries under bf16 autocast: bf16 out, as autocast's
    att = FastMultiHeadAttention(32, 32, 16, 0.0, num_heads=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = att.project(x)
        assert attend(q.float(), k, v, is_causal=True).dtype == torch.bfloat16


@pytest.mark.parametrize("heads, kv_heads, tokens, scale", [(4, 4, 70, None), (4, 2, 200, 0.3), (6, 2, 300, None)])
def test_blockwise_causal_attention_equals_sdpa(heads, kv_heads, tokens, scale):
    """blockwise_causal: SDPA's causal attention (grouped heads, a scale of its own, a last block shorter
    than the others), forward and every gradient, on the strided views a fused QKV projection gives and a
    strided output gradient; in bf16 its error against fp64 is the flash kernel's, large scores included."""
    from ch03_attention.fast_attention import blockwise_causal

    torch.manual_seed(0)
    dims, b = 16, 2
    qkv = torch.randn(b, tokens, (heads + 2 * kv_heads) * dims, dtype=torch.float64, requires_grad=True)
    q, k, v = (t.view(b, tokens, -1, dims).transpose(1, 2)  # as project() makes them: strided views
               for t in qkv.split([heads * dims, kv_heads * dims, kv_heads * dims], dim=-1))
    grad = torch.randn(b, tokens, heads, dims, dtype=torch.float64).transpose(1, 2)  # strided, as backward gives it
    options = dict(is_causal=True, scale=scale, enable_gqa=heads != kv_heads)
    expected = F.scaled_dot_product_attention(q, k, v, **options)
    out = blockwise_causal(q, k, v, scale)
    # the softmax runs in fp32 even for fp64 inputs: agreement to fp32's rounding
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    got, = torch.autograd.grad(out, qkv, grad)
    want, = torch.autograd.grad(expected, qkv, grad)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    def relative_errors(attention, size):
        low = [(t.detach() * (size if i == 0 else 1)).to(torch.bfloat16).requires_grad_()
               for i, t in enumerate((q, k, v))]
        got = attention(*low)
        grads = torch.autograd.grad(got, low, grad.to(torch.bfloat16))
        exact = [t.detach().double().requires_grad_() for t in low]
        want = F.scaled_dot_product_attention(*exact, **options)
        wanted = torch.autograd.grad(want, exact, grad.to(torch.bfloat16).double())
        return [((a.double() - b).norm() / b.norm()).item() for a, b in zip((got, *grads), (want, *wanted))]

    for size in (1, 6):  # scores of order 1, and six times larger (bf16 scores would be 3-5x the flash error)
        ours = relative_errors(lambda *t: blockwise_causal(*t, scale), size)
        flash = relative_errors(lambda *t: F.scaled_dot_product_attention(*t, **options), size)
        assert max(ours) < 1e-2 and all(a < 2 * b for a, b in zip(ours, flash)), (size, ours, flash)


def test_bf16_training_attention_takes_blockwise_causal_in_the_model(monkeypatch):
    """Grouped-query attention (RoPE, QK-norm) under bf16 autocast over 300 tokens: the same gradients through
    blockwise_causal as through SDPA's flash kernel, to bf16's rounding, and blockwise_causal is what runs."""
    import ch03_attention.fast_attention as fast
    from ch04_gpt.config import scaled_config
    from ch04_gpt.model import GPTModel

    cfg = scaled_config("qwen3-0.6b", emb_dim=128, n_heads=2, n_layers=1, context_length=300, vocab_size=64)
    torch.manual_seed(0)
    model = GPTModel(cfg)
    ids = torch.randint(0, 64, (2, 300))

    def gradients():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(ids).float().logsumexp(-1).mean()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    outside = gradients()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # backward() called under autocast: the same products
        assert all(torch.equal(a, b) for a, b in zip(gradients(), outside))

    calls = []
    blockwise = fast.blockwise_causal
    monkeypatch.setattr(fast, "blockwise_causal", lambda *a: calls.append(1) or blockwise(*a))
    ours = gradients()
    assert calls == [1]
    monkeypatch.setattr(fast, "BLOCKWISE_ATTENTION", 0)
    flash = gradients()
    assert calls == [1]
    for a, b in zip(ours, flash):
        assert (a - b).norm() <= 0.02 * b.norm() + 1e-6


@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive", "2d"])
def test_one_query_attention_equals_sdpa(mask_kind):
    """The decoding step's attention (one query per head, keys shared by groups of heads, a padding or window
    mask): SDPA's values in fp32, and in bf16 no further from fp32 than bf16 SDPA itself is."""
    from ch03_attention.fast_attention import attend, one_query

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 8, 1, 16), torch.randn(3, 2, 40, 16), torch.randn(3, 2, 40, 16)
    allowed = torch.rand(3, 1, 1, 40) > 0.3
    allowed[..., 0] = True
    mask = {"none": None, "bool": allowed, "additive": torch.zeros(3, 1, 1, 40).masked_fill(~allowed, float("-inf")),
            "2d": allowed[0, 0]}[mask_kind]
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(one_query(q, k, v, mask, scale=0.5), torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, enable_gqa=True, scale=0.5), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(one_query(q, k, v, mask), expected, atol=1e-6, rtol=1e-5)
    halves = [t.bfloat16() for t in (q, k, v)]
    sdpa_error = (torch.nn.functional.scaled_dot_product_attention(*halves, attn_mask=mask, enable_gqa=True).float()
                  - expected).abs().max()
    with torch.no_grad():
        ours = attend(*halves, attn_mask=mask, enable_gqa=True)  # bf16, one query, no gradient: one_query
    assert ours.dtype == torch.bfloat16 and (ours.float() - expected).abs().max() <= 2 * sdpa_error + 1e-3
