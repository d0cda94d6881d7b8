"""python -m ch05_pretraining.ladder: from counting to attention, what each part of the GPT buys.

Trains, on the same data, tokenizer, token budget and optimizer, a ladder of language models and prints
one table (parameters, train and validation loss, perplexity, tokens/s):

    unigram, bigram   counts with add-k smoothing (exact, no training)
    ngram-mlp         the previous n tokens' embeddings, concatenated, through an MLP (Bengio et al. 2003)
    LM1               token embedding -> linear: a neural bigram
    LM2               + position embedding + one causal self-attention head (chapter 3's CausalAttention)
    LM3               + multi-head attention + feed-forward (chapters 3 and 4)
    LM4               several such blocks, without residual connections and LayerNorm
    LM5               the book's GPTModel at the same width: + residuals, LayerNorm, dropout

The default corpus is tinyshakespeare.txt at character level; --data and --tokenizer work as in
train. --task copy makes a corpus in which the second half of every sequence repeats its first
half: the next token sits further back than any n-gram window, so only attention can predict it.
It writes image/ch05_ladder.png for the default run (validation loss against tokens seen, the count
models as horizontal lines), any other run's plot into --out-dir, and each neural model's checkpoint
to --out-dir: python -m ch05_pretraining.generate --checkpoint checkpoints/ladder/LM2.pt --interactive
samples it, and ":top 5 TEXT" lists its next-token probabilities.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ch02_text.cli import CliParser, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.figures import save_figure
from ch02_text.option_types import fraction, positive_float, positive_int
from ch02_text.safe_files import check_writable
from ch02_text.seeds import set_seed

from .baselines import CountModel, build_rung
from .checkpoint import save_checkpoint
from .engine.runtime import Runtime
from .engine.token_data import TokenWindows, load_datasets
from .engine.recipe import SMALL_MODEL_RECIPE
from .engine.trainer import Trainer
from .loss import calc_loss_loader
from .previous_chapters import TOKENIZER_CHOICES, model_config, tokenizer_to_dict

WHAT_IT_ADDS = {
    "unigram": "token frequencies (counts, add-k)",
    "bigram": "the previous token (counts, add-k)",
    "ngram-mlp": "the previous n tokens through an MLP",
    "LM1": "token embedding -> linear",
    "LM2": "+ positions + one causal attention head",
    "LM3": "+ multi-head attention + feed-forward",
    "LM4": "stacked blocks, no residuals or LayerNorm",
    "LM5": "GPTModel: + residuals, LayerNorm, dropout",
}
COUNT_MODELS = ("unigram", "bigram")


# -- data -----------------------------------------------------------------------------------------------
def copy_corpus(n_sequences: int, key_len: int = 8, n_symbols: int = 16, seed: int = 0) -> str:
    """Sequences ``keys|keys`` of random letters, one per line: the second half repeats the first.

    >>> copy_corpus(2, key_len=4, n_symbols=3, seed=1)
    'bbcc|bbcc\\naacc|aacc\\n'
    """
    g = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"[:n_symbols]))
    keys = ["".join(g.choice(letters, key_len)) for _ in range(n_sequences)]
    return "".join(f"{k}|{k}\n" for k in keys)


def rung_config(name: str, vocab_size: int, args):
    """(architecture, rung) of rung ``name``: one width, context and head count for all, so only the
    architecture differs (LM5, the GPTModel, has no rung)."""
    cfg = model_config("gpt2-small", vocab_size=vocab_size, context_length=args.context_length,
                       emb_dim=args.emb_dim, n_heads=args.n_heads, n_layers=args.n_layers, drop_rate=args.drop_rate)
    if name == "LM5":
        return cfg, None
    return cfg.replace(drop_rate=0.0), {"name": name, "n": args.n, "n_blocks": args.n_layers if name == "LM4" else 1}


def load_ladder_data(args):
    """(path name, tokenizer, train windows, val windows) as the train CLI reads them; --task copy makes its own."""
    if args.task == "copy":
        path = task_dir(args) / "copy-task.txt"
        check_writable(path, "--out-dir")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(copy_corpus(args.copy_sequences, args.key_len, seed=args.seed), encoding="utf-8")
        data, tokenizer, stride = str(path), "char", args.key_len * 2 + 2  # one window = one sequence
        n_train = round(0.9 * args.copy_sequences)  # split between sequences, so every window is one sequence
        train_ratio = (n_train * stride + 0.5) / (args.copy_sequences * stride)
    else:
        data, tokenizer, stride, train_ratio = args.data, args.tokenizer, None, 0.9
    path, tok, train_ds, val_ds = load_datasets(data, tokenizer, args.context_length, train_ratio, stride)
    if stride is not None:  # validation windows aligned with the sequences too
        val_ds = TokenWindows(val_ds.tokens, val_ds.start, val_ds.end, args.context_length, stride)
    return path, tok, train_ds, val_ds


# -- the run ----------------------------------------------------------------------------------------------
def train_rung(cfg, rung, train_loader, val_loader, args, runtime):
    """Train one neural rung for ``--steps``; returns (model, state, tokens/s)."""
    set_seed(args.seed)
    model = build_rung(cfg, rung)
    optimizer = SMALL_MODEL_RECIPE.optimizer(model, args.lr, fused=runtime.fused_adamw)
    settings = SMALL_MODEL_RECIPE.settings(args.steps, args.lr, eval_freq=args.eval_freq, eval_iter=args.eval_iter,
                                           sample_tokens=0, **runtime.train_settings(cfg.vocab_size))
    trainer = Trainer(model, optimizer, train_loader, val_loader, "cpu", settings, log=lambda *a: None)
    start = time.perf_counter()
    state = trainer.fit()
    return model, state, state.tokens_seen / (time.perf_counter() - start)


def run(args):
    runtime = Runtime.choose(torch.device("cpu"))
    runtime.apply(torch.device("cpu"), args.threads)
    out_dir = task_dir(args)
    data_path, tokenizer, train_ds, val_ds = load_ladder_data(args)
    set_seed(args.seed)
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, shuffle=False)
    if len(train_loader) == 0 or len(val_loader) == 0:
        raise UserInputError(f"'{data_path.name}' is too short for one batch of {args.batch_size} windows of "
                             f"--context-length {args.context_length}: use more text or smaller sizes")
    print(f"data: {data_path.name} ({args.task}), {tokenizer.n_vocab} ids, {len(train_ds):,} training windows; "
          f"budget {args.steps} steps x {args.batch_size} x {args.context_length} tokens for every neural model")
    train_tokens = train_ds.tokens[train_ds.start:train_ds.end]
    rows, curves = [], {}
    for name in args.models:
        if name in COUNT_MODELS:
            counts = CountModel(train_tokens, tokenizer.n_vocab, order=1 if name == "unigram" else 2, k=args.add_k)
            tr, va = counts.loss(train_loader, args.eval_iter), counts.loss(val_loader)
            rows.append((name, counts.n_params, tr, va, float("nan")))
            curves[name] = va
            continue
        cfg, rung = rung_config(name, tokenizer.n_vocab, args)
        model, state, speed = train_rung(cfg, rung, train_loader, val_loader, args, runtime)
        model.eval()
        with torch.no_grad():
            va = calc_loss_loader(val_loader, model, "cpu")
        rows.append((name, sum(p.numel() for p in model.parameters()), state.train_losses[-1], va, speed))
        curves[name] = (state.track_tokens_seen, state.val_losses)
        save_checkpoint(out_dir / f"{name}.pt", model, None, step=state.global_step + 1,
                        tokenizer=tokenizer_to_dict(tokenizer), trainer_state=state.to_dict())
    print_table(rows)
    figure = save_figure(ladder_figure(curves, args), "ch05_ladder.png", None if default_run(args) else out_dir)
    neural = [name for name in args.models if name not in COUNT_MODELS]
    if neural:
        print(f"saved the plot {figure} and the neural models' checkpoints in {out_dir}/ "
              f"(python -m ch05_pretraining.generate --checkpoint {out_dir}/{neural[0]}.pt --interactive)")
    else:
        print(f"saved the plot {figure} (count models only: no checkpoints)")
    return {name: {"params": p, "train": tr, "val": va} for name, p, tr, va, _ in rows}


def print_table(rows):
    print("\n| model | what it adds | parameters | train loss | val loss | perplexity | tokens/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, params, tr, va, speed in rows:
        speed_text = "-" if math.isnan(speed) else f"{speed:,.0f}"
        print(f"| {name} | {WHAT_IT_ADDS[name]} | {params:,} | {tr:.3f} | {va:.3f} | {math.exp(va):.2f} | "
              f"{speed_text} |")


def ladder_figure(curves, args):
    """Validation loss against tokens seen, one line per neural model, the count models as horizontal lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        if isinstance(curve, float):
            ax.axhline(curve, linestyle="--", linewidth=1, color="grey" if name == "unigram" else "black",
                       label=f"{name} (counts)")
        else:
            ax.plot(*curve, marker=".", label=name)
    ax.set_xlabel("Training tokens seen")
    ax.set_ylabel("Validation loss")
    ax.set_title(f"What each part buys: {args.task} task, width {args.emb_dim}, {args.steps} steps")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def default_run(args) -> bool:
    defaults = build_parser().parse_args([])
    return all(getattr(args, k) == getattr(defaults, k) for k in vars(defaults) if k not in ("threads",))


