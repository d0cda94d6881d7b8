"""The modern ladder (issue 22): rungs are the model core's configs, one change each, on equal budgets and data
order; SwiGLU and MoE matched in parameters; every rung learns in a tiny run; the table's mean ± std."""

import pytest
import torch

from ch04_gpt.config import ModelConfig, estimate
from ch05_pretraining.modern_ladder import WHAT_IT_ADDS, build_parser, loaders, main, mean_std, modern_rungs


def test_rungs_are_configs_with_one_change_each():
    rungs = modern_rungs(65, 64, emb_dim=32, n_layers=4, n_heads=8)
    assert list(rungs) == list(WHAT_IT_ADDS) and all(isinstance(c, ModelConfig) for c in rungs.values())
    names = list(rungs)
    for before, after in zip(names, names[1:]):
        a, b = rungs[before].to_dict(), rungs[after].to_dict()
        changed = {k for k in a if a[k] != b[k]} - {"family", "layer_types", "n_experts", "n_experts_per_token",
                                                    "moe_hidden_dim", "full_every"}
        assert len(changed) >= 1, after
    assert rungs["+gqa"].n_kv_heads == 2 and rungs["+window"].layer_types == ("sliding",) * 3 + ("full",)
    assert rungs["-bias"].family == "llama" and rungs["+qknorm"].qk_norm == "head"


def test_swiglu_and_moe_are_matched_in_parameters():
    for d in (32, 64, 128):
        rungs = modern_rungs(65, 64, emb_dim=d, n_layers=2, n_heads=8)
        p = {name: estimate(cfg) for name, cfg in rungs.items()}
        assert abs(p["+swiglu"]["params"] / p["+rmsnorm"]["params"] - 1) < 0.02
        assert abs(p["+moe"]["active_params"] / p["+window"]["params"] - 1) < 0.02  # the router's few on top
        assert p["+moe"]["params"] > 1.5 * p["+window"]["params"]


def test_every_rung_sees_the_same_windows_in_the_same_order():
    data = torch.utils.data.TensorDataset(torch.arange(40).view(20, 2))
    orders = []
    for _ in range(3):
        torch.manual_seed(len(orders))  # the global generator (model init) differs between rungs
        torch.nn.Linear(10, 10 + len(orders))
        train, _ = loaders(data, data, 4, seed=123)
        orders.append([b[0].tolist() for b in train])
    assert orders[0] == orders[1] == orders[2]


def test_mean_and_std():
    assert mean_std([2.0]) == (2.0, 0.0)
    mean, std = mean_std([1.0, 1.2, 1.4])
    assert mean == pytest.approx(1.2) and std == pytest.approx(0.2)


def test_a_tiny_run_of_every_rung_learns(corpus, tmp_path, capsys):
    rows = main(["--data", str(corpus), "--steps", "12", "--seeds", "2", "--batch-size", "4", "--context-length", "32",
                 "--emb-dim", "32", "--n-heads", "4", "--n-layers", "4", "--eval-freq", "4", "--eval-iter", "2",
                 "--final-batches", "4", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert [r["name"] for r in rows] == list(WHAT_IT_ADDS) and "| +moe | 4 experts" in out
    vocab = len(set(corpus.read_text()))
    for r in rows:  # well below a uniform guess over the characters after 12 steps
        assert r["mean"] < 0.9 * torch.log(torch.tensor(float(vocab))) and r["std"] >= 0, r
    assert (tmp_path / "ch05_modern_ladder.png").stat().st_size > 10_000 and (tmp_path / "+qknorm.pt").is_file()
    from ch05_pretraining.generate import main as generate

    text = generate(["--checkpoint", str(tmp_path / "+window.pt"), "--prompt", "I had", "--max-new-tokens", "5"])
    assert text.startswith("I had")


@pytest.mark.parametrize("argv,match", [
    (["--n-heads", "6"], "multiple of 4"),
    (["--seeds", "1,1"], "no seed twice"),
])
def test_bad_options_are_one_line(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out-dir", str(tmp_path / "o")])
    assert exc.value.code == 1 and match in capsys.readouterr().err


def test_help_lists_the_rungs():
    assert "+qknorm" in build_parser().format_help()


def test_quick_sets_its_values_where_no_option_was_given():
    from ch05_pretraining.modern_ladder import QUICK, apply_quick

    parser = build_parser()
    args = parser.parse_args(["--quick", "--steps", "7"])
    apply_quick(args, parser.parse_args([]))
    assert args.steps == 7 and args.seed_list == [123] and args.context_length == QUICK["context_length"]
    assert args.batch_size == QUICK["batch_size"] and args.final_batches == QUICK["final_batches"]
