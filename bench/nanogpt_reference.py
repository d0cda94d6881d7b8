"""nanoGPT's own recipe for character-level tiny Shakespeare, re-run here: the README's anchor, measured.

nanoGPT's README reports a validation loss of 1.88 for its CPU recipe (4 layers, 4 heads, width 128, context
64, batch 12, 2,000 steps). This script is that recipe in nanoGPT's own form, so the number can be checked on
this machine beside ``python -m ch05_pretraining.train --tokenizer char ...``:

- the model of nanoGPT's ``model.py``: no biases (``bias=False``), exact GELU, fused ``c_attn``, SDPA, tied
  ``wte``/``lm_head``, N(0, 0.02) init with ``c_proj`` at 0.02 / sqrt(2 n_layer), in nanoGPT's module order;
- the loop of nanoGPT's ``train.py``: ``torch.manual_seed(1337)``, random windows from ``torch.randint``,
  AdamW (0.9, 0.99) with decay on tensors of 2+ dimensions, warmup ``lr * (it + 1) / (warmup + 1)`` then cosine
  to 1e-4, clip 1.0, the next batch drawn between forward and backward, fp32 on a CPU;
- its loss estimate: the mean over ``eval_iters = 20`` random batches of each split, at every 250th step.

    python -m bench.nanogpt_reference                     # seed 1337, as nanoGPT
    python -m bench.nanogpt_reference --seeds 1337 123    # the spread between seeds

For each seed it runs, as whole processes in turn, nanoGPT's loop and the README's
``python -m ch05_pretraining.train --tokenizer char ...`` command with that seed, and prints both one above the
other: the last loss estimates, the loss over the whole validation split (every window of 64 that starts at a
multiple of 64: the figure that does not depend on which 20 batches were drawn) and the seconds per process.
Last, one forward and backward of each model on the same batch, alternating in one process: the cost of the
model alone.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.timing import machine_line
from ch02_text.data_files import read_data_text
from ch02_text.paths import REPO_ROOT

N_LAYER, N_HEAD, N_EMBD, BLOCK_SIZE, BATCH_SIZE = 4, 4, 128, 64, 12
MAX_ITERS, WARMUP_ITERS, LR, MIN_LR = 2000, 100, 1e-3, 1e-4
EVAL_INTERVAL, EVAL_ITERS, WEIGHT_DECAY, BETAS, GRAD_CLIP = 250, 20, 0.1, (0.9, 0.99), 1.0


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm: a weight and, with ``bias=False``, no bias."""

    def __init__(self, ndim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False)
        self.c_proj = nn.Linear(N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(N_EMBD, dim=2)
        q, k, v = (z.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2) for z in (q, k, v))  # (b, heads, t, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = LayerNorm(N_EMBD), CausalSelfAttention(), LayerNorm(N_EMBD), MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's ``GPT`` for this recipe (dropout 0, so no dropout modules)."""

    def __init__(self, vocab_size):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, N_EMBD), wpe=nn.Embedding(BLOCK_SIZE, N_EMBD),
            h=nn.ModuleList([Block() for _ in range(N_LAYER)]), ln_f=LayerNorm(N_EMBD)))
        self.lm_head = nn.Linear(N_EMBD, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * N_LAYER))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1))
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def char_splits() -> tuple[np.ndarray, np.ndarray, int]:
    """nanoGPT's ``data/shakespeare_char/prepare.py``: sorted characters, first 90 % train, the rest val."""
    text = read_data_text("tinyshakespeare.txt")
    stoi = {ch: i for i, ch in enumerate(sorted(set(text)))}
    ids = np.array([stoi[ch] for ch in text], dtype=np.uint16)
    n = int(len(ids) * 0.9)
    return ids[:n], ids[n:], len(stoi)


def get_batch(data: np.ndarray):
    ix = torch.randint(len(data) - BLOCK_SIZE, (BATCH_SIZE,))
    x = torch.stack([torch.from_numpy(data[i:i + BLOCK_SIZE].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + BLOCK_SIZE].astype(np.int64)) for i in ix])
    return x, y


def get_lr(it: int) -> float:
    if it < WARMUP_ITERS:
        return LR * (it + 1) / (WARMUP_ITERS + 1)
    if it > MAX_ITERS:
        return MIN_LR
    ratio = (it - WARMUP_ITERS) / (MAX_ITERS - WARMUP_ITERS)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


@torch.no_grad()
def estimate_loss(model, splits) -> dict[str, float]:
    model.eval()
    out = {name: float(np.mean([model(*get_batch(data)).item() for _ in range(EVAL_ITERS)]))
           for name, data in splits.items()}
    model.train()
    return out


@torch.no_grad()
def whole_split_loss(model, data: np.ndarray) -> float:
    """Mean loss over every window of BLOCK_SIZE starting at a multiple of BLOCK_SIZE (no randomness)."""
    model.eval()
    n = (len(data) - 1) // BLOCK_SIZE
    x = torch.from_numpy(data[:n * BLOCK_SIZE].astype(np.int64)).view(n, BLOCK_SIZE)
    y = torch.from_numpy(data[1:n * BLOCK_SIZE + 1].astype(np.int64)).view(n, BLOCK_SIZE)
    losses = [model(x[i:i + 256], y[i:i + 256]).item() * len(x[i:i + 256]) for i in range(0, n, 256)]
    return sum(losses) / n


