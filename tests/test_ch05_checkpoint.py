import pytest
import torch

from ch04_gpt.model import GPTModel
from ch05_pretraining.checkpoint import (
    CheckpointError, load_checkpoint, model_from_checkpoint, read_checkpoint, save_checkpoint,
)
from conftest import TINY



def make(cfg=TINY):
    torch.manual_seed(0)
    model = GPTModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_model_optimizer_and_metadata(tmp_path):
    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model, opt, step=7, epoch=2)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    model2 = GPTModel(TINY)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    ckpt = load_checkpoint(path, model2, opt2)
    assert ckpt["step"] == 7 and ckpt["epoch"] == 2 and ckpt["tokenizer"] == {"format": "gpt2"}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    rebuilt, _ = model_from_checkpoint(path)
    idx = torch.tensor([[4, 5, 6]])
    torch.testing.assert_close(rebuilt.eval()(idx), model.eval()(idx))


def test_loads_with_weights_only(tmp_path, monkeypatch):
    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model, opt)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    read_checkpoint(path)
    assert seen["weights_only"] is True


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage,match", [
    ("truncate", "is damaged or not a PyTorch checkpoint"), ("binary", "is damaged or not a PyTorch checkpoint"),
    ("empty", "is a text file"), ("text", "is a text file"),
])
def test_damaged_file(tmp_path, damage, match):
    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model, opt)
    data = path.read_bytes()
    # "text" is what issue 11 found: torch's safe unpickler raised KeyError(544502645), shown as "error: 544502645"
    path.write_bytes({"truncate": data[: len(data) // 2], "binary": bytes(range(256)) * 4, "empty": b"",
                      "text": b"this is not a checkpoint\n" * 10}[damage])
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)


def test_bare_state_dict_is_not_a_checkpoint(tmp_path):
    model, _ = make()
    torch.save(model.state_dict(), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="not a llms-from-scratch-checkpoint"):
        read_checkpoint(tmp_path / "model.pth")


def test_other_config_names_first_mismatch(tmp_path):
    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model, opt)
    other = GPTModel({**TINY, "emb_dim": 64})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, other)
    assert "tok_emb.weight has shape (97, 32) in the file but (97, 64) in the model" in str(info.value)
    deeper = GPTModel({**TINY, "n_layers": 3})
    with pytest.raises(CheckpointError, match="trf_blocks.2.att.qkv.weight is missing"):
        load_checkpoint(path, deeper)


def test_failed_write_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model, opt, step=1)
    import os

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model, opt, step=2)
    monkeypatch.undo()
    assert read_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
