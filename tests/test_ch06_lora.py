"""Appendix E as a run (python -m ch06_classification.lora): the appendix's steps in its order on a tiny fresh
GPT, the trainable counts it prints, only the adapters changed by training, the loss figure beside the run."""

import re

import pytest


@pytest.fixture(scope="module")
def appendix_run(tmp_path_factory):
    import io
    from contextlib import redirect_stdout

    from ch06_classification.lora import main

    out = tmp_path_factory.mktemp("lora")
    printed = io.StringIO()
    with redirect_stdout(printed):
        namespace = main(["--tiny", "--epochs", "1", "--max-steps", "2", "--out-dir", str(out)])
    return namespace, printed.getvalue(), out


def test_the_appendix_prints_its_headings_and_counts(appendix_run):
    _, printed, out = appendix_run
    for heading in ("E.2 Preparing the dataset", "E.3 Initializing the model", "E.4 Parameter-efficient"):
        assert heading in printed
    assert "130 training batches" in printed and "Total trainable parameters after: 0" in printed
    # rank 16 on every linear layer of the tiny GPT: (in + out) x 16 each
    per_block = 4 * (32 + 32) * 16 + 2 * (32 + 128) * 16
    expected = 2 * per_block + (32 + 2) * 16
    assert f"Total trainable LoRA parameters: {expected:,}" in printed
    assert re.search(r"Ep 1 \(Step 000000\): Train loss \d\.\d{3}, Val loss \d\.\d{3}", printed)
    assert "not the book's values" in printed and (out / "ch06_lora_loss.png").stat().st_size > 5_000


def test_only_the_adapters_trained(appendix_run):
    import torch

    from ch04_gpt.lora import lora_layers

    namespace, _, _ = appendix_run
    model = namespace["model"]
    layers = lora_layers(model)
    assert layers and all(not layer.linear.weight.requires_grad for layer in layers)
    assert any(layer.lora.B.abs().sum() > 0 for layer in layers)  # B left zero: the adapters learned
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora." in name for name in trainable)
    assert torch.isfinite(torch.tensor(namespace["train_losses"])).all()
