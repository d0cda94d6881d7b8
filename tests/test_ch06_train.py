"""python -m ch06_classification.train on tiny models: --book prints what the book's own functions print from the
same weights, the fast path (cached frozen blocks) stays within a loss of 0.05 and 2.5 accuracy points of it and
computes the whole model's logits, --data reads TSV, CSV and JSON lines, the checkpoint holds what classify
needs, and every bad input is one error line before any work, nothing written."""

import contextlib
import io
import re

import pytest
import torch
from torch.utils.data import DataLoader

from ch05_pretraining.checkpoint import read_checkpoint
from ch06_classification import train
from ch06_classification.labelled_data import balance, class_names
from ch06_classification.tail import first_trained, hidden_before, make_classifier, tail_logits
from cli_checks import fails_with_one_line
from conftest import require_data
from fine_tuning import run_cli, small_model, write_data

NUMBER = re.compile(r"-?\d+\.\d+")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is the fastest (conftest)


@pytest.fixture(scope="module")
def small_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.pth"
    torch.save(small_model().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def book_run(small_pth, tmp_path_factory):
    require_data("SMSSpamCollection")
    out = tmp_path_factory.mktemp("book") / "c.pt"
    return run_cli(["--book", "--init-from", str(small_pth), "--n-heads", "4", "--max-steps", "2", "--epochs", "2",
                    "--out", str(out), "--no-progress"]), out


def book_functions_lines(small_pth, tmp_path):
    """What the walk-through's book functions print from the same weights and data."""
    from ch02_text.data_files import find_data_file
    from ch06_classification.classifier import (
        calc_accuracy_loader, calc_loss_loader, to_classifier, train_classifier_simple)
    from ch06_classification.dataset import SpamDataset
    from ch06_classification.pretrained import chapter5_model
    from ch06_classification.previous_chapters import gpt2_tokenizer
    from ch06_classification.spam_data import (
        create_balanced_dataset, encode_labels, random_split, read_sms_spam, write_csv)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rows = encode_labels(create_balanced_dataset(read_sms_spam(find_data_file("SMSSpamCollection"))))
        splits = random_split(rows, 0.7, 0.1)
        tok = gpt2_tokenizer()
        train_ds = SpamDataset(write_csv(splits[0], tmp_path / "train.csv"), tok)
        others = [SpamDataset(write_csv(rows, tmp_path / f"{name}.csv"), tok, max_length=train_ds.max_length)
                  for name, rows in (("validation", splits[1]), ("test", splits[2]))]
        torch.manual_seed(123)
        loaders = [DataLoader(train_ds, batch_size=8, shuffle=True, drop_last=True),
                   *(DataLoader(d, batch_size=8) for d in others)]
        model = chapter5_model(small_pth, n_heads=4)
        torch.manual_seed(123)
        model = to_classifier(model, 2)
        torch.manual_seed(123)
        for name, loader in zip(("Training", "Validation", "Test"), loaders):
            print(f"{name} accuracy: {calc_accuracy_loader(loader, model, 'cpu', num_batches=10)*100:.2f}%")
        with torch.no_grad():
            for name, loader in zip(("Training", "Validation", "Test"), loaders):
                print(f"{name} loss: {calc_loss_loader(loader, model, 'cpu', num_batches=5):.3f}")
        torch.manual_seed(123)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
        train_classifier_simple(model, loaders[0], loaders[1], optimizer, "cpu", num_epochs=2, eval_freq=50,
                                eval_iter=5, max_steps=2)
        for name, loader in zip(("Training", "Validation", "Test"), loaders):
            print(f"{name} accuracy: {calc_accuracy_loader(loader, model, 'cpu')*100:.2f}%")
    return out.getvalue().splitlines(), train_ds.max_length


def test_book_prints_the_book_functions_values(book_run, small_pth, tmp_path):
    printed, out = book_run
    expected, max_length = book_functions_lines(small_pth, tmp_path)
    lines = printed.splitlines()
    assert "ham     747" in lines and "1045 training, 149 validation and 300 test texts" in lines
    assert f"max length: {max_length} tokens" in lines
    at = 0
    for line in expected:  # every line of the book's, in the book's order
        assert line in lines[at:], (line, printed)
        at = lines.index(line, at) + 1
    assert sum(line.startswith("Ep ") for line in lines) == 1  # step 0 only: eval_freq 50
    ckpt = read_checkpoint(out)
    assert ckpt["classifier"] == {"classes": ["ham", "spam"], "token": "last", "max_length": max_length,
                                  "pad_id": 50256, "trainable": "last-block"}
    assert ckpt["tokenizer"] == {"format": "gpt2"} and ckpt["trainer_state"]["global_step"] == 3


def numbers(text):
    """The values of the lines both runs print: losses and accuracies, in order."""
    keep = [line for line in text.splitlines() if re.match(r"(Training|Validation|Test) (accuracy|loss)|Ep ", line)]
    return [float(n) for line in keep for n in NUMBER.findall(line)], keep


def test_fast_path_stays_near_the_book(book_run, small_pth, tmp_path):
    fast = run_cli(["--init-from", str(small_pth), "--n-heads", "4", "--max-steps", "2", "--epochs", "2",
                    "--out", str(tmp_path / "f.pt"), "--no-progress"])
    (book, book_lines), (got, fast_lines) = numbers(book_run[0]), numbers(fast)
    assert len(book_lines) == len(fast_lines) == 12 and len(book) == len(got)
    for line_b, line_f in zip(book_lines, fast_lines):
        tolerance = 2.5 if "accuracy" in line_b else 0.05
        for b, f in zip(NUMBER.findall(line_b), NUMBER.findall(line_f)):
            assert abs(float(b) - float(f)) <= tolerance + 1e-9, (line_b, line_f)
    assert "bf16 autocast" in fast or "fp32" in fast


@pytest.mark.parametrize("trainable", ["head", "last-block", "last-2-blocks", "all"])
@pytest.mark.parametrize("token", ["last", "last-real", "mean"])
def test_cached_tail_gives_the_whole_models_logits(trainable, token):
    model = make_classifier(small_model(1).eval(), 3, trainable).eval()
    ids = torch.randint(0, 50257, (4, 9), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([9, 1, 5, 3])
    first = first_trained(model, trainable)
    with torch.no_grad():
        got = tail_logits(model, hidden_before(model, ids, first), lengths, token, first)
        every = model(ids)  # (batch, tokens, classes): the whole model, each position
    real = torch.arange(9)[None, :] < lengths[:, None]
    expected = {"last": every[:, -1], "last-real": every[torch.arange(4), lengths - 1],
                "mean": (every * real[..., None]).sum(1) / lengths[:, None]}[token]  # the head is linear
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    trained = {name.split(".")[0] + name.split(".")[1] * name.startswith("trf")
               for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"head": {"out_head"}, "last-block": {"out_head", "final_norm", "trf_blocks2"},
                       "last-2-blocks": {"out_head", "final_norm", "trf_blocks1", "trf_blocks2"}}.get(
        trainable, trained)
    assert trainable != "all" or all(p.requires_grad for p in model.parameters())


def test_balance_is_the_books_draw():
    from ch06_classification.spam_data import create_balanced_dataset

    rows = [("ham", f"h{i}") for i in range(30)] + [("spam", f"s{i}") for i in range(7)]
    assert balance(rows, class_names(rows)) == create_balanced_dataset(rows)


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save(small_model(2, n_layers=2, context_length=24).state_dict(), path)
    return path


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl"])
def test_data_files_of_every_kind(kind, tiny_pth, tmp_path):
    out = tmp_path / "c.pt"
    printed = run_cli(["--data", str(write_data(tmp_path, kind)), "--init-from", str(tiny_pth), "--n-heads", "4",
                       "--epochs", "1", "--batch-size", "4", "--eval-freq", "2", "--token", "mean", "--trainable",
                       "head", "--max-length", "3", "--out", str(out), "--no-progress"])
    assert "22 training, 3 validation and 7 test texts" in printed
    assert re.search(r"\d+ texts longer than 3 tokens were cut to 3", printed)
    assert "confusion matrix" in printed and "test accuracy:" in printed
    info = read_checkpoint(out)["classifier"]
    assert info == {"classes": ["mid", "neg", "pos"], "token": "mean", "max_length": 3, "pad_id": 50256,
                    "trainable": "head"}


def test_hugging_face_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=50257, n_positions=24, n_embd=32, n_layer=2, n_head=4)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config)
    hf.save_pretrained(tmp_path / "gpt2-tiny")
    out = tmp_path / "c.pt"
    printed = run_cli(["--data", str(write_data(tmp_path, "tsv")), "--init-from", str(tmp_path / "gpt2-tiny"),
                       "--epochs", "1", "--batch-size", "4", "--token", "last-real", "--out", str(out),
                       "--no-progress", "--classes", "pos,neg,mid"])
    assert "Ep 1 (Step 000000)" in printed
    assert read_checkpoint(out)["classifier"]["classes"] == ["pos", "neg", "mid"]


