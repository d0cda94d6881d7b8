"""python -m ch05_pretraining.modern_ladder: GPT-2 to Llama and Qwen3, one change at a time, on one budget.

Trains a ladder of models that differ from the rung before by one part, all built from the model core's
named parts (no model classes of their own), at one width and depth, on the same tokens in the same order
with the same schedule and optimizer, for several seeds, and prints one table (final validation loss,
mean ± standard deviation over the seeds; parameters and active parameters; tokens/s; KV-cache bytes per
token):

    gpt2       learned positions, LayerNorm, GELU MLP, biases
    +rope      rotary positions instead of learned ones
    +rmsnorm   RMSNorm instead of LayerNorm
    +swiglu    SwiGLU instead of the GELU MLP, hidden size matched to the same parameters
    -bias      no biases (= Llama)
    +gqa       grouped-query attention, kv heads = heads / 4
    +qknorm    RMSNorm on each head's queries and keys (= Qwen3)
    +window    sliding-window attention on 3 of 4 layers
    +moe       4 experts, 2 per token, in place of the MLP (active parameters matched)

The default run (tinyshakespeare.txt, characters, context 256) writes image/ch05_modern_ladder.png; any
other run writes its figure into --out-dir, beside each rung's checkpoint (the first seed's), which
python -m ch05_pretraining.generate --checkpoint checkpoints/modern_ladder/+qknorm.pt --interactive reads.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ch02_text.cli import CliParser, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.figures import save_figure
from ch02_text.option_types import positive_float, positive_int
from ch02_text.safe_files import check_folder
from ch02_text.seeds import set_seed

from .checkpoint import save_checkpoint
from .engine.runtime import Runtime
from .engine.token_data import load_datasets
from .engine.recipe import SMALL_MODEL_RECIPE
from .engine.trainer import Trainer
from .loss import calc_loss_loader
from .previous_chapters import GPTModel, TOKENIZER_CHOICES, estimate, model_config, tokenizer_to_dict

WHAT_IT_ADDS = {
    "gpt2": "GPT-2: learned positions, LayerNorm, GELU MLP, biases",
    "+rope": "rotary positions instead of learned ones",
    "+rmsnorm": "RMSNorm instead of LayerNorm",
    "+swiglu": "SwiGLU MLP, hidden size matched",
    "-bias": "no biases (= Llama)",
    "+gqa": "grouped-query attention, kv heads = heads / 4",
    "+qknorm": "QK-norm (= Qwen3)",
    "+window": "sliding window on 3 of 4 layers",
    "+moe": "4 experts, top-2, active parameters matched",
}


def swiglu_hidden(emb_dim: int) -> int:
    """The SwiGLU hidden size (with biases) with the parameters of GPT-2's GELU MLP of width 4 * emb_dim:
    3·d·h + 2h + d = 8·d² + 5d.

    >>> swiglu_hidden(128)
    341
    """
    return round((8 * emb_dim ** 2 + 4 * emb_dim) / (3 * emb_dim + 2))


def modern_rungs(vocab_size, context_length, emb_dim=128, n_layers=4, n_heads=8, window=None,
                 drop_rate=0.0) -> dict:
    """name -> ModelConfig, each rung the one before it with one change."""
    window = window or max(1, context_length // 4)
    base = model_config("gpt2-small", vocab_size=vocab_size, context_length=context_length, emb_dim=emb_dim,
                        n_layers=n_layers, n_heads=n_heads, drop_rate=drop_rate, family="custom")
    hidden = swiglu_hidden(emb_dim)
    changes = {
        "gpt2": {"family": "gpt2"},
        "+rope": {"positions": "rope"},
        "+rmsnorm": {"norm": "rmsnorm"},
        "+swiglu": {"ff": "swiglu", "hidden_dim": hidden},
        "-bias": {"qkv_bias": False, "attn_bias": False, "ff_bias": False, "family": "llama"},
        "+gqa": {"n_kv_heads": max(1, n_heads // 4)},
        "+qknorm": {"qk_norm": "head", "family": "qwen3"},
        "+window": {"sliding_window": window, "full_every": 4, "family": "custom"},
        "+moe": {"ff": "moe", "n_experts": 4, "n_experts_per_token": 2, "moe_hidden_dim": max(1, hidden // 2)},
    }
    rungs, cfg = {}, base
    for name, change in changes.items():
        if name == "+moe":
            change = {**change, "moe_hidden_dim": max(1, cfg.hidden_dim // 2)}
        cfg = cfg.replace(**change)
        rungs[name] = cfg
    return rungs


def kv_bytes_per_token(cfg) -> float:
    """KV-cache bytes (bf16) per token of a full context: sliding layers hold at most their window."""
    held = sum(min(cfg.window(i) or cfg.context_length, cfg.context_length) for i in range(cfg.n_layers))
    return held * 2 * cfg.n_kv_heads * cfg.head_dim * 2 / cfg.context_length


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value).

    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)
    """
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def loaders(train_ds, val_ds, batch_size, seed):
    """The same windows in the same order for every rung: the shuffle has a generator of its own."""
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(train_ds, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator),
            DataLoader(val_ds, batch_size=batch_size, shuffle=False))


