"""The own-text workflow, measured side by side in one run (the README's own-text numbers).

    python -m bench.workflow_speed prepare   # prepare on >= 50 MB: own BPE (all workers) vs tiktoken, whole commands
    python -m bench.workflow_speed save      # --save-every cost for GPT-124M: seconds per checkpoint vs step time
    python -m bench.workflow_speed anchor    # nanoGPT's char model: a plain fp32 PyTorch loop vs the trainer

Each part prints its table; results go in bench/README.md with machine and date.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.timing import machine_line
from ch02_text.data_files import read_data_text
from ch02_text.paths import REPO_ROOT


def whole_command(args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_prepare(copies: int = 46) -> None:
    """tinyshakespeare.txt x ``copies`` files (51 MB for 46), tokenized by the prepare CLI, in turn."""
    from ch02_text.bpe import BPETokenizer

    text = read_data_text("tinyshakespeare.txt")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i in range(copies):
            (corpus / f"part{i:03d}.txt").write_text(text, encoding="utf-8")
        size = sum(f.stat().st_size for f in corpus.iterdir())
        tok = BPETokenizer()
        tok.train(text, 2000)
        tok_file = tok.save(Path(tmp) / "bpe2000.json")
        rows = []
        for name, extra in (("tiktoken GPT-2", ["--tokenizer", "gpt2"]),
                            ("own BPE, 2,000 ids", ["--tokenizer", str(tok_file)])):
            out = Path(tmp) / "out.bin"
            seconds = whole_command(["ch05_pretraining.prepare", "--input", str(corpus), "--out", str(out), *extra])
            count = out.stat().st_size // 2
            rows.append((name, seconds, count))
    print(f"prepare on {copies} files, {size / 1e6:.1f} MB, {os.cpu_count()} workers; {machine_line()}")
    print("| tokenizer | seconds (whole command) | tokens | tokens/s |\n| --- | ---: | ---: | ---: |")
    for name, seconds, count in rows:
        print(f"| {name} | {seconds:.1f} | {count:,} | {count / seconds / 1e6:.2f} M |")


def bench_save(steps: int = 3, saves: int = 3) -> None:
    """GPT-124M (the book's run: context 256, batch 2, fast path): one checkpoint write vs one step."""
    from ch05_pretraining.checkpoint import save_checkpoint
    from ch05_pretraining.previous_chapters import GPTModel, model_config
    from ch05_pretraining.engine.runtime import Runtime
    from ch05_pretraining.engine.trainer import make_optimizer

    runtime = Runtime.choose(torch.device("cpu"))
    runtime.apply(torch.device("cpu"))
    torch.manual_seed(123)
    model = GPTModel(model_config("gpt2-small", context_length=256))
    opt = make_optimizer(model, fused=runtime.fused_adamw)
    x = torch.randint(0, 50257, (2, 257))

    def step():
        with torch.autocast("cpu", dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None):
            logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # optimizer state exists from here on, as in a real run
    start = time.perf_counter()
    for _ in range(steps):
        step()
    step_s = (time.perf_counter() - start) / steps
    with tempfile.TemporaryDirectory(dir=REPO_ROOT) as tmp:
        start = time.perf_counter()
        for _ in range(saves):
            path = save_checkpoint(Path(tmp) / "model.pt", model, opt)
        save_s = (time.perf_counter() - start) / saves
        size = path.stat().st_size
    share = save_s / (50 * step_s + save_s)
    print(f"GPT-124M, context 256, batch 2; {machine_line()}")
    print("| checkpoint size | seconds per checkpoint | seconds per step | share of time at --save-every 50 |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {size / 1e9:.2f} GB | {save_s:.2f} | {step_s:.2f} | {share:.1%} |")


WARMUP = 100  # nanoGPT's shakespeare-char warmup, longer than the recipe's default for 300 steps


def bench_anchor(steps: int = 300) -> None:
    """nanoGPT's CPU char model: a plain fp32 loop (non-fused AdamW, glibc defaults) vs the trainer's fast path."""
    from torch.utils.data import DataLoader

    from ch02_text.char_tokenizer import CharTokenizer
    from ch05_pretraining.previous_chapters import GPTModel, init_gpt2_weights, model_config
    from ch05_pretraining.engine.runtime import Runtime, keep_freed_memory
    from ch05_pretraining.engine.token_data import TokenWindows
    from ch05_pretraining.engine.recipe import SMALL_MODEL_RECIPE
    from ch05_pretraining.engine.schedule import lr_at
    from ch05_pretraining.engine.trainer import Trainer

    text = read_data_text("tinyshakespeare.txt")
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text[: int(0.9 * len(text))]), dtype=np.int64)
    windows = TokenWindows(ids, 0, len(ids), 64, stride=1)
    cfg = model_config("gpt2-small", vocab_size=tok.n_vocab, context_length=64, emb_dim=128, n_layers=4, n_heads=4,
                       drop_rate=0.0, tie_weights=True)

    def fresh(fused):
        torch.manual_seed(1337)
        model = init_gpt2_weights(GPTModel(cfg))
        return model, SMALL_MODEL_RECIPE.optimizer(model, 1e-3, fused=fused)

    def loader():
        torch.manual_seed(0)
        return DataLoader(windows, batch_size=12, shuffle=True, drop_last=True)

    def plain_loop():
        keep_freed_memory(False)
        model, opt = fresh(False)
        model.train()
        start = time.perf_counter()
        for i, (x, y) in enumerate(loader()):
            if i == steps:
                break
            for group in opt.param_groups:  # the same schedule as the trainer's
                group["lr"] = lr_at(i, 1e-3, WARMUP, steps, 1e-3 * SMALL_MODEL_RECIPE.min_lr_ratio)
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), SMALL_MODEL_RECIPE.grad_clip)
            opt.step()
        return time.perf_counter() - start

    def trainer_loop():
        runtime = Runtime.choose(torch.device("cpu"))
        runtime.apply(torch.device("cpu"))
        model, opt = fresh(runtime.fused_adamw)
        settings = SMALL_MODEL_RECIPE.settings(steps, 1e-3, warmup_steps=WARMUP, eval_freq=10 ** 9, sample_tokens=0,
                                               **runtime.train_settings(tok.n_vocab))
        start = time.perf_counter()
        trainer = Trainer(model, opt, loader(), loader(), "cpu", settings, log=lambda *a: None)
        trainer.fit()
        return time.perf_counter() - start

    results = {"plain fp32 loop (AdamW, glibc defaults)": [], "trainer fast path": []}
    for _ in range(2):  # alternate, so drift on a shared VM hits both
        results["plain fp32 loop (AdamW, glibc defaults)"].append(plain_loop())
        results["trainer fast path"].append(trainer_loop())
    tokens = steps * 12 * 64
    base = min(results["plain fp32 loop (AdamW, glibc defaults)"])
    print(f"char model (4x128, context 64, batch 12), {steps} steps; {machine_line()}")
    print("| loop | seconds (best of 2) | tokens/s | speed |\n| --- | ---: | ---: | ---: |")
    for name, times in results.items():
        best = min(times)
        print(f"| {name} | {best:.1f} | {tokens / best:,.0f} | {base / best:.2f}x |")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.workflow_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("prepare", "save", "anchor"))
    args = p.parse_args(argv)
    {"prepare": bench_prepare, "save": bench_save, "anchor": bench_anchor}[args.part]()


if __name__ == "__main__":
    main()
