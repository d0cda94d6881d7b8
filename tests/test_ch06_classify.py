"""python -m ch06_classification.classify: a classifier that train saved labels texts as the book's
classify_review does (same padding, the last position), from arguments, a file or the interactive loop; a
checkpoint without a classification head is one error line."""

import io
import sys

import pytest
import torch

from ch04_gpt.config import GPT_CONFIG_124M
from ch06_classification import classify, train
from ch06_classification.classifier import classify_review
from ch06_classification.previous_chapters import GPTModel
from cli_checks import fails_with_one_line

TEXTS = ["You won a prize, call now", "see you at six", "free cash!!!", "ok"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is the fastest (conftest)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier of "ham" and "spam" trained for a few steps from a tiny random GPT over GPT-2's tokens."""
    folder = tmp_path_factory.mktemp("classify")
    torch.manual_seed(0)
    model = GPTModel({**GPT_CONFIG_124M, "emb_dim": 32, "n_layers": 2, "n_heads": 4, "context_length": 24,
                      "drop_rate": 0.0, "qkv_bias": True})
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "scale" in name else 0.0, 0.1)
    torch.save(model.state_dict(), folder / "lm.pth")
    rows = [("spam", "WIN cash now"), ("ham", "see you soon"), ("spam", "free prize call"), ("ham", "lunch?")] * 5
    (folder / "d.tsv").write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    out = folder / "c.pt"
    train.main(["--data", str(folder / "d.tsv"), "--init-from", str(folder / "lm.pth"), "--n-heads", "4",
                "--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--out", str(out), "--no-progress",
                "--max-length", "6"])
    return out, folder


def test_labels_are_classify_reviews(trained, capsys):
    out, _ = trained
    capsys.readouterr()
    results = classify.main(["--checkpoint", str(out), *TEXTS])
    printed = capsys.readouterr().out.splitlines()
    classifier = classify.Classifier(out)
    for text, (label, probability), line in zip(TEXTS, results, printed):
        book = classify_review(text, classifier.model, classifier.tokenizer, "cpu", max_length=6)
        assert label == {"not spam": "ham", "spam": "spam"}[book]
        assert 0.5 <= probability <= 1 and line == classify.format_result(text, label, probability)
    assert len(printed) == len(TEXTS)


def test_file_and_interactive_agree(trained, capsys, monkeypatch):
    out, folder = trained
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    capsys.readouterr()
    from_file = classify.main(["--checkpoint", str(out), "--file", str(folder / "texts.txt"), "--batch-size", "3"])
    printed = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS) + "\n:quit\nnever read\n"))
    classify.main(["--checkpoint", str(out), "--interactive"])
    assert capsys.readouterr().out == printed and len(from_file) == len(TEXTS)


def test_a_language_model_is_refused(trained, capsys):
    out, folder = trained
    fails_with_one_line(capsys, classify.main, ["--checkpoint", str(folder / "lm.pth"), "hi"],
                        "has no classification head")
    fails_with_one_line(capsys, classify.main, ["--checkpoint", str(out)], "give texts to classify")
