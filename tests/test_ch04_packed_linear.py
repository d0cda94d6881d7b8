"""PackedLinear and MatVecLinear (ch04_gpt/packed_linear.py): nn.Linear's output from a weight laid out once, and
a packed model decodes the tokens the unpacked one decodes."""

import pytest
import torch

from ch04_gpt.config import model_config
from ch04_gpt.families import FAMILIES
from ch04_gpt.generate import generate_batch, generate_text_cached
from ch04_gpt.model import GPTModel
import ch04_gpt.packed_linear as packed_linear
from ch04_gpt.packed_linear import (MatVecLinear, PackedLinear, can_pack, decoding_layer, pack_for_decoding,
                                     packing_pays)

needs_packing = pytest.mark.skipif(not can_pack(torch.float32), reason="this PyTorch has no oneDNN")


@needs_packing
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (3,)])
def test_packed_equals_linear(bias, shape):
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 40, bias=bias)
    x = torch.randn(*shape, 96)
    torch.testing.assert_close(PackedLinear(layer)(x), layer(x), atol=1e-5, rtol=1e-5)
    if can_pack(torch.bfloat16):
        layer, x = layer.to(torch.bfloat16), x.to(torch.bfloat16)
        torch.testing.assert_close(PackedLinear(layer)(x), layer(x), atol=2e-2, rtol=2e-2)


def test_nothing_is_packed_where_it_cannot_be():
    assert not can_pack(torch.float16) and not can_pack(torch.float32, "meta") and not can_pack(torch.float32, "cuda")
    with torch.device("meta"):
        model = GPTModel(model_config("gpt2-small", vocab_size=50, context_length=8, emb_dim=16, n_heads=2,
                                      n_layers=1))
    assert pack_for_decoding(model) == 0 and isinstance(model.out_head, torch.nn.Linear)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (3,), (96,)])
def test_matvec_equals_linear_with_rows_cut_into_pieces(bias, shape, monkeypatch):
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 40, bias=bias)
    x = torch.randn(*shape[:-1], 1, 96) if shape == (96,) else torch.randn(*shape, 96)
    for columns in (4096, 40, 32):  # one piece; pieces of 32 columns (3 pieces); of 40 (3 pieces, 40 + 28 + 28)
        monkeypatch.setattr(packed_linear, "COLUMNS_PER_PIECE", columns)
        matvec = MatVecLinear(layer)
        assert len(matvec.pieces) == -(-96 // columns) and sum(matvec.widths) == 96
        torch.testing.assert_close(matvec(x), layer(x), atol=1e-5, rtol=1e-5)
        bf16 = layer.to(torch.bfloat16)
        torch.testing.assert_close(MatVecLinear(bf16)(x.to(torch.bfloat16)), bf16(x.to(torch.bfloat16)), atol=2e-2,
                                   rtol=2e-2)
        layer = layer.float()
        assert torch._C._get_mkldnn_enabled()  # switched off for one row's product only


def test_matvec_shares_an_uncut_weight_and_keeps_onednn_on_after_an_error():
    layer = torch.nn.Linear(16, 8)
    matvec = MatVecLinear(layer)
    assert matvec.pieces[0].data_ptr() == layer.weight.data_ptr()  # a tied head: no second copy of the vocabulary
    with pytest.raises(RuntimeError):
        matvec(torch.randn(1, 15))
    assert torch._C._get_mkldnn_enabled()


def test_matvec_from_several_threads_at_once_leaves_onednn_on():
    import threading

    layer = MatVecLinear(torch.nn.Linear(64, 32).to(torch.bfloat16))
    x = torch.randn(1, 64, dtype=torch.bfloat16)
    expected = layer(x)
    results = []

    def decode():
        results.extend(bool(torch.equal(layer(x), expected)) for _ in range(300))

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1200 and all(results)
    assert torch._C._get_mkldnn_enabled()


def test_decoding_layer_is_the_measured_fastest():
    assert decoding_layer(torch.bfloat16) is MatVecLinear  # one row
    assert decoding_layer(torch.bfloat16, rows=8) is (PackedLinear if can_pack(torch.bfloat16) else None)
    assert decoding_layer(torch.bfloat16, "cuda") is None and decoding_layer(torch.float16) is None


@needs_packing
@pytest.mark.parametrize("layer", [PackedLinear, MatVecLinear])
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen3-moe"])
def test_a_packed_model_decodes_the_same_tokens(family, layer):
    torch.manual_seed(0)
    extra = dict(n_experts=4, n_experts_per_token=2, hidden_dim=48) if family == "qwen3-moe" else {}
    cfg = model_config("gpt2-small", **{**FAMILIES[family], "vocab_size": 97, "context_length": 32, "emb_dim": 32,
                                        "n_heads": 4, "n_layers": 2, "drop_rate": 0.0, **extra})
    model = GPTModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    prompt = torch.tensor([[5, 17, 42, 8]])
    expected = generate_text_cached(model, prompt, 40, 32)  # past the context: the window slides
    batch = generate_batch(model, [[5, 17], [42, 8, 1]], 10)
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    assert pack_for_decoding(model, layer=layer) == linears > 0
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert any(type(m) is layer for m in model.modules())
    assert torch.equal(generate_text_cached(model, prompt, 40, 32), expected)
    assert generate_batch(model, [[5, 17], [42, 8, 1]], 10) == batch


@needs_packing
def test_fp32_stays_unpacked_on_intel_where_mkl_is_the_faster(monkeypatch):
    import ch04_gpt.packed_linear as packed_linear

    def tiny():
        return GPTModel(model_config("gpt2-small", vocab_size=50, context_length=8, emb_dim=16, n_heads=2,
                                     n_layers=1)).eval()

    for intel in (True, False):
        monkeypatch.setattr(packed_linear, "intel_cpu", lambda intel=intel: intel)
        assert packing_pays(torch.float32) is not intel and packing_pays(torch.bfloat16)
        assert decoding_layer(torch.float32) is (None if intel else PackedLinear)
        model = tiny()
        linears = sum(type(m) is torch.nn.Linear for m in model.modules())
        assert pack_for_decoding(model) == (0 if intel else linears)
