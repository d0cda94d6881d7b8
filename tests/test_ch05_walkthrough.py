"""`python -m ch05_pretraining --epochs 1` prints the book's chapter-5 values (full GPT-124M, CPU).

The book's full 10-epoch output (every training line and sample) is reproduced by
`python -m ch05_pretraining`; it takes ~10 minutes, so the test runs one epoch, which
covers every value the book prints before and after training that does not depend on
the remaining nine epochs.
"""

import contextlib
import io

import pytest

from ch05_pretraining.__main__ import main
from conftest import require_data


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    require_data("the-verdict.txt", "gpt2/vocab.bpe", "gpt2/encoder.json")
    out_dir = tmp_path_factory.mktemp("ch05")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ns = main(["--epochs", "1", "--device", "cpu", "--out-dir", str(out_dir / "ckpt"),
                   "--image-dir", str(out_dir)])
    return out_dir, ns, buf.getvalue()


def test_book_values(chapter):
    out_dir, ns, out = chapter
    assert "Output text:\n Every effort moves you rentingetic wasnم refres RexMeCHicular stren\n" in out
    assert "Targets batch 1:  effort moves you" in out and "Outputs batch 1:  Armed heNetflix" in out
    assert f"{ns['neg_avg_log_probas'].item():.4f}" == "10.7940"
    assert f"{ns['loss'].item():.4f}" == "10.7940"
    assert f"{ns['perplexity'].item():.4f}".startswith("48725.8")  # later digits vary by CPU
    assert ns["train_tokens"] == 4608 and ns["val_tokens"] == 512
    assert str(ns["train_loss"]).startswith("10.98758") and str(ns["val_loss"]).startswith("10.98110")
    assert ns["token_ids"].shape[1] == 4 + 15
    counts = ns["sampled_counts"].tolist()
    assert counts[0] == 73 and counts[3] == 582 and counts[7] == 343
    assert ns["top_logits"].tolist() == pytest.approx([6.75, 6.28, 4.51]) and ns["top_pos"].tolist() == [3, 7, 0]
    assert (out_dir / "ch05_loss.png").is_file() and (out_dir / "ch05_temperature.png").is_file()
    assert (out_dir / "ckpt" / "model_and_optimizer.pth").is_file()


def test_book_training_lines(chapter):
    _, ns, out = chapter
    assert "Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933" in out
    assert "Ep 1 (Step 000005): Train loss 8.111, Val loss 8.339" in out
    assert [f"{x:.3f}" for x in ns["train_losses"]] == ["9.781", "8.111"]
    assert [f"{x:.3f}" for x in ns["val_losses"]] == ["9.933", "8.339"]
    assert ns["tokens_seen"] == [512, 3072]


def test_a_shorter_run_writes_its_figures_beside_its_checkpoints(monkeypatch, tmp_path):
    """`--epochs 1` must not replace the book's figures in image/ with a 2-point plot."""
    import ch05_pretraining.__main__ as chapter

    seen = {}
    monkeypatch.setattr(chapter, "run_walkthrough", lambda module, args: seen.update(vars(args)))
    chapter.main(["--epochs", "1", "--out-dir", str(tmp_path)])
    assert seen["image_dir"] == str(tmp_path)
    chapter.main([])  # the book's run keeps image/
    assert seen["image_dir"] is None


def test_readme_names_only_files_and_objects_that_exist():
    from conftest import check_readme

    check_readme("ch05_pretraining")