def train_one(cfg, train_ds, val_ds, args, seed, runtime):
    """One rung, one seed: (model, trainer state, final validation loss over the whole split, tokens/s)."""
    train_loader, val_loader = loaders(train_ds, val_ds, args.batch_size, seed)
    set_seed(seed)
    model = GPTModel(cfg)
    optimizer = SMALL_MODEL_RECIPE.optimizer(model, args.lr, fused=runtime.fused_adamw)
    settings = SMALL_MODEL_RECIPE.settings(args.steps, args.lr, eval_freq=args.eval_freq, eval_iter=args.eval_iter,
                                           sample_tokens=0, **runtime.train_settings(cfg.vocab_size))
    trainer = Trainer(model, optimizer, train_loader, val_loader, "cpu", settings, log=lambda *a: None)
    start = time.perf_counter()
    state = trainer.fit()
    speed = state.tokens_seen / (time.perf_counter() - start)
    model.eval()
    with torch.inference_mode():
        val = calc_loss_loader(val_loader, model, "cpu", num_batches=args.final_batches)
    return model, state, val, speed


def run(args):
    runtime = Runtime.choose(torch.device("cpu"))
    runtime.apply(torch.device("cpu"), args.threads)
    path, tokenizer, train_ds, val_ds = load_datasets(args.data, args.tokenizer, args.context_length)
    if len(train_ds) < args.batch_size or len(val_ds) == 0:
        raise UserInputError(f"'{path.name}' is too short for one batch of {args.batch_size} windows of "
                             f"--context-length {args.context_length}: use more text or smaller sizes")
    rungs = modern_rungs(tokenizer.n_vocab, args.context_length, args.emb_dim, args.n_layers, args.n_heads,
                         args.window)
    print(f"data: {path.name}, {tokenizer.n_vocab} ids, {len(train_ds):,} training windows; every rung: "
          f"{args.steps} steps x {args.batch_size} x {args.context_length} tokens, the same order, "
          f"seeds {', '.join(map(str, args.seed_list))}")
    rows, curves = [], {}
    for name, cfg in rungs.items():
        results = []
        for seed in args.seed_list:
            model, state, val, speed = train_one(cfg, train_ds, val_ds, args, seed, runtime)
            results.append((state, val, speed))
            if seed == args.seed_list[0]:
                save_checkpoint(Path(args.out_dir) / f"{name}.pt", model, None, step=state.global_step + 1,
                                tokenizer=tokenizer_to_dict(tokenizer), trainer_state=state.to_dict())
        est = estimate(cfg)
        mean, std = mean_std([val for _, val, _ in results])
        rows.append({"name": name, "params": est["params"], "active": est["active_params"], "mean": mean, "std": std,
                     "speed": statistics.mean(s for _, _, s in results), "kv": kv_bytes_per_token(cfg)})
        curves[name] = (list(results[0][0].track_tokens_seen), [r[0].val_losses for r in results])
        print(f"{name}: val {mean:.3f} ± {std:.3f}")
    print_table(rows, len(args.seed_list))
    figure = save_figure(modern_figure(curves, rows, args), "ch05_modern_ladder.png",
                         None if default_run(args) else args.out_dir)
    print(f"saved the figure {figure} and each rung's checkpoint (seed {args.seed_list[0]}) in {args.out_dir}/")
    return rows


def print_table(rows, n_seeds):
    print(f"\n| rung | what it adds | parameters | active | val loss (mean ± std, {n_seeds} seeds) | "
          "tokens/s | KV cache / token (bf16) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['name']} | {WHAT_IT_ADDS[r['name']]} | {r['params']:,} | {r['active']:,} | "
              f"{r['mean']:.3f} ± {r['std']:.3f} | {r['speed']:,.0f} | {r['kv']:,.0f} B |")


