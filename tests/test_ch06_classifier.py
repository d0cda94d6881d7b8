"""Chapter 6's classifier on a tiny GPT: the frozen parts, the last-position loss and accuracy against their
definitions, the book's training loop (its printed lines, a falling loss), classify_review, and the model the
chapter starts from when GPT-2's weights are missing."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ch02_text.errors import UserInputError
from ch06_classification.classifier import (
    calc_accuracy_loader, calc_loss_batch, calc_loss_loader, classify_review, evaluate_model, plot_values,
    to_classifier, train_classifier_simple,
)
from ch06_classification.pretrained import CheckpointError, check_fits, starting_model
from ch06_classification.previous_chapters import GPTModel
from conftest import TINY


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is the fastest (conftest)


def tiny_classifier(seed=123, **sizes):
    torch.manual_seed(seed)
    return to_classifier(GPTModel({**TINY, **sizes}), num_classes=2)


def toy_data(n=32, length=6, seed=0):
    """Texts of random tokens whose label says whether the last token is in the vocabulary's upper half."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, TINY["vocab_size"], (n, length), generator=gen)
    return x, (x[:, -1] >= TINY["vocab_size"] // 2).long()


def test_only_the_last_block_the_final_norm_and_the_new_head_train():
    model = tiny_classifier()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    last = f"trf_blocks.{TINY['n_layers'] - 1}."
    expected = {name for name, _ in model.named_parameters()
                if name.startswith((last, "final_norm.", "out_head."))}
    assert trainable == expected and any(n.startswith(last) for n in trainable)
    assert model.out_head.weight.shape == (2, TINY["emb_dim"]) and model.out_head.bias is not None
    assert not model.tok_emb.weight.requires_grad and not model.trf_blocks[0].att.out_proj.weight.requires_grad


def test_the_new_head_is_drawn_as_the_book_draws_it():
    """torch.manual_seed(123) then nn.Linear(emb_dim, 2): freezing draws no random numbers in between."""
    model = GPTModel(TINY)
    torch.manual_seed(123)
    to_classifier(model)
    torch.manual_seed(123)
    head = torch.nn.Linear(TINY["emb_dim"], 2)
    assert torch.equal(model.out_head.weight, head.weight) and torch.equal(model.out_head.bias, head.bias)


def test_calc_loss_batch_is_cross_entropy_of_the_last_position():
    model = tiny_classifier()
    x, y = toy_data(8)
    expected = F.cross_entropy(model(x)[:, -1, :], y)
    assert torch.allclose(calc_loss_batch(x, y, model, "cpu"), expected)
    assert not torch.allclose(F.cross_entropy(model(x)[:, 0, :], y), expected)  # the position matters


def test_loss_and_accuracy_loaders_average_their_batches():
    model = tiny_classifier().eval()
    x, y = toy_data(24)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with torch.no_grad():
        per_batch = [F.cross_entropy(model(x[i:i + 8])[:, -1, :], y[i:i + 8]).item() for i in range(0, 24, 8)]
        predicted = model(x)[:, -1, :].argmax(-1)
    assert calc_loss_loader(loader, model, "cpu") == pytest.approx(sum(per_batch) / 3)
    assert calc_loss_loader(loader, model, "cpu", num_batches=2) == pytest.approx(sum(per_batch[:2]) / 2)
    assert calc_accuracy_loader(loader, model, "cpu") == pytest.approx((predicted == y).float().mean().item())
    assert calc_accuracy_loader(loader, model, "cpu", num_batches=1) == (predicted[:8] == y[:8]).sum().item() / 8
    model.train()
    assert evaluate_model(model, loader, loader, "cpu", eval_iter=1) == pytest.approx((per_batch[0], per_batch[0]))
    assert model.training  # evaluate_model switches back to training mode, as the book's does


def test_an_empty_loader_is_an_error_that_explains_itself():
    empty = DataLoader(TensorDataset(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(UserInputError, match="no batches"):
        calc_accuracy_loader(empty, tiny_classifier(), "cpu")


def test_train_classifier_simple_prints_the_books_lines_and_learns(capsys):
    model = tiny_classifier()
    x, y = toy_data(64)
    torch.manual_seed(123)
    train_loader = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=8, shuffle=True, drop_last=True)
    val_loader = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=8, eval_freq=6, eval_iter=2)
    out = capsys.readouterr().out.splitlines()
    evals = [line for line in out if line.startswith("Ep ")]
    assert evals[0].startswith("Ep 1 (Step 000000): Train loss ") and evals[1].startswith("Ep 2 (Step 000006): ")
    assert all(re.fullmatch(r"Ep \d+ \(Step \d{6}\): Train loss \d+\.\d{3}, Val loss \d+\.\d{3}", e) for e in evals)
    accs = [line for line in out if line.startswith("Training accuracy")]
    assert len(accs) == 8 and all(re.fullmatch(r"Training accuracy: \d+\.\d{2}% \| Validation accuracy: \d+\.\d{2}%", a)
                                  for a in accs)
    assert examples_seen == 8 * 48 and len(train_losses) == len(val_losses) == len(evals) == 8
    assert len(train_accs) == len(val_accs) == 8
    assert train_losses[-1] < 0.7 * train_losses[0]  # it learns the last token's half
    assert train_accs[-1] > train_accs[0]


def test_max_steps_stops_each_epoch(capsys):
    model = tiny_classifier()
    x, y = toy_data(32)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    *_, examples_seen = train_classifier_simple(model, loader, loader, optimizer, "cpu", num_epochs=2,
                                                eval_freq=2, eval_iter=1, max_steps=3)
    assert examples_seen == 2 * 3 * 4
    assert [line[:18] for line in capsys.readouterr().out.splitlines() if line.startswith("Ep")] == [
        "Ep 1 (Step 000000)", "Ep 1 (Step 000002)", "Ep 2 (Step 000004)"]


def test_plot_values_draws_the_books_labels():
    fig = plot_values(torch.linspace(0, 2, 3), torch.linspace(0, 48, 3), [0.5, 0.7, 0.9], [0.4, 0.6, 0.8],
                      label="accuracy")
    ax1, ax2 = fig.axes
    assert [line.get_label() for line in ax1.lines] == ["Training accuracy", "Validation accuracy"]
    assert ax1.get_ylabel() == "Accuracy" and ax1.get_xlabel() == "Epochs" and ax2.get_xlabel() == "Examples seen"


class Chars:
    """A stand-in tokenizer for the tiny vocabulary: one id per character."""

    @staticmethod
    def encode(text):
        return [ord(c) % TINY["vocab_size"] for c in text]


@pytest.mark.parametrize("favoured, answer", [(1, "spam"), (0, "not spam")])
def test_classify_review_answers_the_class_of_the_last_position(favoured, answer):
    model = tiny_classifier()
    with torch.no_grad():
        model.out_head.weight.zero_()
        model.out_head.bias.copy_(torch.tensor([1.0, -1.0]) * (1 if favoured == 0 else -1))
    assert classify_review("Win a prize now", model, Chars(), "cpu", max_length=12, pad_token_id=0) == answer


def test_classify_review_pads_and_cuts_as_the_dataset_does():
    model = tiny_classifier().eval()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    classify_review("abc", model, Chars(), "cpu", max_length=5, pad_token_id=0)
    classify_review("abcdefghij" * 3, model, Chars(), "cpu", max_length=None, pad_token_id=0)  # None: the context
    assert seen[0].tolist() == [Chars.encode("abc") + [0, 0]]
    assert seen[1].tolist() == [Chars.encode("abcdefghij" * 3)[:TINY["context_length"]]]
    with torch.no_grad():
        expected = model(seen[0])[:, -1, :].argmax(-1).item()
    assert classify_review("abc", model, Chars(), "cpu", max_length=5, pad_token_id=0) == (
        "spam" if expected == 1 else "not spam")


def test_the_chapter_starts_from_chapter_5s_model_when_gpt2_is_missing(tmp_path):
    cfg = {**TINY, "vocab_size": 50257, "drop_rate": 0.1}
    torch.manual_seed(0)
    saved = GPTModel(cfg)
    torch.save(saved.state_dict(), tmp_path / "model.pth")
    start = starting_model({**cfg, "qkv_bias": True}, None, tmp_path / "model.pth", n_heads=TINY["n_heads"])
    assert start.source == "chapter5" and not start.book_numbers and "not the book's" in start.description
    assert start.model.cfg.drop_rate == 0.0 and start.model.cfg.n_layers == TINY["n_layers"]
    x = torch.randint(0, 50257, (1, 5))
    saved.eval()
    assert torch.allclose(start.model.eval()(x), saved(x), atol=1e-5)  # the same weights, dropout off
    fresh = starting_model({**cfg, "qkv_bias": True}, None, tmp_path / "missing.pth")
    assert fresh.source == "fresh" and "torch.manual_seed(123)" in fresh.description


def test_a_chapter_5_model_of_another_vocabulary_is_refused(tmp_path):
    torch.save(GPTModel(TINY).state_dict(), tmp_path / "model.pth")  # 97 tokens: GPT-2's ids do not fit
    with pytest.raises(CheckpointError, match="50,257"):
        starting_model(TINY, None, tmp_path / "model.pth", n_heads=TINY["n_heads"])


def test_texts_longer_than_the_context_are_refused():
    model = GPTModel(TINY)
    check_fits(TINY["context_length"], model)
    with pytest.raises(UserInputError, match="exceeds the model's context length 16"):
        check_fits(120, model)


def test_the_chapter_starts_from_gpt2s_weights_where_found(tmp_path):
    """A tiny random GPT-2 written by transformers stands in for GPT-2 small: loaded as the book loads it."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    hf.eval().save_pretrained(tmp_path / "gpt2")
    start = starting_model(TINY, tmp_path / "gpt2", tmp_path / "model.pth")
    assert start.source == "gpt2" and start.book_numbers and str(tmp_path / "gpt2") in start.description
    idx = torch.tensor([[5, 6, 7, 8, 9]])
    torch.testing.assert_close(start.model.eval()(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)
    model = to_classifier(start.model)
    assert model(idx).shape == (1, 5, 2) and not model.tok_emb.weight.requires_grad
