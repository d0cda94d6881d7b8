import pytest
import torch
import torch.nn.functional as F

from ch03_attention.fast_attention import book_to_fast_state_dict
from ch04_gpt.config import GPT_CONFIG_124M, MODEL_PRESETS, estimate, model_config, validate_config
from ch04_gpt.generate import generate_loop, generate_text_cached, generate_text_simple
from ch04_gpt.layers import GELU, ExampleDeepNeuralNetwork, FusedGELU, FusedLayerNorm, LayerNorm, print_gradients
from ch04_gpt.model import DummyGPTModel, GPTModel
from conftest import TINY



def tiny(**kw):
    torch.manual_seed(0)
    return GPTModel({**TINY, **kw}).eval()


def sig4(x):
    return float(f"{x:.4g}")


def test_layernorm_zero_mean_unit_var_and_equals_torch():
    torch.manual_seed(0)
    x = torch.randn(4, 7, 10) * 3 + 2
    ln = LayerNorm(10)
    with torch.no_grad():
        ln.scale.uniform_(0.5, 1.5)
        ln.shift.uniform_(-1, 1)
    ref = torch.nn.LayerNorm(10, eps=1e-5)
    ref.weight.data.copy_(ln.scale.data)
    ref.bias.data.copy_(ln.shift.data)
    torch.testing.assert_close(ln(x), ref(x), atol=1e-5, rtol=1e-5)
    plain = LayerNorm(10)(x)
    torch.testing.assert_close(plain.mean(-1), torch.zeros(4, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.var(-1, unbiased=False), torch.ones(4, 7), atol=1e-3, rtol=0)


def test_gelu_equals_torch_tanh_gelu():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(GELU()(x), F.gelu(x, approximate="tanh"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("book_cls, fused_cls, shape", [(LayerNorm, FusedLayerNorm, (3, 5, 16)),
                                                        (GELU, FusedGELU, (3, 5, 16))])
def test_fused_layers_equal_book_layers_forward_and_backward(book_cls, fused_cls, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 1).requires_grad_()
    book, fused = (book_cls(shape[-1]), fused_cls(shape[-1])) if book_cls is LayerNorm else (book_cls(), fused_cls())
    if book_cls is LayerNorm:
        with torch.no_grad():
            book.scale.uniform_(0.5, 1.5)
            book.shift.uniform_(-1, 1)
        fused.load_state_dict(book.state_dict())  # same parameter names
    upstream = torch.randn(shape)
    grads = []
    for module in (book, fused):
        out = module(x)
        grads.append(torch.autograd.grad(out, [x, *module.parameters()], upstream))
        grads[-1] = (out, *grads[-1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fast_model_uses_fused_layers_and_book_model_the_listings():
    fast, book = GPTModel(TINY), tiny(impl="book")
    assert isinstance(fast.final_norm, FusedLayerNorm) and isinstance(fast.trf_blocks[0].ff.layers[1], FusedGELU)
    assert type(book.final_norm) is LayerNorm and type(book.trf_blocks[0].ff.layers[1]) is GELU


def test_fast_and_book_model_same_gradients():
    torch.manual_seed(3)
    book = GPTModel({**TINY, "drop_rate": 0.0}, impl="book")
    fast = GPTModel({**TINY, "drop_rate": 0.0})
    fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
    idx, target = torch.randint(0, 97, (2, 12)), torch.randint(0, 97, (2, 12))
    for model in (book, fast):
        F.cross_entropy(model(idx).flatten(0, 1), target.flatten()).backward()
    book_grads = book_to_fast_state_dict({n: p.grad for n, p in book.named_parameters()})
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, book_grads[name], atol=1e-5, rtol=1e-4)


def test_fast_and_book_model_train_alike_with_the_books_dropout_masks():
    """In training on a CPU the fast model drops what the book's model drops: the same draws from the
    global generator, in the same order (embeddings, attention weights, shortcuts), so losses and
    gradients agree and the generator ends in the same state."""
    torch.manual_seed(3)
    book = GPTModel({**TINY, "drop_rate": 0.5}, impl="book")
    fast = GPTModel({**TINY, "drop_rate": 0.5})
    fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
    idx, target = torch.randint(0, 97, (2, 12)), torch.randint(0, 97, (2, 12))
    losses, states = [], []
    for model in (book, fast):
        torch.manual_seed(11)
        loss = F.cross_entropy(model.train()(idx).flatten(0, 1), target.flatten())
        loss.backward()
        losses.append(loss)
        states.append(torch.get_rng_state())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=0)
    assert torch.equal(states[0], states[1])
    torch.manual_seed(12)
    assert not torch.allclose(F.cross_entropy(fast(idx).flatten(0, 1), target.flatten()), losses[1])  # masks
    book_grads = book_to_fast_state_dict({n: p.grad for n, p in book.named_parameters()})
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, book_grads[name], atol=1e-5, rtol=1e-4)


def test_shortcut_gradient_known_answers():
    sample = torch.tensor([[1., 0., -1.]])
    torch.manual_seed(123)
    without = print_gradients(ExampleDeepNeuralNetwork([3, 3, 3, 3, 3, 1], use_shortcut=False), sample)
    torch.manual_seed(123)
    with_ = print_gradients(ExampleDeepNeuralNetwork([3, 3, 3, 3, 3, 1], use_shortcut=True), sample)
    assert [sig4(v) for v in without.values()] == [0.0002017, 0.0001201, 0.0007152, 0.001399, 0.00505]
    assert [sig4(v) for v in with_.values()] == [0.2217, 0.2069, 0.329, 0.2666, 1.326]


def test_parameter_counts_and_size():
    model = GPTModel(GPT_CONFIG_124M)
    total = sum(p.numel() for p in model.parameters())
    assert total == 163_009_536 == estimate(GPT_CONFIG_124M)["params"]
    assert total - model.out_head.weight.numel() == 124_412_160
    assert f"{total * 4 / 1024 ** 2:.2f}" == "621.83"


def test_weight_tying_shares_storage_and_counts_once():
    model = GPTModel({**TINY, "tie_weights": True})
    assert model.out_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = GPTModel(TINY)
    n_tied = sum(p.numel() for p in model.parameters())
    assert n_tied == sum(p.numel() for p in untied.parameters()) - 97 * 32
    assert n_tied == estimate({**TINY, "tie_weights": True})["params"]


@pytest.mark.parametrize("name,layers", [("gpt2-small", 12), ("gpt2-medium", 24), ("gpt2-large", 36), ("gpt2-xl", 48)])
def test_presets_and_estimates(name, layers):
    cfg = model_config(name)
    assert cfg["n_layers"] == layers and cfg["emb_dim"] == MODEL_PRESETS[name]["emb_dim"]
    # parameter formula checked against a real (shallow) model of the same width
    shallow = {**cfg, "n_layers": 1}
    real = sum(p.numel() for p in GPTModel(shallow).parameters())
    assert real == estimate(shallow)["params"]


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="gpt2-small, gpt2-medium, gpt2-large, gpt2-xl"):
        model_config("gpt5")


def test_config_reads_the_earlier_kernel_keys_as_kernels_not_architecture():
    cfg = validate_config({**TINY, "attn_impl": "book", "norm_position": "post"})
    assert "attn_impl" not in cfg and "impl" not in cfg and cfg.block == "post"
    assert GPTModel({**TINY, "attn_impl": "book"}).impl == "book"
    assert GPTModel({**TINY, "impl": "book"}, impl="fast").impl == "fast"


def test_the_book_kv_cache_codes_kv_window_size_is_accepted_noted_once_and_changes_nothing(monkeypatch):
    """ch04/03_kv-cache's GPT_CONFIG_124M (the book's bonus code) adds kv_window_size: its cache buffer's length."""
    import warnings

    import ch04_gpt.config as config

    book = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
            "drop_rate": 0.1, "qkv_bias": False, "kv_window_size": 1024}
    monkeypatch.setattr(config, "_NOTED", set())
    with pytest.warns(UserWarning, match="kv_window_size .*has no effect here"):
        cfg = validate_config(book)
    assert cfg == validate_config(GPT_CONFIG_124M) and "kv_window_size" not in dict(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # noted once only
        torch.manual_seed(0)
        windowed = GPTModel({**TINY, "kv_window_size": 4}).eval()  # a buffer shorter than the text
    torch.manual_seed(0)
    plain = GPTModel(TINY).eval()
    idx = torch.randint(0, 97, (1, 5))
    assert torch.equal(generate_text_cached(windowed, idx, 20, 16), generate_text_cached(plain, idx, 20, 16))
    with pytest.raises(ValueError, match="kv_window_size must be a positive integer"):
        validate_config({**book, "kv_window_size": 0})
    with pytest.raises(ValueError, match=r"unknown key 'n_kv_head' \(did you mean n_kv_heads\?\)"):
        validate_config({**book, "n_kv_head": 4})


def test_book_preset_spelling():
    assert model_config("gpt2-medium (355M)")["n_heads"] == 16


def test_fast_and_book_attention_same_init_and_logits():
    torch.manual_seed(5)
    book = GPTModel(TINY, impl="book").eval()
    torch.manual_seed(5)
    fast = GPTModel(TINY).eval()
    book_sd = book_to_fast_state_dict(book.state_dict())
    assert all(torch.equal(book_sd[k], v) for k, v in fast.state_dict().items())
    idx = torch.randint(0, 97, (3, 16))
    torch.testing.assert_close(fast(idx), book(idx), atol=1e-5, rtol=0)


def test_fast_and_book_same_logits_with_qkv_bias():
    book = tiny(impl="book", qkv_bias=True)
    fast = GPTModel({**TINY, "qkv_bias": True}).eval()
    fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
    idx = torch.randint(0, 97, (2, 9))
    torch.testing.assert_close(fast(idx), book(idx), atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["fast", "book"])
def test_causal_invariance_through_the_model(impl):
    model = tiny(impl=impl)
    idx = torch.randint(0, 97, (2, 12))
    base = model(idx)
    for j in range(12):
        changed = idx.clone()
        changed[:, j] = (changed[:, j] + 1) % 97
        torch.testing.assert_close(model(changed)[:, :j], base[:, :j])


def test_too_long_input_is_a_clear_error():
    with pytest.raises(ValueError, match="17 tokens but the model's context_length is 16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


def test_generate_text_simple_crops_like_the_book():
    model = tiny()
    out = generate_text_simple(model, torch.randint(0, 97, (1, 20)), 5, context_size=16)
    assert out.shape == (1, 25)


def test_max_new_tokens_zero_and_negative():
    model = tiny()
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate_text_simple(model, idx, 0, 16), idx)
    assert torch.equal(generate_text_cached(model, idx, 0, 16), idx)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        generate_text_simple(model, idx, -1, 16)
    with pytest.raises(ValueError, match="zero tokens"):
        generate_loop(model, idx[:, :0], 3, 16)


@pytest.mark.parametrize("context_size", [16, 7])
def test_kv_cache_greedy_equals_uncached_for_200_tokens(context_size):
    model = tiny()
    idx = torch.randint(0, 97, (2, 5))
    ref = generate_text_simple(model, idx, 200, context_size)
    assert torch.equal(generate_text_cached(model, idx, 200, context_size), ref)


def test_generated_ids_can_be_trained_on():
    """Decoding runs in inference mode; what it returns must still work as an ordinary training input."""
    model = tiny().train()
    out = generate_loop(model, torch.randint(0, 97, (1, 4)), 6, 16)
    assert not out.is_inference()
    F.cross_entropy(model(out[:, :-1]).flatten(0, 1), out[:, 1:].flatten()).backward()
    assert model.tok_emb.weight.grad is not None


def test_kv_cache_logits_equal_full_forward_and_reset_per_call():
    model = tiny()
    idx = torch.randint(0, 97, (1, 10))
    cache = model.new_kv_cache(1)
    first = model(idx[:, :6], kv_cache=cache)
    rest = model(idx[:, 6:], kv_cache=cache)  # several new tokens at an offset
    full = model(idx)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=0)
    a = generate_text_cached(model, idx[:, :3], 8, 16)
    b = generate_text_cached(model, idx[:, :3], 8, 16)
    assert torch.equal(a, b)  # a fresh cache every call


