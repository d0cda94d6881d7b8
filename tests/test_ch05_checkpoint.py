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


def test_saved_without_zip_checksums_and_the_setting_restored(tmp_path):
    """The checksums that torch.load never reads are not computed (most of a 2 GB save's time), for
    the checkpoint only: torch.save elsewhere keeps PyTorch's default."""
    import zipfile

    from torch.utils.serialization import config

    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model, opt)
    with zipfile.ZipFile(path) as archive:
        assert {info.CRC for info in archive.infolist()} == {0}
    assert config.save.compute_crc32
    torch.save({"w": torch.ones(3)}, tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as archive:
        assert archive.testzip() is None  # every record has its real checksum
    assert load_checkpoint(path, GPTModel(TINY))["step"] == 0


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


def test_checkpoints_of_earlier_versions_migrate(tmp_path):
    """Before the model core: the kernels in the config (impl), norm_position, and the book's W_query layout."""
    from ch03_attention.fast_attention import fast_to_book_state_dict
    from ch05_pretraining.checkpoint import FORMAT, VERSION, model_from_checkpoint
    from ch05_pretraining.previous_chapters import GPTModel

    from conftest import TINY

    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    old_config = {**TINY, "impl": "book", "tie_weights": False, "norm_position": "pre", "norm_eps": 1e-5}
    payload = {"format": FORMAT, "version": VERSION, "config": old_config, "optimizer": None, "step": 1, "epoch": 1,
               "model": fast_to_book_state_dict(model.state_dict(), TINY["context_length"]),
               "rng": {}, "tokenizer": "gpt2", "trainer_state": {}}
    torch.save(payload, tmp_path / "old.pt")
    loaded, ckpt = model_from_checkpoint(tmp_path / "old.pt")
    idx = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(loaded.eval()(idx), model(idx), atol=1e-6)
    assert loaded.cfg == model.cfg and loaded.cfg.family == "gpt2"


def test_an_earlier_ladder_checkpoint_migrates(tmp_path):
    from ch05_pretraining.baselines import build_rung
    from ch05_pretraining.checkpoint import FORMAT, VERSION, model_from_checkpoint
    from ch05_pretraining.previous_chapters import model_config

    cfg = model_config("gpt2-small", vocab_size=20, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0)
    rung = build_rung(cfg, {"name": "LM3", "n": 3, "n_blocks": 1})
    old_config = {**cfg.to_dict(), "ladder": "LM3", "n": 3, "n_blocks": 1}
    torch.save({"format": FORMAT, "version": VERSION, "config": old_config, "model": rung.state_dict(),
                "optimizer": None, "step": 1, "epoch": 0, "rng": {}, "tokenizer": "gpt2", "trainer_state": {}},
               tmp_path / "LM3.pt")
    loaded, _ = model_from_checkpoint(tmp_path / "LM3.pt")
    assert type(loaded).__name__ == "LM3" and loaded.rung == {"name": "LM3", "n": 3, "n_blocks": 1}


def test_the_config_round_trips_through_a_checkpoint(tmp_path):
    from ch05_pretraining.checkpoint import model_from_checkpoint, save_checkpoint
    from ch05_pretraining.previous_chapters import GPTModel, scaled_config

    cfg = scaled_config("gemma3-270m", emb_dim=32, n_heads=4, n_layers=6, vocab_size=30, context_length=16)
    save_checkpoint(tmp_path / "g.pt", GPTModel(cfg))
    loaded, ckpt = model_from_checkpoint(tmp_path / "g.pt")
    assert loaded.cfg == cfg and ckpt["config"]["layer_types"][5] == "full" and ckpt["impl"] == "fast"
