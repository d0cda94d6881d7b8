"""Chapter 7's train command (issue 35): --book prints what the book's functions print from the same weights, the
fast path stays near it and in fp32 writes the same greedy answers, own data in every form and prompt style,
masking, LoRA, the checkpoint's prompt style read by generate --chat, and bad input as one line."""

import contextlib
import io
import json
import re

import pytest
import torch

from ch04_gpt.model import GPTModel
from ch05_pretraining.checkpoint import read_checkpoint
from ch07_instructions import train
from cli_checks import fails_with_one_line, printed
from conftest import require_data
from fine_tuning import INSTRUCTIONS

pytestmark = pytest.mark.usefixtures("one_thread")
NUMBER = re.compile(r"\d+\.\d+")
EXAMPLES = [{"instruction": f"Repeat the word {w}.", "input": "" if i % 2 else "twice", "output": f"{w} {w}"}
            for i, w in enumerate(["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"] * 3)]


def run_cli(argv):
    return printed(train.main, argv)


def book_lines(printed):
    """The lines whose values the book prints: sizes, losses before training, every Ep line."""
    keep = ("Training set length", "Validation set length", "Test set length", "Training loss:", "Validation loss:",
            "Ep ")
    return [line for line in printed.splitlines() if line.startswith(keep)]


@pytest.fixture(scope="module")
def runs(instruction_pth, tmp_path_factory):
    require_data("instruction-data.json")
    folder = tmp_path_factory.mktemp("runs")
    common = ["--init-from", instruction_pth, "--n-heads", "4", "--max-steps", "3", "--max-test", "3", "--no-progress"]
    return {name: (run_cli([*common, *extra, "--out", folder / f"{name}.pt", "--responses", folder / f"{name}.json"]),
                   folder / f"{name}.json")
            for name, extra in (("book", ["--book"]), ("fp32", ["--no-amp"]), ("fast", []))}


def book_functions_printed(instruction_pth, tmp_path):
    """What the book's own code prints from the same weights: listing 7.6's loaders, calc_loss_loader and
    train_model_simple (via the walk-through's functions), 3 steps an epoch."""
    from ch02_text.data_files import find_data_file
    from ch05_pretraining.book_loop import train_model_simple
    from ch05_pretraining.loss import calc_loss_loader
    from ch06_classification.tail import EpochSteps
    from ch07_instructions.collate import InstructionDataset, custom_collate_fn
    from ch07_instructions.instruction_data import format_input, load_instruction_data, split_data
    from ch02_text.tokenizers import gpt2_tokenizer
    from functools import partial
    from torch.utils.data import DataLoader

    tokenizer = gpt2_tokenizer()
    train_data, test_data, val_data = split_data(load_instruction_data(find_data_file("instruction-data.json")))
    collate = partial(custom_collate_fn, device="cpu", allowed_max_length=1024)
    torch.manual_seed(123)
    train_loader = DataLoader(InstructionDataset(train_data, tokenizer), batch_size=8, collate_fn=collate,
                              shuffle=True, drop_last=True)
    val_loader = DataLoader(InstructionDataset(val_data, tokenizer), batch_size=8, collate_fn=collate)
    model = GPTModel(INSTRUCTIONS, impl="book")
    model.load_state_dict(torch.load(instruction_pth, weights_only=True))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        torch.manual_seed(123)
        with torch.no_grad():
            print("Training loss:", calc_loss_loader(train_loader, model, "cpu", num_batches=5))
            print("Validation loss:", calc_loss_loader(val_loader, model, "cpu", num_batches=5))
        torch.manual_seed(123)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.00005, weight_decay=0.1)
        train_model_simple(model, EpochSteps(train_loader, 3), val_loader, optimizer, "cpu", num_epochs=2,
                           eval_freq=5, eval_iter=5, start_context=format_input(val_data[0]), tokenizer=tokenizer)
    return out.getvalue()


def test_book_prints_the_book_functions_values(runs, instruction_pth, tmp_path):
    printed, responses = runs["book"]
    assert book_lines(printed)[:3] == ["Training set length: 935", "Validation set length: 55",
                                       "Test set length: 110"]
    theirs = book_functions_printed(instruction_pth, tmp_path)
    assert book_lines(printed)[3:] == book_lines(theirs)
    answers = json.loads(responses.read_text())
    assert len(answers) == 3 and all(isinstance(a["model_response"], str) for a in answers)
    assert answers[0]["instruction"] == "Rewrite the sentence using a simile."  # the first test entry


def test_fast_path_stays_near_the_book_and_fp32_writes_the_same_answers(runs):
    book, fp32, fast = (runs[k][0] for k in ("book", "fp32", "fast"))
    for other in (fp32, fast):
        ours, theirs = book_lines(other), book_lines(book)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a.split(":")[0] == b.split(":")[0]
            for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
                assert abs(float(x) - float(y)) <= 0.05, (a, b)
    book_answers, fp32_answers = (json.loads(runs[k][1].read_text()) for k in ("book", "fp32"))
    assert [a["model_response"] for a in fp32_answers] == [a["model_response"] for a in book_answers]


