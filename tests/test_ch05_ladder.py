"""The baseline ladder (issue 13): exact counts, causal rungs, parameter formulas, the n-gram window,
attention winning the copy task, the REPL on a rung, and one-line errors."""

import io
import sys

import numpy as np
import pytest
import torch

from ch05_pretraining.baselines import CountModel, NgramMLP, build_rung
from ch05_pretraining.ladder import build_parser, copy_corpus, main, rung_config

V, D, T = 11, 16, 12


def cfg_of(name, **changes):
    args = build_parser().parse_args(["--emb-dim", str(D), "--context-length", str(T), "--n-heads", "2",
                                      "--n-layers", "2", "--n", "3"])
    cfg, rung = rung_config(name, V, args)
    return cfg.replace(**changes), rung


def test_bigram_and_unigram_probabilities_on_a_toy_corpus():
    ids = np.array([0, 1, 0, 1, 0, 2, 1])  # pairs: 01 10 01 10 02 21
    bigram = CountModel(ids, vocab_size=3, order=2, k=0.0)
    assert bigram.prob(0, 1) == pytest.approx(2 / 3) and bigram.prob(0, 2) == pytest.approx(1 / 3)
    assert bigram.prob(1, 0) == 1.0 and bigram.prob(2, 1) == 1.0 and bigram.prob(1, 2) == 0.0
    smoothed = CountModel(ids, vocab_size=3, order=2, k=1.0)
    assert smoothed.prob(0, 0) == pytest.approx(1 / 6)  # (0 + 1) / (3 + 3)
    unigram = CountModel(ids, vocab_size=3, order=1, k=0.5)
    assert unigram.prob(None, 2) == pytest.approx(1.5 / 8.5)
    x, y = torch.tensor([[0, 1]]), torch.tensor([[1, 0]])
    assert bigram.loss([(x, y)]) == pytest.approx(-(np.log(2 / 3) + np.log(1.0)) / 2)  # 0->1, 1->0


@pytest.mark.parametrize("name", ["ngram-mlp", "LM1", "LM2", "LM3", "LM4", "LM5"])
def test_every_neural_rung_is_causal(name):
    torch.manual_seed(0)
    model = build_rung(*cfg_of(name, drop_rate=0.0)).eval()
    idx = torch.randint(0, V, (2, T))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % V
    torch.testing.assert_close(model(idx)[:, :7], model(changed)[:, :7])
    assert not torch.allclose(model(idx)[:, 7:], model(changed)[:, 7:])


def test_parameter_counts_match_their_formulas():
    n_params = {name: sum(p.numel() for p in build_rung(*cfg_of(name)).parameters())
                for name in ("ngram-mlp", "LM1", "LM2")}
    assert n_params["LM1"] == V * D + D * V + V
    assert n_params["ngram-mlp"] == (V + 1) * D + (3 * D * 4 * D + 4 * D) + (4 * D * V + V)
    assert n_params["LM2"] == V * D + T * D + 3 * D * D + D * V + V


def test_the_ngram_mlp_sees_exactly_n_previous_tokens():
    torch.manual_seed(0)
    model = NgramMLP(*cfg_of("ngram-mlp"))
    idx = torch.randint(0, V, (1, T))
    base = model(idx)[0, 9]
    for pos, seen in ((6, False), (7, True), (9, True)):  # position 9 sees 7, 8, 9 (n = 3)
        changed = idx.clone()
        changed[0, pos] = (changed[0, pos] + 1) % V
        assert torch.equal(model(changed)[0, 9], base) != seen, pos


def test_count_models_only_save_no_checkpoints(tmp_path, capsys):
    main(["--models", "unigram,bigram", "--steps", "1", "--data", "the-verdict.txt", "--out-dir", str(tmp_path)])
    assert "count models only: no checkpoints" in capsys.readouterr().out and not list(tmp_path.glob("*.pt"))


def test_copy_corpus_repeats_each_key():
    lines = copy_corpus(50, key_len=6, seed=3).splitlines()
    assert len(lines) == 50 and all(a == b and len(a) == 6 for a, b in (line.split("|") for line in lines))


def test_attention_solves_the_copy_task_and_the_repl_reads_a_rung(tmp_path, capsys, monkeypatch):
    results = main(["--task", "copy", "--steps", "120", "--key-len", "6", "--copy-sequences", "1500",
                    "--emb-dim", "32", "--n-layers", "2", "--eval-freq", "40", "--out-dir", str(tmp_path / "new")])
    tmp_path = tmp_path / "new" / "copy"  # made by the run; the copy task has its own folder
    out = capsys.readouterr().out
    assert "| LM2 | + positions + one causal attention head |" in out
    baselines = max(results[n]["val"] for n in ("unigram", "bigram", "ngram-mlp"))
    best_baseline = min(results[n]["val"] for n in ("unigram", "bigram", "ngram-mlp"))
    for name in ("LM2", "LM3", "LM5"):
        assert results[name]["val"] < best_baseline - 0.3, (name, results[name], baselines)
    assert (tmp_path / "ch05_ladder.png").stat().st_size > 10_000  # a non-default run's plot: beside its output

    from ch05_pretraining.generate import main as generate

    monkeypatch.setattr(sys, "stdin", io.StringIO(":top 3 abcdef|abc\n:quit\n"))
    generate(["--checkpoint", str(tmp_path / "LM2.pt"), "--interactive"])
    top = capsys.readouterr().out.splitlines()
    assert len(top) == 3 and "'d'" in top[0]  # the copied letter is the most likely next token


@pytest.mark.parametrize("args,match", [
    (["--models", "LM9"], "argument --models: unknown model LM9"),
    (["--n", "0"], "argument --n: must be a positive integer"),
    (["--context-length", "2", "--n", "3"], "--context-length 2 is shorter than the n-gram's --n 3"),
    (["--task", "copy", "--key-len", "2", "--n", "3"], "reaches past --key-len 2"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as info:
        main([*args, "--out-dir", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and len(lines) == 1 and match in lines[0], lines
    assert not (tmp_path / "out" / "LM1.pt").exists()


def test_a_corpus_too_short_for_the_context_is_one_line(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be " * 3)
    with pytest.raises(SystemExit):
        main(["--data", str(short), "--context-length", "64", "--out-dir", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "needs at least 65" in lines[0], lines
