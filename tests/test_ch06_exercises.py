"""`python -m ch06_classification.exercises`: each exercise on the tiny fresh GPT of `--tiny` (one training step)
changes only what it says (the padding, the trainable parameters, the position read), and without GPT-2's
weights each says in one line which file to place where."""

import contextlib
import io
import re

import pytest
import torch

from ch06_classification import pretrained
from ch06_classification.exercises import BOOK_CONFIG, main
from conftest import require_data

QUICK = ["--tiny", "--epochs", "1", "--max-steps", "1", "--device", "cpu"]
TITLES = {"6.1": "Increasing the context length", "6.2": "Fine-tuning the whole model",
          "6.3": "Fine-tuning the first versus last token"}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """All three exercises in one run, as `python -m ch06_classification.exercises --tiny ...` runs them."""
    require_data("SMSSpamCollection", "gpt2/vocab.bpe", "gpt2/encoder.json")
    buf, threads = io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and spares the shared cores
    try:
        with contextlib.redirect_stdout(buf):
            results = main([*QUICK, "--out-dir", str(tmp_path_factory.mktemp("ch06_exercises"))])
    finally:
        torch.set_num_threads(threads)
    out = buf.getvalue()
    sections = dict(zip(TITLES, re.split(r"\nExercise 6\.\d: .*\n-+\n", out)[1:]))
    return results, out, sections


def fresh_tiny_model():
    return pretrained.starting_model({**BOOK_CONFIG, **pretrained.TINY_SIZES}).model


def test_each_exercise_prints_its_header_and_final_accuracies(tiny_runs):
    results, out, sections = tiny_runs
    for number, title in TITLES.items():
        assert f"\nExercise {number}: {title}\n{'-' * len(f'Exercise {number}: {title}')}\n" in out
        section = sections[number]
        assert "Ep 1 (Step 000000): Train loss" in section and "not the book's" in section
        printed = re.findall(r"^(Training|Validation|Test) accuracy: (\d+\.\d\d)%$", section, re.MULTILINE)
        assert printed == [(split, f"{value * 100:.2f}") for split, value in results[number].accuracies.items()]
        assert "(not comparable: this run starts from the tiny fresh GPT of --tiny)" in section
    assert "training 83.08%, validation 87.92%, test 78.33%" in sections["6.1"]
    assert "test 96.67%" in sections["6.2"] and "test 75.00%" in sections["6.3"]


def test_6_1_pads_every_text_to_the_models_context_length(tiny_runs):
    results, _, sections = tiny_runs
    run = results["6.1"]
    assert run.model.context_length == pretrained.TINY_SIZES["context_length"] == 128
    for dataset in run.datasets:
        assert dataset.max_length == 128 and {len(ids) for ids in dataset.encoded_texts} == {128}
    assert results["6.2"].datasets[0].max_length == 120  # the chapter's: the longest training text
    assert len(run.datasets[0]) == 1045 and len(run.datasets[2]) == 300  # the same splits
    assert "Padding every text to 128 tokens, the model's context length" in sections["6.1"]


def test_6_2_trains_every_parameter(tiny_runs):
    results, _, sections = tiny_runs
    model, start = results["6.2"].model, fresh_tiny_model()
    assert all(p.requires_grad for p in model.parameters())
    trained = dict(model.named_parameters())
    changed = [name for name, p in start.named_parameters() if not name.startswith("out_head")
               and not torch.equal(p, trained[name])]
    assert changed == [n for n, _ in start.named_parameters() if not n.startswith("out_head")]  # one step moved all
    frozen = results["6.1"].model  # the chapter's setting, for contrast: the first block stays as it was
    assert not any(p.requires_grad for p in frozen.trf_blocks[0].parameters())
    assert torch.equal(frozen.trf_blocks[0].att.W_query.weight, start.trf_blocks[0].att.W_query.weight)
    total = sum(p.numel() for p in model.parameters())
    assert f"Training all {total:,} parameters (the chapter trains 12,834:" in sections["6.2"]


def test_6_3_reads_the_first_position(tiny_runs):
    results, _, sections = tiny_runs
    run = results["6.3"]
    classifier = run.model.model
    inputs = torch.stack([run.datasets[2][i][0] for i in range(len(run.datasets[2]))])
    labels = torch.stack([run.datasets[2][i][1] for i in range(len(run.datasets[2]))])
    with torch.no_grad():
        logits = classifier(inputs)  # (texts, tokens, 2)
    assert not torch.allclose(logits[:, 0, :], logits[:, -1, :])  # a model where the two positions differ
    with torch.no_grad():
        assert torch.equal(run.model(inputs[:8])[:, -1, :], logits[:8, 0, :])
    by_hand = (logits[:, 0, :].argmax(dim=-1) == labels).float().mean().item()
    assert run.accuracies["Test"] == pytest.approx(by_hand)  # the printed accuracy is the first position's
    assert "Reading the logits of the first position" in sections["6.3"]


@pytest.mark.parametrize("number", list(TITLES))
def test_without_weights_each_says_which_file_to_place_where(number, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pretrained, "find_local_data_file", lambda name: None)
    assert main(["--only", number, "--out-dir", str(tmp_path / "out")]) == {number: None}
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"Exercise {number}: {TITLES[number]}" and len(lines) == 3
    assert lines[2] == (f"GPT-2 weights not found, skipping exercise {number}: download model.safetensors from "
                        "huggingface.co/openai-community/gpt2 (or gpt2-medium, gpt2-large, gpt2-xl) and save it "
                        "as data/gpt2-small-124M.safetensors (or in $LLMS_DATA_DIR), or pass --tiny for a tiny "
                        "fresh GPT")
    assert not (tmp_path / "out" / "train.csv").exists()  # nothing prepared for a run that cannot start


def test_tiny_and_gpt2_weights_together_are_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "6.2", "--tiny", "--gpt2-weights", __file__])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("error: --tiny builds a fresh tiny GPT") \
        and len(err.splitlines()) == 1