def model_names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WHAT_IT_ADDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model {', '.join(unknown) or '(none)'}: choose from "
                                         f"{', '.join(WHAT_IT_ADDS)}")
    return names


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.ladder", description=__doc__)
    p.add_argument("--task", choices=("text", "copy"), default="text",
                   help="text: --data; copy: a synthetic corpus that only attention can predict")
    p.add_argument("--data", default="tinyshakespeare.txt", help="UTF-8 text file or prepared .bin token file")
    p.add_argument("--tokenizer", default="char", help=TOKENIZER_CHOICES)
    p.add_argument("--models", type=model_names, default=list(WHAT_IT_ADDS),
                   help="comma-separated rungs: " + ",".join(WHAT_IT_ADDS))
    p.add_argument("--n", type=positive_int, default=3, help="tokens the n-gram MLP sees")
    p.add_argument("--add-k", type=positive_float, default=1.0, help="add-k smoothing of the count models")
    p.add_argument("--steps", type=positive_int, default=600, help="optimizer steps of every neural model")
    p.add_argument("--batch-size", type=positive_int, default=32, help="windows per step")
    p.add_argument("--context-length", type=positive_int, default=64, help="tokens per window")
    p.add_argument("--emb-dim", type=positive_int, default=64, help="width of every neural model")
    p.add_argument("--n-heads", type=positive_int, default=4, help="attention heads (LM3-LM5)")
    p.add_argument("--n-layers", type=positive_int, default=4, help="blocks of LM4 and LM5")
    p.add_argument("--drop-rate", type=fraction, default=0.1, help="LM5's dropout")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (cosine to a tenth)")
    p.add_argument("--eval-freq", type=positive_int, default=50, help="evaluate every N steps (the plot's points)")
    p.add_argument("--eval-iter", type=positive_int, default=10, help="validation batches per evaluation")
    p.add_argument("--key-len", type=positive_int, default=8, help="--task copy: letters in each half")
    p.add_argument("--copy-sequences", type=positive_int, default=4000, help="--task copy: sequences made")
    p.add_argument("--seed", type=int, default=123, help="seed of weights, data order and the copy corpus")
    p.add_argument("--out-dir", default="checkpoints/ladder",
                   help="checkpoints (and a non-default run's plot); --task copy writes into its copy/ subfolder")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (None: physical cores)")
    return p


def check_args(args):
    if args.task == "copy":
        args.context_length = 2 * args.key_len + 1  # a whole sequence and its line break: one window
    if args.context_length < args.n:
        raise UserInputError(f"--context-length {args.context_length} is shorter than the n-gram's --n {args.n}")
    if "ngram-mlp" in args.models and args.task == "copy" and args.n > args.key_len:
        raise UserInputError(f"--n {args.n} reaches past --key-len {args.key_len}: the copy task's point is that "
                             "the n-gram window is shorter than the distance to the copied token")
    check_writable(task_dir(args) / "LM1.pt", "--out-dir")


def task_dir(args) -> Path:
    """--out-dir for the text task, its copy/ subfolder for --task copy: one task never overwrites the other's."""
    return Path(args.out_dir) / "copy" if args.task == "copy" else Path(args.out_dir)


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        check_args(args)
        return run(args)


if __name__ == "__main__":
    main()
