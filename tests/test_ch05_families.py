"""Training every family from the CLI (issue 20): train --arch X trains a tiny model with falling loss, resumes bit
for bit, stores the whole config, and its checkpoint generates through the generate CLI and the REPL."""

import io
import sys

import pytest

from ch04_gpt.families import FAMILIES, TITLES
from ch05_pretraining.checkpoint import model_from_checkpoint, read_checkpoint


def train(argv):
    from ch05_pretraining.train import main

    return main(argv)


def family_args(arch, corpus, out):
    moe = ["--n-experts", "4", "--n-experts-per-token", "2"] if FAMILIES[arch].get("ff") == "moe" else []
    return ["--data", str(corpus), "--arch", arch, "--tokenizer", "char", "--n-layers", "2", "--emb-dim", "32",
            "--n-heads", "4", "--context-length", "32", "--batch-size", "4", "--eval-freq", "7", "--eval-iter", "2",
            "--lr", "3e-3", "--no-progress", "--start-context", "I had", "--out", str(out), *moe]


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_every_family_trains_and_resumes_bit_for_bit(arch, corpus, tmp_path, capsys):
    whole = train([*family_args(arch, corpus, tmp_path / "whole.pt"), "--epochs", "2"])
    assert TITLES[arch] in capsys.readouterr().out
    assert whole.train_losses[-1] < whole.train_losses[0] - 0.5  # it learns
    train([*family_args(arch, corpus, tmp_path / "part.pt"), "--epochs", "1"])
    resumed = train(["--resume", str(tmp_path / "part.pt"), "--epochs", "2", "--no-progress"])
    assert resumed.train_losses == whole.train_losses and resumed.val_losses == whole.val_losses
    ckpt = read_checkpoint(tmp_path / "whole.pt")  # the whole config is stored
    assert ckpt["config"]["family"] == arch and "impl" not in ckpt["config"]
    model, _ = model_from_checkpoint(tmp_path / "whole.pt")
    assert model.cfg.family == arch and type(model).__name__ == "GPTModel"


def test_moe_training_reports_the_router_loss(corpus, tmp_path, capsys):
    train([*family_args("mixtral", corpus, tmp_path / "m.pt"), "--max-steps", "8"])
    assert "router aux loss" in capsys.readouterr().out


@pytest.mark.parametrize("arch", ["gemma3", "olmo3"])
def test_a_family_checkpoint_generates_and_chats_in_the_repl(arch, corpus, tmp_path, capsys, monkeypatch):
    from ch05_pretraining.generate import main as generate

    out = tmp_path / f"{arch}.pt"
    train([*family_args(arch, corpus, out), "--max-steps", "10"])
    capsys.readouterr()
    generate(["--checkpoint", str(out), "--prompt", "I had", "--max-new-tokens", "40", "--temperature", "0"])
    printed = capsys.readouterr().out
    assert printed.startswith("I had") and len(printed) > 30
    monkeypatch.setattr(sys, "stdin", io.StringIO(":top 3 I had\nI had\n"))
    generate(["--checkpoint", str(out), "--interactive", "--max-new-tokens", "10"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.strip()[0].isdigit() for line in lines[:3])  # :top 3, then the text
    assert lines[3].startswith("I had")


def test_size_options_scale_the_family(corpus, tmp_path):
    train([*family_args("qwen3", corpus, tmp_path / "q.pt"), "--n-kv-heads", "1", "--max-steps", "2"])
    cfg = read_checkpoint(tmp_path / "q.pt")["config"]
    assert (cfg["n_kv_heads"], cfg["head_dim"], cfg["qk_norm"]) == (1, 8, "head")


@pytest.mark.parametrize("argv,message", [
    (["--arch", "llama", "--book"], "--book runs the book's GPT-2 classes"),
    (["--arch", "llama", "--n-heads", "3"], "n_heads"),
    (["--preset", "qwen3-9b"], "unknown model preset 'qwen3-9b'"),
])
def test_family_options_refused_in_one_line(argv, message, corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train(["--data", str(corpus), "--tokenizer", "char", "--out", str(tmp_path / "x.pt"), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.startswith("error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_every_family_starts_where_a_language_model_starts(arch, corpus, tmp_path):
    """The default initial weights: the first loss is near ln(vocabulary size), tied embeddings included
    (the book's N(0, 1) embedding would start a tied model near 59 on 66 characters)."""
    import math

    state = train([*family_args(arch, corpus, tmp_path / "m.pt"), "--max-steps", "1", "--lr", "1e-6"])
    vocab = read_checkpoint(tmp_path / "m.pt")["config"]["vocab_size"]
    assert abs(state.train_losses[0] - math.log(vocab)) < 0.5, (state.train_losses[0], vocab)


def test_n_heads_that_cannot_keep_the_kv_ratio_say_what_was_chosen(corpus, tmp_path, capsys):
    """qwen3-30b-a3b has 8 query heads per kv head; 4 heads cannot keep it: 1 kv head, said in one line. Llama's
    4 per kv head fit 4 heads: nothing to say."""
    train([*family_args("qwen3-moe", corpus, tmp_path / "m.pt"), "--max-steps", "1"])
    out = capsys.readouterr().out
    assert "note: qwen3-30b-a3b has 8 query heads per kv head, which 4 heads cannot keep: 1 kv heads" in out
    assert "4 heads (1 kv)" in out
    train([*family_args("llama", corpus, tmp_path / "l.pt"), "--max-steps", "1"])
    out = capsys.readouterr().out
    assert "note:" not in out and "4 heads (1 kv)" in out
