"""Bad input at the CLIs: one `error:` line naming the option or file, exit 1, nothing written, before work starts.

Each case is one that escaped before (issue 11): tracebacks, silent exit 0, or a message found only after the run.
"""

import io
import json
import os
import sys

import numpy as np
import pytest
import torch

from ch02_text.cli import cli_errors
from ch05_pretraining.checkpoint import read_checkpoint
from cli_checks import fails_with_one_line
from conftest import TINY, TINY_ARGS

@pytest.fixture(scope="module")
def run_ckpt(corpus, tmp_path_factory):
    from ch05_pretraining.train import main

    out = tmp_path_factory.mktemp("ckpt") / "run.pt"
    main(["--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY_ARGS])
    return out


def token_file(tmp_path, ids, header_changes=None):
    """A .bin/.json pair written by hand (the damaged files `prepare` would never write)."""
    path = tmp_path / "tokens.bin"
    np.asarray(ids, dtype=np.uint16).tofile(path)
    n = len(ids)
    header = {"format": "llms-token-file", "version": 1, "tokenizer": "gpt2", "dtype": "uint16", "count": n,
              "files": [], "split": {"train": [0, n - 100], "val": [n - 100, n]}, **(header_changes or {})}
    path.with_suffix(".json").write_text(json.dumps(header))
    return path


@pytest.mark.parametrize("args,match", [
    (["--n-heads", "0"], "argument --n-heads: must be a positive integer, got '0'"),
    (["--emb-dim", "-32"], "argument --emb-dim: must be a positive integer, got '-32'"),
    (["--n-layers", "-1"], "argument --n-layers: must be a positive integer"),
    (["--threads", "-1"], "argument --threads: must be a positive integer"),
    (["--grad-clip", "nan"], "argument --grad-clip: must be a number > 0, got 'nan'"),
    (["--lr", "inf"], "argument --lr: must be a number > 0, got 'inf'"),
    (["--drop-rate", "1"], "argument --drop-rate: must be a number in [0, 1)"),
    (["--train-ratio", "1.5"], "argument --train-ratio"),
    (["--batch-size", "two"], "argument --batch-size: must be a positive integer, got 'two'"),
    (["--emb-dim", "30", "--n-heads", "4"], "emb_dim (30) must be divisible by n_heads (4)"),
    (["--min-lr", "1.0"], "0 <= --min-lr <= --lr"),
    (["--start-context", ""], "--start-context is empty"),
    (["--start-context", "   "], "--start-context is empty"),
])
def test_train_options_are_checked_before_work(corpus, tmp_path, capsys, args, match):
    from ch05_pretraining.train import main

    base = ["--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "x.pt"), *TINY_ARGS]
    captured = fails_with_one_line(capsys, main, [*base, *args], match)
    assert "Ep 1" not in captured.out and not (tmp_path / "x.pt").exists()


def test_train_output_problems_are_found_before_the_first_step(corpus, tmp_path, capsys):
    from ch05_pretraining.train import main

    base = ["--data", str(corpus), "--epochs", "1", *TINY_ARGS]
    (tmp_path / "adir").mkdir()
    out = fails_with_one_line(capsys, main, [*base, "--out", str(tmp_path / "adir")], "is a directory")
    assert "Ep 1" not in out.out
    (tmp_path / "afile").write_text("x")
    out = fails_with_one_line(capsys, main, [*base, "--out", str(tmp_path / "afile" / "m.pt")], "cannot be written")
    assert "Ep 1" not in out.out
    fails_with_one_line(capsys, main, [*base, "--out", str(tmp_path / "m.pt"), "--plot", str(tmp_path / "adir")],
                        "--plot")


def test_a_refused_run_leaves_no_new_folder(corpus, tmp_path, capsys):
    """The output checks probe the nearest existing folder; the folders of --out are made only when written."""
    from ch05_pretraining.train import main

    out = tmp_path / "runs" / "one" / "m.pt"
    fails_with_one_line(capsys, main, ["--data", str(corpus), "--epochs", "1", "--out", str(out), "--start-context",
                                       "", *TINY_ARGS], "--start-context is empty")
    assert list(tmp_path.iterdir()) == []


def test_directories_and_text_files_are_named_for_what_they_are(corpus, tmp_path, capsys):
    from ch05_pretraining.generate import main as generate
    from ch05_pretraining.train import main as train

    fails_with_one_line(capsys, train, ["--data", str(tmp_path), *TINY_ARGS], "is a directory")
    fails_with_one_line(capsys, generate, ["--checkpoint", str(tmp_path)], "is a directory")
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not a checkpoint\n")
    fails_with_one_line(capsys, generate, ["--checkpoint", str(text)], "is a text file")
    fails_with_one_line(capsys, train, ["--data", str(corpus), "--resume", str(text), *TINY_ARGS], "is a text file")


def test_token_file_with_split_outside_the_file_is_refused_at_open(tmp_path, capsys):
    from ch05_pretraining.train import main

    path = token_file(tmp_path, list(range(1000)), {"split": {"train": [0, 900], "val": [900, 5000]}})
    fails_with_one_line(capsys, main, ["--data", str(path), *TINY_ARGS], "lies outside the file's 1000 tokens")


def test_token_file_with_ids_past_the_vocabulary_is_refused_at_open(tmp_path, capsys):
    from ch05_pretraining.train import main

    ids = [7] * 2000
    ids[1500] = 60000  # GPT-2 has 50,257 ids
    path = token_file(tmp_path, ids)
    out = fails_with_one_line(capsys, main, ["--data", str(path), *TINY_ARGS], "holds token id 60000")
    assert "Ep 1" not in out.out


def test_resume_refuses_a_changed_batch_size_and_defaults_out_to_the_resumed_file(run_ckpt, tmp_path, capsys,
                                                                                  monkeypatch):
    from ch05_pretraining.train import main

    resumed = tmp_path / "resumed.pt"
    resumed.write_bytes(run_ckpt.read_bytes())
    fails_with_one_line(capsys, main, ["--resume", str(resumed), "--epochs", "2", "--batch-size", "4"],
                        "--batch-size 4 differs from the checkpoint's 2")
    fails_with_one_line(capsys, main, ["--resume", str(resumed), "--epochs", "2", "--n-layers", "3"],
                        "--n-layers 3 differs from the checkpoint's 1")
    monkeypatch.chdir(tmp_path)  # the old default --out was checkpoints/model.pt, relative to here
    state = main(["--resume", str(resumed), "--epochs", "2", "--lr", "1e-3"])
    assert state.epoch == 2 and read_checkpoint(resumed)["epoch"] == 2
    assert not (tmp_path / "checkpoints").exists()
    assert "resume: --lr: 0.0004 -> 0.001" in capsys.readouterr().out


def test_resume_from_a_bare_state_dict_says_what_it_is(corpus, tmp_path, capsys):
    from ch05_pretraining.train import main
    from ch04_gpt.model import GPTModel

    path = tmp_path / "model.pth"
    torch.save(GPTModel(TINY).state_dict(), path)
    fails_with_one_line(capsys, main, ["--data", str(corpus), "--resume", str(path), *TINY_ARGS],
                        "holds only model weights")


def test_prepare_refuses_empty_files_and_writes_nothing(tmp_path, capsys):
    from ch05_pretraining.prepare import main

    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("")
    (folder / "b.txt").write_text("")
    out = tmp_path / "out" / "c.bin"
    fails_with_one_line(capsys, main, ["--input", str(folder), "--out", str(out), "--workers", "1"],
                        "holds no text")
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not [p for p in out.parent.iterdir()] if out.parent.exists() else True
    fails_with_one_line(capsys, main, ["--input", str(folder), "--out", str(tmp_path / "c.txt")], "must end in .bin")
    fails_with_one_line(capsys, main, ["--input", str(folder), "--out", str(out), "--val-fraction", "1"],
                        "argument --val-fraction")


def test_prepare_writes_both_files_or_neither(tmp_path, monkeypatch):
    from ch05_pretraining.engine import token_data

    arrays, names = [np.arange(50), np.arange(30)], ["a", "b"]
    out = tmp_path / "c.bin"
    header = token_data.write_token_file(out, arrays, names)
    assert header["count"] == 80 and oct(out.stat().st_mode & 0o777) == "0o644"

    def broken(path, data):
        raise OSError(28, "No space left on device", str(path))

    fresh = tmp_path / "d.bin"
    monkeypatch.setattr(token_data, "atomic_write_bytes", broken)
    with pytest.raises(OSError):
        token_data.write_token_file(fresh, arrays, names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin", "c.json"]  # no d.bin, no temp files


def test_atomic_writer_removes_temp_files_of_an_earlier_killed_save(tmp_path):
    from ch02_text.safe_files import atomic_write_bytes

    stale = tmp_path / ".model.pt.k3j_x9a2.tmp"  # what a SIGKILL during a save leaves
    other = tmp_path / ".model.pt.png.k3j_x9a2.tmp"  # another target's temp file
    stale.write_bytes(b"half")
    other.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "model.pt", b"whole")
    assert not stale.exists() and other.exists() and (tmp_path / "model.pt").read_bytes() == b"whole"


def test_generate_refuses_weights_with_fewer_embeddings_than_the_tokenizer(tmp_path, capsys):
    from ch04_gpt.model import GPTModel
    from ch05_pretraining.generate import main
    from ch05_pretraining.gpt2_weights import export_gpt2_safetensors

    model = GPTModel({**TINY, "qkv_bias": True, "tie_weights": True})
    path = export_gpt2_safetensors(model, tmp_path / "small")
    fails_with_one_line(capsys, main, ["--gpt2", str(path)], "has 97 token embeddings but the tokenizer has 50,257")


def test_generate_reads_the_walkthroughs_bare_state_dict(tmp_path, capsys):
    from ch04_gpt.model import GPTModel
    from ch05_pretraining.generate import main

    torch.manual_seed(0)
    cfg = {**TINY, "vocab_size": 50257, "emb_dim": 48, "n_heads": 3}
    model = GPTModel(cfg, impl="book").eval()
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)  # what the chapter-5 walk-through writes
    fails_with_one_line(capsys, main, ["--checkpoint", str(path)], "pass --n-heads")
    text = main(["--checkpoint", str(path), "--n-heads", "3", "--prompt", "Every effort", "--max-new-tokens", "4"])
    from ch05_pretraining.previous_chapters import generate_text_simple, gpt2_tokenizer
    from ch05_pretraining.tokens import text_to_token_ids, token_ids_to_text

    tok = gpt2_tokenizer()
    assert text == token_ids_to_text(generate_text_simple(model, text_to_token_ids("Every effort", tok), 4, 16), tok)


def test_cli_errors_keeps_tracebacks_for_bugs(tmp_path, capsys):
    with pytest.raises(KeyError):
        with cli_errors():
            {"emb_dim": 1}["emb_dm"]  # a programming mistake, not the user's
    with pytest.raises(ValueError):
        with cli_errors():
            int("x")
    with pytest.raises(SystemExit):
        with cli_errors():
            open(tmp_path / "missing" / "file.txt")  # noqa: SIM115 - an OSError naming the user's file
    assert "file.txt" in capsys.readouterr().err


@pytest.fixture()
def session(tmp_path):
    from ch04_gpt.model import GPTModel
    from ch05_pretraining.generate import Session
    from ch05_pretraining.sampling import SamplingSettings
    from ch05_pretraining.previous_chapters import gpt2_tokenizer

    torch.manual_seed(0)
    model = GPTModel({**TINY, "vocab_size": 50257}).eval()
    return Session(model, gpt2_tokenizer(), torch.device("cpu"), SamplingSettings(max_new_tokens=3))


@pytest.mark.parametrize("line,match", [
    (":top 0 Every effort", "usage: :top N TEXT"),
    (":top 3", "usage: :top N TEXT"),
    (":tok", "usage: :tok TEXT"),
    (":set max_new_tokens abc", "max_new_tokens must be an integer, got 'abc'"),
    (":set temperature nan", "temperature must be a finite number >= 0"),
    (":set top_k -2", "top_k must be an integer >= 0 (0 = off)"),
    (":set colour blue", "unknown setting 'colour'"),
    (":set top_k", "usage: :set NAME VALUE"),
])
def test_repl_mistakes_get_a_sentence(session, line, match):
    from ch05_pretraining.generate import handle

    said = []
    assert handle(session, line, out=said.append)
    assert len(said) == 1 and said[0].startswith("error: ") and match in said[0], said


def test_repl_streams_and_ctrl_c_returns_to_the_prompt(session, monkeypatch, capsys):
    from ch05_pretraining import generate

    calls = []
    real = generate.Session.complete

    def complete(self, prompt, on_text=None):
        calls.append(prompt)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the first generation
        return real(self, prompt, on_text)

    monkeypatch.setattr(generate.Session, "complete", complete)
    monkeypatch.setattr(sys, "stdin", io.StringIO("first\nEvery effort\n:set top_k none\n:quit\n"))
    generate.interact(session)
    captured = capsys.readouterr()
    assert calls == ["first", "Every effort"] and "(stopped)" in captured.err
    lines = captured.out.splitlines()
    assert lines[-2].startswith("Every effort") and len(lines[-2]) > len("Every effort")
    assert lines[-1] == "top_k = None"


def test_help_shows_defaults_and_plain_text():
    import subprocess

    from ch02_text.paths import REPO_ROOT

    helps = {module: " ".join(subprocess.run(
        [sys.executable, "-m", f"ch05_pretraining.{module}", "--help"], cwd=REPO_ROOT, capture_output=True,
        text=True, env={**os.environ, "COLUMNS": "200"}).stdout.split()) for module in ("train", "generate", "prepare")}
    for module, text in helps.items():
        assert "``" not in text and "(default:" in text, module
    assert "--batch-size BATCH_SIZE windows per micro-batch (per process) (default: 2)" in helps["train"]
    assert "--max-new-tokens MAX_NEW_TOKENS tokens to generate (default: 50)" in helps["generate"]


def test_generate_hf_on_an_exported_character_model_says_how_to_pass_a_tokenizer(corpus, tmp_path, capsys):
    """A folder exported from a character-level model has no tokenizer.json: the line says so and what to do
    (not "download the model's whole folder")."""
    from ch05_pretraining.export import main as export
    from ch05_pretraining.generate import main as generate
    from ch05_pretraining.train import main as train

    train(["--data", str(corpus), "--arch", "llama", "--tokenizer", "char", "--max-steps", "1",
           "--start-context", "I had", "--out", str(tmp_path / "c.pt"), *TINY_ARGS])
    export(["--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "hf")])
    fails_with_one_line(capsys, generate, ["--hf", str(tmp_path / "hf"), "--prompt", "I had"],
                        "has no Hugging Face tokenizer (no tokenizer.json")
