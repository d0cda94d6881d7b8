"""`python -m ch06_classification --tiny --epochs 1 --max-steps 1` runs the whole chapter in the book's order.

The book's model is GPT-2 small, whose five epochs take many minutes on a CPU, and whose weights are not here:
the test runs every step on the tiny fresh GPT of `--tiny` and checks what does not depend on the model (the
data, the batches, the printed lines, the files) exactly, and what does against the model it ran.
"""

import contextlib
import io
import re

import pytest
import torch

from ch06_classification.__main__ import main
from conftest import require_data

QUICK = ["--epochs", "1", "--max-steps", "1", "--device", "cpu"]


def run_chapter(argv):
    buf = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and spares the shared cores
    try:
        with contextlib.redirect_stdout(buf):
            ns = main(argv)
    finally:
        torch.set_num_threads(threads)
    return ns, buf.getvalue()


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    require_data("SMSSpamCollection", "gpt2/vocab.bpe", "gpt2/encoder.json")
    out_dir = tmp_path_factory.mktemp("ch06")
    ns, out = run_chapter(["--tiny", *QUICK, "--out-dir", str(out_dir / "ckpt"), "--image-dir", str(out_dir)])
    return out_dir, ns, out


def test_the_data_and_batches_are_the_books(chapter):
    out_dir, ns, out = chapter
    assert "\n6.2 Preparing the dataset\n-------------------------\n" in out
    assert "\nListing 6.4: Setting up a Pytorch Dataset class (SpamDataset in ch06_classification/dataset.py)\n" \
        in out
    assert "Label\nham     4825\nspam     747\n" in out and "Label\nham     747\nspam    747\n" in out
    assert "1045 training, 149 validation and 300 test rows written to" in out
    assert "\n[50256]\n" in out and "\n120\n" in out
    assert "Train loader:\nInput batch dimensions: torch.Size([8, 120])\nLabel batch dimensions torch.Size([8])\n" in out
    assert "130 training batches\n19 validation batches\n38 test batches\n" in out
    assert [len(ns[name]) for name in ("train_rows", "validation_rows", "test_rows")] == [1045, 149, 300]
    for name in ("train.csv", "validation.csv", "test.csv"):
        assert (out_dir / "ckpt" / name).is_file()


def test_the_model_steps_print_the_books_lines(chapter):
    _, ns, out = chapter
    assert "GPT-2 weights not found" not in out  # --tiny reads no weights
    assert "Starting from a GPT of 2 layers of width 32 freshly initialised under torch.manual_seed(123)" in out
    assert "Inputs: tensor([[5211,  345,  423,  640]])\nInputs dimensions: torch.Size([1, 4])\n" in out
    assert "Outputs dimensions: torch.Size([1, 4, 2])" in out
    assert f"Last output token: {ns['outputs'][:, -1, :]}\n" in out
    assert out.count("Class label: ") == 2
    assert re.search(r"\nTraining accuracy: \d+\.\d\d%\nValidation accuracy: \d+\.\d\d%\nTest accuracy: \d+\.\d\d%\n"
                     r"Listing 6\.9", out)
    assert re.search(r"\nTraining loss: \d\.\d{3}\nValidation loss: \d\.\d{3}\nTest loss: \d\.\d{3}\n", out)
    trainable = {n.split(".")[0] for n, p in ns["model"].named_parameters() if p.requires_grad}
    assert trainable == {"trf_blocks", "final_norm", "out_head"}


def test_one_training_step_and_its_evaluations(chapter):
    out_dir, ns, out = chapter
    assert re.search(r"\nEp 1 \(Step 000000\): Train loss \d\.\d{3}, Val loss \d\.\d{3}\n"
                     r"Training accuracy: \d+\.\d\d% \| Validation accuracy: \d+\.\d\d%\n"
                     r"Training completed in \d+\.\d\d minutes\.\n", out)
    assert ns["examples_seen"] == 8 and len(ns["train_losses"]) == 1 and len(ns["train_accs"]) == 1
    assert (out_dir / "ch06_loss.png").is_file() and (out_dir / "ch06_accuracy.png").is_file()
    final = re.findall(r"Test accuracy: (\d+\.\d\d)%", out)[-1]
    assert final == f"{ns['test_accuracy'] * 100:.2f}"  # the last accuracies are over the whole loaders


def test_the_classifier_answers_and_round_trips(chapter):
    out_dir, ns, out = chapter
    lines = out.rstrip("\n").splitlines()
    assert lines[-1] == "<All keys matched successfully>"
    assert lines[-3] in ("spam", "not spam") and lines[-2] in ("spam", "not spam")
    saved = torch.load(out_dir / "ckpt" / "review_classifier.pth", weights_only=True)
    assert saved["out_head.weight"].shape == (2, 32)
    assert all(torch.equal(saved[k], v) for k, v in ns["model"].state_dict().items())


def test_without_gpt2_weights_one_line_says_what_to_place_where(monkeypatch, tmp_path):
    """The full run without weights: the line, then every step from a fresh model (here made tiny)."""
    require_data("SMSSpamCollection", "gpt2/vocab.bpe", "gpt2/encoder.json")
    from ch06_classification import pretrained

    real = pretrained.starting_model
    monkeypatch.setattr(pretrained, "find_local_data_file", lambda name: None)
    monkeypatch.setattr(pretrained, "starting_model", lambda config, *args, **kwargs: real(
        {**config, **pretrained.TINY_SIZES}, *args, **kwargs))
    ns, out = run_chapter([*QUICK, "--out-dir", str(tmp_path)])
    said = [line for line in out.splitlines() if "GPT-2 weights" in line]
    assert said == [("GPT-2 weights not found: download model.safetensors from huggingface.co/openai-community/gpt2 "
                     "(or gpt2-medium, gpt2-large, gpt2-xl) and save it as data/gpt2-small-124M.safetensors "
                     "(or in $LLMS_DATA_DIR)")]
    assert "not the book's" in out and ns["start"].source == "fresh"
    assert (tmp_path / "ch06_accuracy.png").is_file()  # a shorter run's figures beside its outputs, not in image/


def test_a_shorter_run_writes_its_figures_beside_its_outputs(monkeypatch, tmp_path):
    import ch06_classification.__main__ as chapter

    seen = {}
    monkeypatch.setattr(chapter, "run_walkthrough", lambda module, args: seen.update(vars(args)))
    for quick in (["--epochs", "1"], ["--max-steps", "3"], ["--tiny"]):
        chapter.main([*quick, "--out-dir", str(tmp_path)])
        assert seen["image_dir"] == str(tmp_path)
    chapter.main([])  # the book's run keeps image/
    assert seen["image_dir"] is None and seen["epochs"] == 5 and seen["max_steps"] is None


@pytest.mark.parametrize("argv, said", [
    (["--gpt2-weights", "no/such/file.safetensors"], "--gpt2-weights 'no/such/file.safetensors' does not exist"),
    (["--tiny", "--gpt2-weights", __file__], "--tiny builds a fresh tiny GPT and reads no weights"),
    (["--max-steps", "0"], "argument --max-steps: must be a positive integer, got '0'"),
])
def test_bad_options_are_one_error_line(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("error: ") and said in err and len(err.splitlines()) == 1


def test_readme_names_only_files_and_objects_that_exist():
    from conftest import check_readme

    check_readme("ch06_classification")
