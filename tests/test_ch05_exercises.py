"""`python -m ch05_pretraining.exercises`: known answers, determinism, continued pretraining on a tiny
checkpoint, and one line for each missing GPT-2 weights file."""

import pytest
import torch

from ch05_pretraining.checkpoint import save_checkpoint
from ch05_pretraining.exercises import main
from ch05_pretraining.previous_chapters import GPTModel
from conftest import TINY


@pytest.fixture(scope="module")
def tiny_chapter_ckpt(tmp_path_factory):
    """A stand-in for checkpoints/model_and_optimizer.pth: GPT-2's vocabulary, tiny sizes."""
    torch.manual_seed(0)
    model = GPTModel({**TINY, "vocab_size": 50257, "context_length": 32, "n_layers": 1}, impl="book")
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    return save_checkpoint(tmp_path_factory.mktemp("ch05") / "model_and_optimizer.pth", model, opt)


def test_exercise_5_1_pizza_counts(capsys):
    assert main(["--only", "5.1"])["5.1"] == {1: 0, 0.1: 0, 5: 32}
    out = capsys.readouterr().out
    assert "Temperature = 5:\n165 x closer" in out
    assert "exact probability of 'pizza' at temperature 5: 0.0430" in out  # the published solution's value


def test_exercises_5_2_to_5_4_on_the_chapter_model(tiny_chapter_ckpt, capsys):
    results = {n: main(["--only", n, "--checkpoint", str(tiny_chapter_ckpt)])[n] for n in ("5.2", "5.3", "5.4")}
    assert all(t.startswith("Every effort moves you") for t in results["5.2"].values())
    greedy, seeded = results["5.3"]
    assert greedy[0] == greedy[1] and seeded[0] == seeded[1]
    train_losses, val_losses = results["5.4"]
    assert val_losses[-1] < val_losses[0]  # training went on from the checkpoint
    assert "not found" not in capsys.readouterr().out


def test_exercises_5_5_and_5_6_without_weights_say_where_to_put_them(monkeypatch, capsys):
    import ch05_pretraining.exercises as exercises

    monkeypatch.setattr(exercises, "find_local_data_file", lambda name: None)
    results = main(["--only", "5.5"])
    results.update(main(["--only", "5.6"]))
    assert results == {"5.5": None, "5.6": {}}
    lines = [line for line in capsys.readouterr().out.splitlines() if "weights not found" in line]
    assert len(lines) == 4 and "data/gpt2-xl-1558M.safetensors" in lines[-1]