def test_batched_answers_equal_the_book_one_by_one(instruction_pth):
    """fp32: the KV-cached batches (left-padded, each row stopping at its own end) give each prompt the book's
    greedy answer."""
    from ch07_instructions.answers import answer_all
    from ch07_instructions.prompt_styles import PromptStyle
    from ch02_text.tokenizers import gpt2_tokenizer

    model = GPTModel(INSTRUCTIONS)
    state = torch.load(instruction_pth, weights_only=True)
    from ch03_attention.fast_attention import book_to_fast_state_dict
    model.load_state_dict(book_to_fast_state_dict(state))
    tok, style = gpt2_tokenizer(), PromptStyle("alpaca")
    book = answer_all([dict(e) for e in EXAMPLES[:6]], model, tok, style, torch.device("cpu"), 40, book=True,
                      eos_id=50256)
    fast = answer_all([dict(e) for e in EXAMPLES[:6]], model, tok, style, torch.device("cpu"), 40, eos_id=50256)
    assert [e["model_response"] for e in fast] == [e["model_response"] for e in book]


def write(tmp_path, kind):
    if kind == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(EXAMPLES))
    elif kind == "jsonl":
        path = tmp_path / "d.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    else:
        path = tmp_path / "m.jsonl"
        path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": e["instruction"]},
                                                         {"role": "assistant", "content": e["output"]}]}) + "\n"
                                for e in EXAMPLES))
    return path


@pytest.mark.parametrize("kind, style", [("json", "alpaca"), ("jsonl", "phi3"), ("messages", "alpaca")])
def test_own_data_in_every_form_and_style(kind, style, instruction_pth, tmp_path):
    out = tmp_path / "c.pt"
    printed = run_cli(["--data", write(tmp_path, kind), "--init-from", instruction_pth, "--n-heads", "4", "--prompt-style",
                       style, "--batch-size", "4", "--epochs", "1", "--max-new-tokens", "8", "--mask-prompt",
                       "--val-fraction", "0.25", "--test-fraction", "0.125", "--out", out, "--no-progress"])
    assert "Training set length: 15" in printed and "Test set length: 3" in printed
    ckpt = read_checkpoint(out)
    assert ckpt["chat"]["prompt_style"] == style and ckpt["run_options"]["mask_prompt"] is True
    answers = json.loads((tmp_path / "instruction-data-with-response.json").read_text())
    assert len(answers) == 3 and all(isinstance(a["model_response"], str) for a in answers)


def test_lora_trains_adapters_and_generate_chats_in_the_prompt_style(instruction_pth, tmp_path, capsys, monkeypatch):
    out = tmp_path / "lora.pt"
    run_cli(["--data", write(tmp_path, "json"), "--init-from", instruction_pth, "--n-heads", "4", "--batch-size", "4",
             "--epochs", "1", "--max-new-tokens", "4", "--lora-rank", "4", "--out", out, "--no-progress"])
    ckpt = read_checkpoint(out)
    assert all(".adapters." in k for k in ckpt["model"]) and ckpt["lora"]["base"]["path"] == str(instruction_pth)
    from ch05_pretraining.generate import main as generate
    monkeypatch.setattr("sys.stdin", io.StringIO("Repeat the word red.\n"))
    capsys.readouterr()
    generate(["--checkpoint", str(out), "--interactive", "--chat", "--max-new-tokens", "5"])
    shown = capsys.readouterr().out
    assert shown.strip()  # a reply in the alpaca style, without a template error


@pytest.mark.parametrize("content, extra, match", [
    ("{not json", [], "neither JSON nor JSON lines: line 1"),
    (json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}]), [], "example 1 has no output"),
    (json.dumps([{"messages": []}]), [], "example 0 has empty messages"),
    (json.dumps([{"messages": [{"role": "robot", "content": "x"}]}]), [], "not a role"),
    (json.dumps(EXAMPLES), ["--prompt-style", "chat-template"], "has no chat template"),
    (json.dumps(EXAMPLES), ["--book"], "--book runs the book's data and settings; --data changes them"),
])
def test_bad_input_is_one_line_and_writes_nothing(content, extra, match, instruction_pth, tmp_path, capsys):
    data = tmp_path / "d.json"
    data.write_text(content)
    out = tmp_path / "c.pt"
    fails_with_one_line(capsys, train.main, ["--data", str(data), "--init-from", str(instruction_pth), "--n-heads", "4",
                                             "--out", str(out), *extra], match)
    assert not out.exists() and not (tmp_path / "instruction-data-with-response.json").exists()


def test_the_exercises_run_the_command_with_their_change(tmp_path, capsys, monkeypatch):
    require_data("instruction-data.json")
    from ch07_instructions import exercises

    monkeypatch.setattr(exercises, "find_local_data_file", lambda name: None)  # no alpaca_data.json here
    results = exercises.main(["--tiny", "--only", "7.2", "--epochs", "1", "--max-steps", "1", "--max-test", "1",
                              "--out-dir", str(tmp_path)])
    assert results == {"7.2": 0}
    assert read_checkpoint(tmp_path / "exercise-7.2" / "model.pt")["run_options"]["mask_prompt"] is True
    assert exercises.main(["--tiny", "--only", "7.3", "--out-dir", str(tmp_path)]) == {"7.3": None}
    assert "skipping exercise 7.3: alpaca_data.json not found" in capsys.readouterr().out