@pytest.mark.parametrize("content, extra, match", [
    (None, [], "does not exist"),
    ("", [], "holds no labelled texts"),
    ("a\tone\na\ttwo\n", [], "one class only"),
    ("a\tone\nb\ttwo\nc\tthree\tfour\n", [], "line 3"),
    ("a\tone\nb\ttwo\nc\tthree\n", ["--classes", "a,b"], "'c', which --classes a,b lacks"),
    ("a\tone\nb\ttwo\n" * 8, ["--max-length", "25"], "exceeds the model's context of 24"),
])
def test_bad_data_is_one_line(content, extra, match, tiny_pth, tmp_path, capsys):
    data = tmp_path / "d.tsv"
    if content is not None:
        data.write_text(content, encoding="utf-8")
    out = tmp_path / "c.pt"
    fails_with_one_line(capsys, train.main, ["--data", str(data), "--init-from", str(tiny_pth), "--n-heads", "4",
                                             "--out", str(out), *extra], match)
    assert not out.exists()


def test_bad_json_line_names_it(tiny_pth, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x", "label": "a"}\n{"text": "y", "label": "b"}\nnot json\n', encoding="utf-8")
    fails_with_one_line(capsys, train.main, ["--data", str(data), "--init-from", str(tiny_pth)], "line 3")


@pytest.mark.parametrize("option", [["--trainable", "all"], ["--token", "mean"], ["--batch-size", "4"],
                                    ["--data", "x.tsv"], ["--lr", "1e-4"]])
def test_book_refuses_what_contradicts_it(option, tmp_path, capsys):
    out = tmp_path / "c.pt"
    fails_with_one_line(capsys, train.main, ["--book", "--init-from", "x.pth", "--out", str(out), *option], "--book")
    assert not out.exists()


def test_classifier_is_refused_by_generate(book_run, capsys):
    from ch05_pretraining import generate

    fails_with_one_line(capsys, generate.main, ["--checkpoint", str(book_run[1]), "--prompt", "Hi"],
                        "is a text classifier (ham, spam)")
