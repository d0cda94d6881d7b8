"""LoRA in chapter 6's classifier (issue 34): the fast path trains adapters and the new head only, its checkpoint
holds them and the base's fingerprint and classify reads it back to the same predictions; --book with LoRA runs
appendix E and refuses what contradicts it; --resume (after the end or a Ctrl-C) continues bit for bit, with
LoRA or without (issue 33)."""

import pytest
import torch

from ch05_pretraining.checkpoint import read_checkpoint
from ch06_classification import classify, train
from cli_checks import fails_with_one_line
from fine_tuning import LABELLED, run_cli, small_model, write_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "base.pth"
    torch.save(small_model(2, n_layers=2, context_length=24).state_dict(), path)
    return path


def test_adapters_and_the_head_train_and_classify_reads_them(base_pth, tmp_path, capsys):
    out = tmp_path / "c.pt"
    printed = run_cli(["--data", str(write_data(tmp_path, "tsv")), "--init-from", str(base_pth), "--n-heads", "4",
                       "--epochs", "2", "--batch-size", "4", "--token", "last-real", "--lora-rank", "4",
                       "--lora-targets", "attention", "--lr", "1e-2", "--out", str(out), "--no-progress"])
    assert "LoRA rank 4" in printed and "LoRA: " in printed
    ckpt = read_checkpoint(out)
    assert set(ckpt["model"]) == {"out_head.weight", "out_head.bias"} | {
        f"trf_blocks.{i}.att.{m}.adapters.{p}.{x}" for i in range(2) for m, p in (("qkv", "c_attn"),
                                                                                 ("out_proj", "c_proj"))
        for x in "AB"}
    assert ckpt["lora"]["base"]["path"] == str(base_pth.resolve())
    assert any(t.abs().max() > 0 for k, t in ckpt["model"].items() if k.endswith(".B"))  # the adapters trained
    texts = [text for _, text in LABELLED[:8]]
    again = classify.Classifier(out).classify(texts)
    assert len(again) == 8 and all(label in ("mid", "neg", "pos") for label, _ in again)
    plain = classify.classifier_model(ckpt, out)  # base + adapters before the file's tensors: B = 0, a new head
    assert any(".adapters." in name for name in plain.state_dict())
    torch.save(small_model(3, n_layers=2, context_length=24).state_dict(), base_pth.parent / "other.pth")
    (base_pth.parent / "other.pth").replace(base_pth)  # another model where the base was
    fails_with_one_line(capsys, classify.main, ["--checkpoint", str(out), "hello"], "fingerprint")


def test_book_with_lora_is_appendix_e_and_refuses_other_settings(base_pth, tmp_path, capsys):
    for extra, match in ((["--lora-rank", "8"], "--lora-rank 8 contradicts it"),
                         (["--lora-rank", "16", "--lora-alpha", "8"], "--lora-alpha 8.0 contradicts it"),
                         (["--lora-rank", "16", "--lora-targets", "attention"], "--lora-targets attention")):
        fails_with_one_line(capsys, train.main, ["--book", "--init-from", str(base_pth), "--n-heads", "4",
                                                 "--out", str(tmp_path / "c.pt"), *extra], match)
    fails_with_one_line(capsys, train.main, ["--data", str(write_data(tmp_path, "tsv")), "--init-from", str(base_pth),
                                             "--n-heads", "4", "--lora-rank", "4", "--trainable", "all",
                                             "--out", str(tmp_path / "c.pt")], "--trainable and --lora-rank")
    fails_with_one_line(capsys, train.main, ["--data", str(write_data(tmp_path, "tsv")), "--init-from", str(base_pth),
                                             "--n-heads", "4", "--lora-rank", "4", "--lora-targets", "head",
                                             "--out", str(tmp_path / "c.pt")], "new head trains whole")
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("lora", [[], ["--lora-rank", "2", "--lora-dropout", "0.2"]])
def test_resume_is_bit_for_bit(lora, base_pth, tmp_path):
    """Two epochs at once, or one and then --resume --epochs 2: the same tensors and the same printed losses."""
    common = ["--data", str(write_data(tmp_path, "tsv")), "--init-from", str(base_pth), "--n-heads", "4",
              "--batch-size", "4", "--eval-freq", "3", "--no-progress", "--trainable", "all", *lora]
    if lora:
        common.remove("--trainable"), common.remove("all")
    whole = run_cli([*common, "--epochs", "2", "--out", str(tmp_path / "whole.pt")])
    first = run_cli([*common, "--epochs", "1", "--out", str(tmp_path / "half.pt")])
    second = run_cli(["--resume", str(tmp_path / "half.pt"), "--epochs", "2", "--no-progress"])
    assert "resume: --epochs: 1 -> 2" in second
    a, b = read_checkpoint(tmp_path / "whole.pt")["model"], read_checkpoint(tmp_path / "half.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [line for line in whole.splitlines() if line.startswith("Ep ")]
    assert steps == [line for line in (first + second).splitlines() if line.startswith("Ep ")]


def test_ctrl_c_saves_and_resume_continues_bit_for_bit(base_pth, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from ch06_classification.tail import TailTask

    common = ["--data", str(write_data(tmp_path, "tsv")), "--init-from", str(base_pth), "--n-heads", "4",
              "--batch-size", "4", "--eval-freq", "2", "--no-progress", "--epochs", "1"]
    run_cli([*common, "--out", str(tmp_path / "whole.pt")])
    calls, loss = [], TailTask.loss

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C during the third step: the run stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return loss(self, *args, **kwargs)
    monkeypatch.setattr(TailTask, "loss", interrupted)
    with pytest.raises(SystemExit) as exc:
        run_cli([*common, "--out", str(tmp_path / "cut.pt")])
    assert exc.value.code == 130 and "continue with --resume" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "cut.pt")["trainer_state"]["global_step"] == 2
    monkeypatch.setattr(TailTask, "loss", loss)
    run_cli(["--resume", str(tmp_path / "cut.pt"), "--no-progress"])
    a, b = read_checkpoint(tmp_path / "whole.pt")["model"], read_checkpoint(tmp_path / "cut.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
