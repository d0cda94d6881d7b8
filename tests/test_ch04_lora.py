"""Appendix E's LoRA layers: the appendix's parameter counts, an adapted layer equal to its merged linear layer
(forward and gradients), a zero B leaving the model unchanged, merge then unmerge restoring the weights."""

import pytest
import torch

from ch04_gpt.config import GPT_CONFIG_124M
from ch04_gpt.lora import LinearWithLoRA, LoRALayer, lora_layers, merge_lora, replace_linear_with_lora, unmerge_lora
from ch04_gpt.model import GPTModel
from conftest import TINY


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_the_appendix_parameter_counts():
    """GPT-124M (qkv bias) with a two-class head, the book's classes: 124,441,346 trainable, 0 frozen, 2,666,528
    with rank 16 on every linear layer (the appendix's printed counts)."""
    with torch.device("meta"):
        model = GPTModel({**GPT_CONFIG_124M, "qkv_bias": True, "drop_rate": 0.0}, impl="book")
        model.out_head = torch.nn.Linear(768, 2)
        assert trainable(model) == 124_441_346
        for p in model.parameters():
            p.requires_grad = False
        assert trainable(model) == 0
        replace_linear_with_lora(model, rank=16, alpha=16)
    assert trainable(model) == 2_666_528
    assert len(lora_layers(model)) == 12 * 6 + 1  # W_query, W_key, W_value, out_proj, two MLP layers; the head


def test_an_adapted_layer_equals_its_merged_linear_layer_forward_and_gradients():
    torch.manual_seed(0)
    layer = LinearWithLoRA(torch.nn.Linear(6, 5), rank=3, alpha=2.0)
    torch.nn.init.normal_(layer.lora.B)  # a zero B hides every mapping bug
    merged = torch.nn.Linear(6, 5)
    with torch.no_grad():
        merged.weight.copy_(layer.linear.weight + 2.0 * (layer.lora.A @ layer.lora.B).T)
        merged.bias.copy_(layer.linear.bias)
    x = torch.randn(4, 6, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, expected = layer(x), merged(x2)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x2.grad)  # the input's gradient: the merged weight's
    # A and B get the chain rule's gradients of delta W = scale * (A @ B).T
    delta_grad = grad.T @ x2.detach()  # dL/dW of the merged layer, (out, in)
    torch.testing.assert_close(layer.lora.A.grad, 2.0 * delta_grad.T @ layer.lora.B.detach().T)
    torch.testing.assert_close(layer.lora.B.grad, 2.0 * layer.lora.A.detach().T @ delta_grad.T)


def test_a_zero_b_leaves_the_logits_unchanged_and_merge_unmerge_restores_the_weights():
    torch.manual_seed(1)
    model = GPTModel(TINY).eval()
    ids = torch.randint(0, TINY["vocab_size"], (2, 7))
    with torch.no_grad():
        before = model(ids)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
    replace_linear_with_lora(model, rank=4, alpha=4, scale=1.0)
    with torch.no_grad():
        assert torch.equal(model(ids), before)
        for layer in lora_layers(model):
            torch.nn.init.normal_(layer.lora.B, std=0.1)
        adapted = model(ids)
        assert (adapted - before).abs().max() > 1e-3
        merge_lora(model)
        torch.testing.assert_close(model(ids), adapted, atol=1e-5, rtol=1e-5)
        unmerge_lora(model)
        torch.testing.assert_close(model(ids), adapted, atol=1e-5, rtol=1e-5)
    restored = {k.replace(".linear.", "."): v for k, v in model.state_dict().items() if ".lora." not in k}
    for name, value in weights.items():
        torch.testing.assert_close(restored[name], value, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale,expected", [(None, 16.0), (2.0, 2.0)])
def test_the_scale_is_the_books_alpha_unless_given(scale, expected):
    assert LoRALayer(8, 8, rank=8, alpha=16, scale=scale).scale == expected


# -- LoRA for every family (issue 34) ----------------------------------------------------------------------
from ch04_gpt.lora import AdaptedLinear, LoRAConfig, adapted_layers, add_lora, lora_target_names, merge_and_unload  # noqa: E402
from tiny_models import FAMILIES, randomised, tiny  # noqa: E402

IDS = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(3))


def test_an_adapted_fused_layer_equals_its_merged_layer_forward_and_gradients():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 10)
    layer = AdaptedLinear(linear, {"q_proj": 4, "k_proj": 3, "v_proj": 3}, ["q_proj", "v_proj"],
                          LoRAConfig(rank=2, alpha=5))
    for lora in layer.adapters.values():
        torch.nn.init.normal_(lora.B)
    merged = torch.nn.Linear(6, 10)
    with torch.no_grad():
        merged.weight.copy_(linear.weight + layer.delta_weight())
        merged.bias.copy_(linear.bias)
    x1, x2 = torch.rand(3, 6, requires_grad=True), None
    x2 = x1.detach().clone().requires_grad_(True)
    torch.testing.assert_close(layer(x1), merged(x2))
    layer(x1).square().sum().backward()
    merged(x2).square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    assert layer.delta_weight()[4:7].abs().max() == 0  # k has no adapter: its rows do not change


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "gpt1"])
def test_zero_adapters_leave_every_family_unchanged_and_merged_ones_compute_the_same(family):
    model = randomised(GPTModel(tiny(family)))
    before = model(IDS)
    targets = ("all-linear",) if model.cfg.tie_weights else ("all-linear", "head")
    add_lora(model, LoRAConfig(rank=3, alpha=6, targets=targets))
    assert torch.equal(model(IDS), before)  # B starts at zero
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(".adapters." in n for n in trained)  # only the adapters train
    if model.cfg.ff == "moe":  # the experts are targets, the router is not unless named
        assert any(".experts." in n for n in trained) and not any(".ff.gate." in n for n in trained)
    for layer in adapted_layers(model).values():
        for lora in layer.adapters.values():
            torch.nn.init.normal_(lora.B, std=0.2)
    adapted = model(IDS)
    assert (adapted - before).abs().max() > 1e-3
    torch.testing.assert_close(merge_and_unload(model)(IDS), adapted, atol=1e-5, rtol=1e-5)
    assert not adapted_layers(model)


def test_targets_by_name_group_and_the_errors():
    model = GPTModel(tiny("qwen3-moe"))
    assert lora_target_names(model) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate", "gate_proj", "up_proj",
                                        "down_proj", "lm_head"]
    names = add_lora(model, LoRAConfig(rank=2, targets=("q_proj", "gate")))
    assert names == [f"trf_blocks.{i}.{m}" for i in range(3) for m in ("att.qkv", "ff.gate")]
    assert list(model.trf_blocks[0].att.qkv.adapters) == ["q_proj"]
    with pytest.raises(ValueError, match="'w1' matches no layer of this qwen3-moe model: give all-linear, .*q_proj"):
        add_lora(GPTModel(tiny("qwen3-moe")), LoRAConfig(rank=2, targets=("w1",)))
    with pytest.raises(ValueError, match="tied weights"):
        add_lora(GPTModel(tiny("llama", tie_weights=True)), LoRAConfig(rank=2, targets=("head",)))
    for bad in (dict(rank=0), dict(alpha=-1), dict(dropout=1.0), dict(scale="x"), dict(targets=())):
        with pytest.raises(ValueError):
            LoRAConfig(**bad)