def modern_figure(curves, rows, args):
    """Validation loss against tokens seen (the seeds' spread as a band), and the final losses with error bars."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    base_tokens, base_runs = curves["gpt2"]
    base_length = min(len(r) for r in base_runs)
    base = torch.tensor([r[:base_length] for r in base_runs]).mean(0)  # GPT-2's mean curve: the zero line
    left.axhline(0.0, color="black", linewidth=1, label="gpt2")
    for name, (tokens, runs) in curves.items():
        if name == "gpt2":
            continue
        length = min(base_length, *(len(r) for r in runs))
        stacked = torch.tensor([r[:length] for r in runs]) - base[:length]  # each seed's loss minus GPT-2's
        mean, low, high = stacked.mean(0), stacked.min(0).values, stacked.max(0).values
        line, = left.plot(tokens[:length], mean, label=name)
        left.fill_between(tokens[:length], low, high, color=line.get_color(), alpha=0.15)
    left.set_xlabel("Training tokens seen")
    left.set_ylabel("Validation loss minus GPT-2's")
    left.set_title("Each rung against GPT-2 (below 0: better; band: the seeds' range)")
    left.legend(fontsize=8, ncol=3)
    names = [r["name"] for r in rows]
    right.errorbar(range(len(rows)), [r["mean"] for r in rows], yerr=[r["std"] for r in rows], fmt="o", capsize=4)
    right.set_xticks(range(len(rows)), names, rotation=45, ha="right")
    right.set_ylabel("Final validation loss (mean ± std)")
    right.set_title(f"{len(args.seed_list)} seeds, {args.steps} steps, width {args.emb_dim}")
    fig.tight_layout()
    return fig


def seeds(text):
    """``--seeds 3`` (123, 124, 125) or an explicit list ``--seeds 1,2``."""
    try:
        values = [int(v) for v in text.split(",")] if "," in text else list(range(123, 123 + int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a count or a comma-separated list of seeds, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"needs at least one seed and no seed twice, got {text!r}")
    return values


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.modern_ladder", description=__doc__)
    p.add_argument("--data", default="tinyshakespeare.txt", help="UTF-8 text file or prepared .bin token file")
    p.add_argument("--tokenizer", default="char", help=TOKENIZER_CHOICES)
    p.add_argument("--steps", type=positive_int, default=60,
                   help="optimizer steps of every rung and seed (the default run: about 13 minutes on 2 cores)")
    p.add_argument("--seeds", dest="seed_list", type=seeds, default=seeds("3"),
                   help="how many seeds (from 123), or a comma-separated list")
    p.add_argument("--batch-size", type=positive_int, default=16, help="windows per step")
    p.add_argument("--context-length", type=positive_int, default=256, help="tokens per window")
    p.add_argument("--emb-dim", type=positive_int, default=128, help="width of every rung")
    p.add_argument("--n-layers", type=positive_int, default=4, help="blocks of every rung")
    p.add_argument("--n-heads", type=positive_int, default=8, help="query heads (kv heads: a quarter from +gqa)")
    p.add_argument("--window", type=positive_int, default=None, help="+window's window (None: a quarter of the context)")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (cosine to a tenth)")
    p.add_argument("--eval-freq", type=positive_int, default=10, help="evaluate every N steps (the curves' points)")
    p.add_argument("--eval-iter", type=positive_int, default=2, help="validation batches per evaluation")
    p.add_argument("--final-batches", type=positive_int, default=10,
                   help="validation batches of the final loss (the table's)")
    p.add_argument("--out-dir", default="checkpoints/modern_ladder", help="checkpoints (and a non-default run's figure)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (None: physical cores)")
    p.add_argument("--quick", action="store_true",
                   help="a first look in about a minute on 2 cores: " + ", ".join(
                       f"--{FLAGS.get(k, k).replace('_', '-')} {v}" for k, v in QUICK.items())
                   + " (options given still win)")
    return p


# --quick: what it changes (where the option was left at its default)
QUICK = {"steps": 20, "seed_list": "1", "batch_size": 8, "context_length": 128, "eval_freq": 5, "final_batches": 4}
FLAGS = {"seed_list": "seeds"}  # option names that differ from their dest


def apply_quick(args, defaults) -> None:
    for key, value in QUICK.items():
        if getattr(args, key) == getattr(defaults, key):
            setattr(args, key, seeds(value) if key == "seed_list" else value)


def default_run(args) -> bool:
    defaults = build_parser().parse_args([])
    return all(getattr(args, k) == getattr(defaults, k) for k in vars(defaults) if k not in ("threads", "out_dir"))


def check_args(args):
    if args.n_heads < 4 or args.n_heads % 4:
        raise UserInputError(f"--n-heads {args.n_heads}: +gqa keeps a quarter of the heads, so give a multiple of 4")
    if args.emb_dim % args.n_heads:
        raise UserInputError(f"--emb-dim {args.emb_dim} must be divisible by --n-heads {args.n_heads}")
    check_folder(args.out_dir, "--out-dir")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick(args, parser.parse_args([]))
    with cli_errors():
        check_args(args)
        return run(args)


if __name__ == "__main__":
    main()
