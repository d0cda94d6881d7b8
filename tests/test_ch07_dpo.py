"""Preference tuning, the book's DPO bonus (issue 35): the loss is ln 2 and the margins 0 when policy = reference,
the loss equals a hand-written formula, the chosen answers' log-probability rises in a short run, LoRA's reference
is the base with the adapters off, the notebook's lines are printed, and bad input is one line."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ch04_gpt.lora import LoRAConfig, add_lora, adapters_off
from ch05_pretraining.checkpoint import read_checkpoint
from ch07_instructions import dpo
from ch07_instructions.preference import (
    PreferenceDataset, compute_dpo_loss_batch, compute_logprobs, preference_collate_fn,
)
from cli_checks import fails_with_one_line, printed
from fine_tuning import INSTRUCTIONS
from ch04_gpt.model import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")
ENTRIES = [{"instruction": f"Describe the color {c}.", "input": "", "output": f"{c} is a color.",
            "chosen": f"{c} is a bright color.", "rejected": f"{c}? No idea, go away."}
           for c in ["red", "blue", "green", "black", "white", "pink", "gray", "gold"] * 3]


def model(seed):
    torch.manual_seed(seed)
    m = GPTModel(INSTRUCTIONS)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.randn(p.shape) * (0.3 if "norm" in name else 0.1) + (1.0 if "scale" in name else 0.0))
    return m.eval()


def batch(tokenizer_entries=ENTRIES[:4]):
    from ch02_text.tokenizers import gpt2_tokenizer
    return preference_collate_fn(list(PreferenceDataset(tokenizer_entries, gpt2_tokenizer())))


def test_policy_equal_to_reference_gives_ln2_and_no_margin():
    m = model(0)
    loss, chosen, rejected = compute_dpo_loss_batch(batch(), m, m, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6) and chosen.item() == rejected.item() == 0


def hand_logprob(m, ids, mask, reduction):
    """A sequence's log-probability of its own tokens where the mask says, one position at a time."""
    total, count = 0.0, 0
    logits = m(ids[None])[0]
    for t in range(1, len(ids)):
        if mask[t]:
            total += F.log_softmax(logits[t - 1].double(), dim=-1)[ids[t]].item()
            count += 1
    return total / count if reduction == "mean" else total


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_loss_equals_the_formula_written_by_hand(reduction):
    policy, reference, b = model(0), model(1), batch()
    with torch.no_grad():
        loss, chosen, rejected = compute_dpo_loss_batch(b, policy, reference, beta=0.1, reduction=reduction)
    losses, margins = [], []
    for row in range(len(b["chosen"])):
        pc, pr, rc, rr = (hand_logprob(m, b[k][row], b[f"{k}_mask"][row], reduction)
                          for m, k in ((policy, "chosen"), (policy, "rejected"), (reference, "chosen"),
                                       (reference, "rejected")))
        losses.append(-math.log(1 / (1 + math.exp(-0.1 * ((pc - pr) - (rc - rr))))))
        margins.append((pc - rc) - (pr - rr))
    assert loss.item() == pytest.approx(sum(losses) / len(losses), rel=1e-4)
    assert (chosen - rejected).item() == pytest.approx(sum(margins) / len(margins), rel=1e-3, abs=1e-4)


def write(tmp_path, entries=ENTRIES):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(entries))
    return path


def run_cli(argv):
    return printed(dpo.main, argv)


def chosen_logprob(m, b):
    with torch.no_grad():
        return compute_logprobs(m(b["chosen"]), b["chosen"], b["chosen_mask"]).mean().item()


def test_a_short_run_raises_the_chosen_answers_and_book_prints_the_notebook_lines(instruction_pth, tmp_path):
    printed = run_cli(["--init-from", instruction_pth, "--n-heads", "4", "--data", write(tmp_path), "--lr", "1e-3",
                       "--batch-size", "4", "--epochs", "3", "--eval-freq", "2", "--out", tmp_path / "d.pt"])
    for start in ("Training loss: 0.69314", "Validation loss: 0.69314", "Train reward margin: 0.0",
                  "Val reward margin: 0.0", "Ep 1 (Step 000000): Train loss"):
        assert start in printed
    assert "Train reward margins" in printed
    tuned, _, _ = dpo.load_model_path(tmp_path / "d.pt")
    before, _, _ = dpo.load_model_path(instruction_pth, n_heads=4)
    b = batch(ENTRIES[:8])
    assert chosen_logprob(tuned.float(), b) > chosen_logprob(before.float(), b)


def test_lora_reference_is_the_base_with_adapters_off(instruction_pth, tmp_path):
    m = model(0)
    reference_logits = m(batch()["chosen"]).detach()
    add_lora(m, LoRAConfig(rank=2, alpha=4))
    for layer in m.modules():
        if hasattr(layer, "adapters"):
            for lora in layer.adapters.values():
                torch.nn.init.normal_(lora.B, std=0.5)
    with torch.no_grad(), adapters_off(m):
        assert torch.equal(m(batch()["chosen"]), reference_logits)
    assert not torch.equal(m(batch()["chosen"]).detach(), reference_logits)
    printed = run_cli(["--init-from", instruction_pth, "--n-heads", "4", "--data", write(tmp_path), "--batch-size", "4",
                       "--max-steps", "2", "--lora-rank", "2", "--out", tmp_path / "l.pt"])
    assert "LoRA: " in printed and "Training loss: 0.69314" in printed  # B = 0: policy = its base at first
    ckpt = read_checkpoint(tmp_path / "l.pt")
    assert ckpt["model"] and all(".adapters." in k for k in ckpt["model"])


def test_bad_input_is_one_line(instruction_pth, tmp_path, capsys):
    bad = [dict(e) for e in ENTRIES]
    del bad[3]["rejected"]
    fails_with_one_line(capsys, dpo.main, ["--init-from", str(instruction_pth), "--n-heads", "4", "--data",
                                           str(write(tmp_path, bad)), "--out", str(tmp_path / "x.pt")],
                        "entry 3 has no rejected text")
    other = GPTModel({**INSTRUCTIONS, "emb_dim": 48})
    torch.save(other.state_dict(), tmp_path / "other.pth")
    fails_with_one_line(capsys, dpo.main, ["--init-from", str(instruction_pth), "--n-heads", "4", "--data",
                                           str(write(tmp_path)), "--reference", str(tmp_path / "other.pth"),
                                           "--out", str(tmp_path / "x.pt")], "is another model than --init-from")
    assert not (tmp_path / "x.pt").exists()
