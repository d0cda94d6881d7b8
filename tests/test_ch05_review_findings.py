"""Review findings (issue 24, section 3): bad input found before work starts, conflicts refused instead of
silently ignored, and the run's own prompt as generate's default."""

import pytest
import torch

from conftest import TINY_ARGS
from cli_checks import fails_with_one_line


@pytest.mark.parametrize("argv,match", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--gpt2-weights", "missing.safetensors"], "--gpt2-weights 'missing.safetensors' does not exist"),
])
def test_the_chapter_run_checks_its_options_before_training(argv, match, capsys):
    from ch05_pretraining.__main__ import main

    out = fails_with_one_line(capsys, main, argv, match)
    assert "5.1" not in out.out  # not one line of the chapter printed


def test_the_chapter_run_refuses_a_file_as_a_folder(tmp_path, capsys):
    from ch05_pretraining.__main__ import main

    (tmp_path / "f").write_text("x")
    for option in ("--out-dir", "--image-dir"):
        fails_with_one_line(capsys, main, [option, str(tmp_path / "f")], f"{option} '{tmp_path / 'f'}' is a file, "
                                                                           "not a folder")


def test_exercises_refuse_a_folder_as_checkpoint_before_training(tmp_path, capsys):
    from ch05_pretraining.exercises import main

    fails_with_one_line(capsys, main, ["--only", "5.2", "--checkpoint", str(tmp_path)], "is a directory")


def test_train_refuses_two_budgets(corpus, tmp_path, capsys):
    from ch05_pretraining.train import main

    fails_with_one_line(capsys, main, ["--data", str(corpus), "--max-steps", "10", "--epochs", "3", *TINY_ARGS,
                                       "--out", str(tmp_path / "x.pt")], "give one of them")


def test_prepare_refuses_conflicts_and_an_empty_validation_split(corpus, tmp_path, capsys):
    from ch05_pretraining.prepare import main

    out = tmp_path / "sub" / "t.bin"
    fails_with_one_line(capsys, main, ["--input", str(corpus), "--out", str(out), "--tokenizer", "gpt2",
                                       "--train-tokenizer", "300"], "not both")
    fails_with_one_line(capsys, main, ["--input", str(corpus), "--out", str(out), "--val-fraction", "0"],
                        "leaves the validation split")
    assert not (tmp_path / "sub").exists()


@pytest.fixture(scope="module")
def shakespeare_style_ckpt(corpus, tmp_path_factory):
    from ch05_pretraining.train import main

    out = tmp_path_factory.mktemp("ckpt") / "run.pt"
    main(["--data", str(corpus), "--tokenizer", "char", "--max-steps", "2", "--start-context", "I had",
          "--out", str(out), *TINY_ARGS])
    return out


def test_generate_starts_from_the_runs_own_prompt(shakespeare_style_ckpt, capsys):
    from ch05_pretraining.generate import main

    text = main(["--checkpoint", str(shakespeare_style_ckpt), "--max-new-tokens", "3"])
    assert text.startswith("I had")


def test_generate_refuses_options_it_would_ignore(shakespeare_style_ckpt, tmp_path, capsys):
    from ch05_pretraining.generate import main

    ckpt = str(shakespeare_style_ckpt)
    fails_with_one_line(capsys, main, ["--checkpoint", ckpt, "--n-heads", "3"], "leave --n-heads out")
    fails_with_one_line(capsys, main, ["--checkpoint", ckpt, "--interactive", "--prompt", "hi"], "give one of them")
    from ch04_gpt.model import GPTModel
    from conftest import TINY

    sd = tmp_path / "model.pth"
    torch.save(GPTModel({**TINY, "vocab_size": 50257, "n_heads": 4, "emb_dim": 32}).state_dict(), sd)
    bpe = tmp_path / "tok.json"
    from ch02_text.bpe import BPETokenizer

    tok = BPETokenizer()
    tok.train("hello world " * 50, 260)
    tok.save(bpe)
    fails_with_one_line(capsys, main, ["--checkpoint", str(sd), "--tokenizer", str(bpe), "--n-heads", "4"],
                        "give the --tokenizer it was trained with")
    fails_with_one_line(capsys, main, ["--checkpoint", str(sd), "--tokenizer", "char", "--n-heads", "4"],
                        "does not carry")


def test_help_says_each_default_once(capsys):
    from ch05_pretraining.train import build_parser

    text = build_parser().format_help()
    assert "(default: None)" not in text.replace("\n", " ").split("--stride")[1].split("--tokenizer")[0]