def test_kv_cache_needs_fast_attention():
    model = tiny(impl="book")
    with pytest.raises(ValueError, match="impl='fast'"):
        generate_text_cached(model, torch.tensor([[1, 2]]), 3, 16)


def test_gpt1_post_layernorm_builds_trains_and_generates():
    torch.manual_seed(0)
    model = GPTModel({**TINY, "norm_position": "post"})
    assert isinstance(model.final_norm, torch.nn.Identity)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.randint(0, 97, (2, 16))
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    assert torch.equal(generate_text_cached(model, idx[:, :4], 20, 16), generate_text_simple(model, idx[:, :4], 20, 16))


def test_dummy_model_shape():
    torch.manual_seed(123)
    assert DummyGPTModel(TINY)(torch.tensor([[1, 2, 3]])).shape == (1, 3, 97)


def test_walkthrough_prints_book_values(tmp_path, capsys):
    from ch04_gpt.__main__ import main

    ns = main(["--image-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert ns["batch"].tolist() == [[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]]
    assert "Total number of parameters: 163,009,536" in out
    assert "Number of trainable parameters considering weight tying: 124,412,160" in out
    assert "Total size of the model: 621.83 MB" in out
    assert ns["out"].tolist() == [[15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267]]
    assert "Hello, I am Featureiman Byeswickattribute argue" in out
    assert "[[ 0.3613,  0.4222, -0.0711,  ...,  0.3483,  0.4661, -0.2838]," in out
    assert (tmp_path / "ch04_gelu_relu.png").stat().st_size > 10_000
    assert str(torch.tensor([1e-9])) == "tensor([1.0000e-09])"  # print options restored


def test_readme_names_only_files_and_objects_that_exist():
    from conftest import check_readme

    check_readme("ch04_gpt")


def test_a_batch_of_prompts_gives_each_row_what_it_gets_alone():
    from ch04_gpt.generate import generate_batch

    torch.manual_seed(0)
    model = GPTModel({**TINY, "context_length": 24}).eval()
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15], [1], [42, 43, 44, 45, 46]]
    batch = generate_batch(model, prompts, 12)
    for prompt, row in zip(prompts, batch):
        alone = generate_text_cached(model, torch.tensor([prompt]), 12, 24)[0, len(prompt):].tolist()
        assert row == alone
    eos = batch[1][4]  # a token row 1 makes: that row stops there (others may stop at it too)
    stopped = generate_batch(model, prompts, 12, eos_id=eos)
    assert stopped[1] == batch[1][:4]
    for row, full in zip(stopped, batch):
        assert row == full[:full.index(eos)] if eos in full else row == full
    with pytest.raises(ValueError, match="exceed the context of 24"):
        generate_batch(model, prompts, 20)


def test_decoding_in_bf16_keeps_the_cache_in_bf16_and_follows_fp32():
    from ch04_gpt.generate import decode_dtype

    assert decode_dtype("cpu", "float32") == torch.float32 and decode_dtype("cpu", "bfloat16") == torch.bfloat16
    torch.manual_seed(0)
    model = GPTModel({**TINY, "context_length": 24}).eval()
    idx = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        fp32 = model(idx)[0, -1]
    bf16 = GPTModel({**TINY, "context_length": 24}).eval()
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    assert bf16.new_kv_cache(1).keys[0].dtype == torch.bfloat16
    with torch.no_grad():
        torch.testing.assert_close(bf16(idx)[0, -1].float(), fp32, atol=0.1, rtol=0.05)
    out = generate_text_cached(bf16, idx, 10, 24)
    assert out.shape == (1, 16) and torch.equal(out[:, :6], idx)
