"""`python -m ch07_instructions --tiny --epochs 1 --max-steps 1 --max-test 2` runs the whole chapter in the book's
order.

The book's model is GPT-2 medium, whose two epochs take hours on a CPU, and whose weights are not here: the test
runs every step on the tiny fresh GPT of `--tiny` and checks what does not depend on the model (the data, the
prompts, the batches, the printed lines, the files) exactly, and what does against the model it ran. Nothing
listens at the Ollama URL it is given, so section 7.8 says so in one line and is skipped.
"""

import contextlib
import io
import json
import re
import socket

import pytest
import torch
from conftest import require_data

from ch07_instructions.__main__ import main

QUICK = ["--epochs", "1", "--max-steps", "1", "--device", "cpu"]


def closed_port_url() -> str:
    with socket.socket() as s:  # a port the system just handed out and took back: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/chat"


def run_chapter(argv):
    buf = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and spares the shared cores
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):  # stderr: tqdm's bars
            ns = main(argv)
    finally:
        torch.set_num_threads(threads)
    return ns, buf.getvalue()


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    require_data("instruction-data.json", "gpt2/vocab.bpe", "gpt2/encoder.json")
    out_dir = tmp_path_factory.mktemp("ch07")
    url = closed_port_url()
    ns, out = run_chapter(["--tiny", *QUICK, "--max-test", "2", "--out-dir", str(out_dir / "ckpt"),
                           "--image-dir", str(out_dir), "--ollama-url", url])
    return out_dir, ns, out, url


def test_the_data_and_prompts_are_the_books(chapter):
    out = chapter[2]
    assert "\n7.2 Preparing a dataset for supervised instruction fine-tuning\n" in out
    assert "\nListing 7.2: Implementing the prompt formatting function (format_input in instruction_data.py)\n" in out
    assert "Number of entries: 1100\nExample entry:\n {'instruction': 'Identify the correct spelling" in out
    assert "\nAnother example entry:\n {'instruction': \"What is an antonym of 'complicated'?\", 'input': ''," in out
    assert ("### Input:\nOcassion\n\n### Response:\nThe correct spelling is 'Occasion.'\n"
            "Below is an instruction that describes a task.") in out
    assert "Training set length: 935\nValidation set length: 55\nTest set length: 110\n" in out


def test_the_batches_and_the_minus_100_targets_are_the_books(chapter):
    _, ns, out, _ = chapter
    assert ("tensor([[    1,     2,     3,     4, 50256],\n        [    6, 50256,  -100,  -100,  -100],\n"
            "        [    8,     9, 50256,  -100,  -100]])\n") in out
    assert "tensor(1.1269)\ntensor(0.7936)\ntensor(1.1269)\nloss_1 == loss_3: tensor(True)\n" in out
    shapes = re.findall(r"^torch\.Size\(\[8, (\d+)\]\) torch\.Size\(\[8, \1\]\)$", out, flags=re.MULTILINE)
    assert len(shapes) == 116 and shapes[:3] == ["61", "76", "73"] and shapes[-1] == "69"
    assert "Train loader:\ntorch.Size([8, 61]) torch.Size([8, 61])\n" in out
    assert ns["targets"][0].tolist()[59:] == [50256] + [-100] * 9  # the book's last batch, first entry


def test_the_model_steps_print_the_books_lines(chapter):
    out_dir, ns, out, _ = chapter
    assert "GPT-2 medium weights not found" not in out  # --tiny reads no weights
    assert "Starting from a GPT of 2 layers of width 32 freshly initialised under torch.manual_seed(123)" in out
    assert ("### Instruction:\nConvert the active sentence to passive: 'The chef cooks the meal every day.'\n"
            f"{ns['extract_response'](ns['generated_text'], ns['input_text'])}\n") in out
    assert re.search(r"\nTraining loss: \d+\.\d+\nValidation loss: \d+\.\d+\n", out)
    assert re.findall(r"^Ep \d \(Step \d+\).*$", out, flags=re.MULTILINE) == [
        f"Ep 1 (Step 000000): Train loss {ns['train_losses'][0]:.3f}, Val loss {ns['val_losses'][0]:.3f}"]
    assert re.search(r"\nTraining completed in \d+\.\d\d minutes\.\n", out)
    assert (out_dir / "ch07_loss.png").is_file()


def test_the_answers_are_printed_written_and_the_model_saved(chapter):
    out_dir, ns, out, _ = chapter
    answered = json.loads((out_dir / "ckpt" / "instruction-data-with-response.json").read_text())
    assert [a["instruction"] for a in answered] == [e["instruction"] for e in ns["test_data"][:2]]
    assert all(set(a) == {"instruction", "input", "output", "model_response"} for a in answered)
    assert out.count("\nCorrect response:\n>> ") == 2  # --max-test 2: the book's first three, cut to two
    assert f"\nModel response:\n>> {answered[0]['model_response']}\n-------------------------------------\n" in out
    assert f"\n{ns['test_data'][0]}\n" in out
    saved = torch.load(out_dir / "ckpt" / "fresh-gpt-2x32-sft.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in ns["model"].state_dict().items())
    assert "Model saved as " + str(out_dir / "ckpt" / "fresh-gpt-2x32-sft.pth") in out


def test_without_ollama_the_scoring_is_skipped_in_one_line(chapter):
    _, ns, out, url = chapter
    said = [line for line in out.splitlines() if "Ollama" in line and not line.startswith("Listing")]
    assert len(said) == 1 and said[0].startswith(f"No Ollama server answers at {url}: scoring skipped")
    assert "Score:" not in out and "Average score" not in out and not ns["ollama_running"]
    assert out.rstrip().endswith("7.9 Conclusions\n---------------")


def test_a_shorter_run_writes_its_figure_beside_its_outputs(monkeypatch, tmp_path):
    import ch07_instructions.__main__ as chapter

    seen = {}
    monkeypatch.setattr(chapter, "run_walkthrough", lambda module, args: seen.update(vars(args)))
    for quick in (["--epochs", "1"], ["--max-steps", "3"], ["--tiny"]):
        chapter.main([*quick, "--out-dir", str(tmp_path)])
        assert seen["image_dir"] == str(tmp_path)
    chapter.main([])  # the book's run keeps image/
    assert seen["image_dir"] is None and seen["epochs"] == 2 and seen["max_steps"] is None
    assert seen["max_test"] is None and seen["ollama_url"] == "http://localhost:11434/api/chat"


@pytest.mark.parametrize("argv, said", [
    (["--gpt2-weights", "no/such/file.safetensors"], "--gpt2-weights 'no/such/file.safetensors' does not exist"),
    (["--tiny", "--gpt2-weights", __file__], "--tiny builds a fresh tiny GPT and reads no weights"),
    (["--max-test", "0"], "argument --max-test: must be a positive integer, got '0'"),
    (["--ollama-url", "localhost:11434"], "--ollama-url 'localhost:11434' is not an http:// or https:// URL"),
])
def test_bad_options_are_one_error_line(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("error: ") and said in err and len(err.splitlines()) == 1


def test_readme_names_only_files_and_objects_that_exist():
    from conftest import check_readme

    check_readme("ch07_instructions")
