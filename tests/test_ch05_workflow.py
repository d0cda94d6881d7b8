"""Your own text, your own tokenizer, your own GPT (issue 12): the README's three commands at tiny sizes,
tokenizers carried by token files and checkpoints, step budgets, periodic and best checkpoints, a resume
after SIGKILL equal to the uninterrupted run, and the bad input of this workflow.
"""

import io
import os
import signal
import subprocess
import sys

import pytest
import torch

from ch02_text.paths import REPO_ROOT
from ch05_pretraining.checkpoint import read_checkpoint

# The README's GPT-1 model, shrunk: same options, tiny numbers.
TINY_GPT1 = ["--arch", "gpt1", "--n-layers", "2", "--n-heads", "2", "--emb-dim", "32", "--context-length", "32",
             "--batch-size", "4", "--drop-rate", "0.0", "--lr", "1e-3", "--warmup-steps", "2", "--min-lr", "1e-4",
             "--grad-clip", "1.0", "--tie-weights", "--init", "gpt2", "--beta2", "0.99", "--eval-freq", "3",
             "--eval-iter", "2", "--start-context", "ROMEO:", "--no-progress"]


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """The first 60,000 characters of tinyshakespeare.txt (found like every data file)."""
    from ch02_text.data_files import read_data_text

    path = tmp_path_factory.mktemp("text") / "shakespeare.txt"
    path.write_text(read_data_text("tinyshakespeare.txt")[:60_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(shakespeare, tmp_path_factory):
    """Command 1: prepare with --train-tokenizer."""
    from ch05_pretraining.prepare import main

    out = tmp_path_factory.mktemp("data") / "shakespeare.bin"
    header = main(["--input", str(shakespeare), "--out", str(out), "--train-tokenizer", "300", "--workers", "1"])
    return out, header


def test_the_readmes_three_commands(prepared, tmp_path, capsys, monkeypatch):
    from ch05_pretraining.generate import main as generate
    from ch05_pretraining.train import main as train

    data, header = prepared
    assert header["tokenizer"]["format"] == "llms-from-scratch-bpe" and len(header["tokenizer"]["merges"]) == 43
    assert data.with_suffix(".tokenizer.json").is_file()
    out = tmp_path / "shakespeare.pt"
    state = train(["--data", str(data), *TINY_GPT1, "--max-steps", "6", "--save-every", "2", "--keep-best",
                   "--out", str(out)])
    printed = capsys.readouterr().out
    assert "GPT-1 (post-LN)" in printed and "own BPE: 256 bytes + 43 merges + 1 special = 300 ids" in printed
    assert state.global_step == 5 and state.track_tokens_seen[-1] == 6 * 4 * 32  # evaluated after the last step
    ckpt = read_checkpoint(out)
    assert ckpt["config"]["block"] == "post" and ckpt["config"]["vocab_size"] == 300
    assert ckpt["tokenizer"] == header["tokenizer"]  # the tokenizer itself, not a path
    best = read_checkpoint(tmp_path / "shakespeare.best.pt")
    assert best["trainer_state"]["best_val_loss"] == min(state.val_losses)

    data.with_suffix(".tokenizer.json").unlink()  # generate needs nothing but the checkpoint
    text = generate(["--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "20"])
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    monkeypatch.setattr(sys, "stdin", io.StringIO(":top 3 ROMEO:\n:tok ROMEO\n:quit\n"))
    capsys.readouterr()
    generate(["--checkpoint", str(out), "--interactive"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 4 and lines[0].strip()[0].isdigit()


def test_char_tokenizer_trains_from_a_text_file_and_travels_in_the_checkpoint(shakespeare, tmp_path):
    from ch05_pretraining.generate import main as generate
    from ch05_pretraining.train import main as train

    out = tmp_path / "char.pt"
    train(["--data", str(shakespeare), "--tokenizer", "char", *TINY_GPT1, "--max-steps", "3", "--out", str(out)])
    ckpt = read_checkpoint(out)
    assert ckpt["tokenizer"]["format"] == "llms-from-scratch-char-tokenizer"
    assert ckpt["config"]["vocab_size"] == len(set(shakespeare.read_text(encoding="utf-8"))) + 1
    assert generate(["--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "5"]).startswith("ROMEO:")


def test_a_prepared_char_file_and_max_tokens(shakespeare, tmp_path):
    from ch05_pretraining.prepare import main as prepare
    from ch05_pretraining.train import main as train

    data = tmp_path / "char.bin"
    prepare(["--input", str(shakespeare), "--out", str(data), "--tokenizer", "char", "--workers", "1"])
    state = train(["--data", str(data), *TINY_GPT1, "--max-tokens", "500", "--out", str(tmp_path / "m.pt")])
    assert state.global_step + 1 == 4  # ceil(500 / (4 x 32)) steps


def run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ch05_pretraining.train", *args], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_resume_after_sigkill_equals_the_uninterrupted_run(shakespeare, tmp_path):
    args = ["--data", str(shakespeare), "--tokenizer", "char", *TINY_GPT1, "--max-steps", "12",
            "--save-every", "3", "--drop-rate", "0.1"]
    whole = run_cli([*args, "--out", str(tmp_path / "whole.pt")])
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    killed = tmp_path / "killed.pt"
    proc = run_cli([*args, "--out", str(killed)])
    for line in proc.stdout:
        if line.startswith("Ep 1 (Step 000006)"):  # printed after the step-6 checkpoint was written
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert read_checkpoint(killed)["trainer_state"]["global_step"] in (5, 8)  # the newest complete checkpoint
    resumed = run_cli(["--resume", str(killed), "--no-progress"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = read_checkpoint(tmp_path / "whole.pt"), read_checkpoint(killed)
    assert a["trainer_state"]["val_losses"] == b["trainer_state"]["val_losses"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


@pytest.mark.parametrize("args,match", [
    (["--max-steps", "0"], "argument --max-steps: must be a positive integer"),
    (["--save-every", "-1"], "argument --save-every: must be a positive integer"),
    (["--max-steps", "3", "--max-tokens", "100"], "give --max-steps or --max-tokens, not both"),
    (["--tokenizer", "bpe"], "--tokenizer 'bpe' is not known"),
    (["--tokenizer", "NOT_OURS.json"], "is not a tokenizer of this project"),
    (["--tokenizer", "BROKEN.json"], "is damaged or not JSON"),
    (["--out", "FILE/x.pt", "--save-every", "2"], "cannot be written"),
    (["--start-context", "ROMEO: \u00e6\u00f8"], "--start-context: character"),
])
def test_workflow_bad_input(shakespeare, tmp_path, capsys, args, match):
    from ch05_pretraining.train import main as train

    (tmp_path / "NOT_OURS.json").write_text('{"vocab": {"a": 1}}')
    (tmp_path / "BROKEN.json").write_text('{"format": ')
    (tmp_path / "FILE").write_text("a file, not a folder")
    args = [str(tmp_path / a) if a.split("/")[0] in ("NOT_OURS.json", "BROKEN.json", "FILE") else a for a in args]
    base = ["--data", str(shakespeare), "--tokenizer", "char", *TINY_GPT1, "--max-steps", "2",
            "--out", str(tmp_path / "o.pt")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train([*base, *args])
    err = capsys.readouterr()
    assert info.value.code == 1 and "Ep 1" not in err.out
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines


def test_prepare_and_resume_refuse_the_wrong_tokenizer(prepared, shakespeare, tmp_path, capsys):
    from ch05_pretraining.prepare import main as prepare
    from ch05_pretraining.train import main as train

    def one_line(main, argv, match):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and match in lines[0], lines

    one_line(prepare, ["--input", str(shakespeare), "--out", str(tmp_path / "t.bin"), "--train-tokenizer", "200"],
             "vocab_size must be at least 257")
    data, _ = prepared
    one_line(train, ["--data", str(data), "--tokenizer", "char", *TINY_GPT1], "differs from the tokenizer that")
    out = tmp_path / "run.pt"
    train(["--data", str(shakespeare), "--tokenizer", "char", *TINY_GPT1, "--max-steps", "2", "--out", str(out)])
    one_line(train, ["--resume", str(out), "--max-steps", "4", "--tokenizer", "gpt2"],
             "--tokenizer gpt2 differs from the checkpoint's char")
    one_line(train, ["--resume", str(out), "--max-steps", "4", "--arch", "gpt2"],
             "--arch gpt2 differs from the checkpoint's gpt1")
    one_line(train, ["--resume", str(out), "--max-steps", "2"], "already took 2 steps")
