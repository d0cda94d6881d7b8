"""PackedLinear (ch04_gpt/packed_linear.py): nn.Linear's output from a weight packed once, and a packed model
decodes the tokens the unpacked one decodes."""

import pytest
import torch

from ch04_gpt.config import model_config
from ch04_gpt.families import FAMILIES
from ch04_gpt.generate import generate_batch, generate_text_cached
from ch04_gpt.model import GPTModel
from ch04_gpt.packed_linear import PackedLinear, can_pack, pack_for_decoding, packing_pays

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


@needs_packing
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen3-moe"])
def test_a_packed_model_decodes_the_same_tokens(family):
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
    assert pack_for_decoding(model, where_it_pays=False) == linears > 0
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
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
        model = tiny()
        linears = sum(type(m) is torch.nn.Linear for m in model.modules())
        assert pack_for_decoding(model) == (0 if intel else linears)