def run(seed: int, verbose: bool = True) -> dict[str, float]:
    """nanoGPT's ``train.py`` loop with this recipe; returns its last estimate, the whole-split loss and seconds."""
    torch.manual_seed(seed)
    train, val, vocab_size = char_splits()
    model = NanoGPT(vocab_size)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=BETAS)
    start = time.perf_counter()
    x, y = get_batch(train)
    for it in range(MAX_ITERS + 1):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it)
        if it % EVAL_INTERVAL == 0:
            losses = estimate_loss(model, {"train": train, "val": val})
            if verbose:
                print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
        if it == MAX_ITERS:  # nanoGPT takes one more step here, whose result it never evaluates
            break
        loss = model(x, y)
        x, y = get_batch(train)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {"train": losses["train"], "val": losses["val"], "val_whole": whole_split_loss(model, val),
            "seconds": seconds}


def checkpoint_whole_split_loss(path: str) -> float:
    """The same whole-split validation loss for a checkpoint of ``python -m ch05_pretraining.train``."""
    from ch05_pretraining.checkpoint import model_from_checkpoint
    from ch05_pretraining.previous_chapters import tokenizer_from_dict

    model, ckpt = model_from_checkpoint(path)
    text = read_data_text("tinyshakespeare.txt")
    ids = np.array(tokenizer_from_dict(ckpt["tokenizer"]).encode(text), dtype=np.int64)
    val = ids[int(len(ids) * 0.9):]

    class Loss(nn.Module):  # the checkpoint's model, called as nanoGPT's: (idx, targets) -> loss
        def forward(self, idx, targets):
            return F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())

    return whole_split_loss(Loss(), val)


OURS = ("ch05_pretraining.train --data tinyshakespeare.txt --tokenizer char --stride 1 --n-layers 4 --n-heads 4 "
        "--emb-dim 128 --context-length 64 --batch-size 12 --max-steps 2000 --lr 1e-3 --warmup-steps 100 --min-lr 1e-4 "
        "--drop-rate 0 --grad-clip 1.0 --weight-decay 0.1 --decay matrices --tie-weights --init gpt2 --beta2 0.99 "
        "--eval-freq 250 --eval-iter 20 --start-context ROMEO:").split()  # the README's command, less seed and out


def whole_process(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def compare(seed: int, tmp: Path) -> list[tuple[str, float, float, float, float]]:
    """nanoGPT's loop, then the README's train command, as whole processes in turn: (name, train, val, whole, s)."""
    seconds, out = whole_process(["bench.nanogpt_reference", "--seeds", str(seed), "--json"])
    ref = json.loads(out.strip().splitlines()[-1])
    ckpt = tmp / f"char_{seed}.pt"
    seconds_ours, out = whole_process([*OURS, "--seed", str(seed), "--out", str(ckpt)])
    last = [line for line in out.splitlines() if "Val loss" in line][-1]
    train, val = (float(v) for v in re.findall(r"loss (\d+\.\d+)", last))
    return [("nanoGPT's train.py loop (plain fp32)", ref["train"], ref["val"], ref["val_whole"], seconds),
            ("python -m ch05_pretraining.train", train, val, checkpoint_whole_split_loss(str(ckpt)), seconds_ours)]


def step_costs(reps: int = 6, steps: int = 60) -> dict[str, float]:
    """Milliseconds of one forward + backward, nanoGPT's model against the book's GPT (fast layers), same batch,
    alternating in one process (best of ``reps``): what the model alone adds to a step."""
    from ch05_pretraining.previous_chapters import GPTModel, init_gpt2_weights, model_config

    torch.manual_seed(0)
    _, _, vocab_size = char_splits()
    cfg = model_config("gpt2-small", vocab_size=vocab_size + 1, context_length=BLOCK_SIZE, emb_dim=N_EMBD,
                       n_layers=N_LAYER, n_heads=N_HEAD, drop_rate=0.0, tie_weights=True)
    book, ref = init_gpt2_weights(GPTModel(cfg)), NanoGPT(vocab_size)
    x, y = torch.randint(0, vocab_size, (2, BATCH_SIZE, BLOCK_SIZE))
    steps_of = {"nanoGPT's model": lambda: ref(x, y).backward(),
                "the book's GPT": lambda: F.cross_entropy(book(x).flatten(0, 1), y.flatten()).backward()}
    best = {name: float("inf") for name in steps_of}
    for _ in range(reps):
        for name, step in steps_of.items():
            for _ in range(5):
                step()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / steps * 1e3)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nanogpt_reference", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337], help="one run per seed")
    parser.add_argument("--json", action="store_true", help="only nanoGPT's loop, its result as one JSON line")
    args = parser.parse_args(argv)
    if args.json:
        for seed in args.seeds:
            print(json.dumps(run(seed, verbose=False)))
        return
    with tempfile.TemporaryDirectory(dir=REPO_ROOT) as tmp:
        rows = [(seed, *row) for seed in args.seeds for row in compare(seed, Path(tmp))]
    print(f"nanoGPT's CPU recipe, {MAX_ITERS} steps, whole processes in turn; {machine_line()}")
    print("| seed | run | train loss (20 batches) | val loss (20 batches) | val loss (whole split) | seconds |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for seed, name, train, val, whole, seconds in rows:
        print(f"| {seed} | {name} | {train:.3f} | {val:.3f} | {whole:.3f} | {seconds:.0f} |")
    costs = step_costs()
    base = costs["nanoGPT's model"]
    print("\n| one forward + backward, batch 12 x 64 | ms | against nanoGPT's |\n| --- | ---: | ---: |")
    for name, ms in costs.items():
        print(f"| {name} | {ms:.1f} | {ms / base:.2f}x |")


if __name__ == "__main__":
    main()
