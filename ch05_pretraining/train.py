"""``python -m ch05_pretraining.train``: pretrain a GPT on a text file, resumably.

Defaults reproduce the book's run (GPT-124M, context 256, the-verdict 90/10 split,
batch 2, AdamW lr 4e-4 wd 0.1, 10 epochs, eval every 5 steps over 5 batches, seed 123)
on the fast path: the model's fast layers (fused-QKV SDPA attention, fused LayerNorm and
GELU), bf16 autocast where the CPU/GPU supports it, fused AdamW, threads = physical cores,
glibc keeping freed memory. ``--book`` runs the book's exact loop settings instead (same
printed losses as ``python -m ch05_pretraining``).
``--data`` takes a UTF-8 text file or a token file from ``python -m ch05_pretraining.prepare``.
Under ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel
(``--batch-size`` is per process).

    python -m ch05_pretraining.train                          # the book's run, fast path
    python -m ch05_pretraining.train --epochs 2 --out checkpoints/run.pt
    python -m ch05_pretraining.train --resume checkpoints/run.pt --epochs 4
    python -m ch05_pretraining.train --data my_corpus.txt --context-length 512 --warmup-steps 100 \\
        --min-lr 4e-5 --grad-clip 1.0 --grad-accum 4

Ctrl-C stops at the next step boundary and writes a resumable checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from torch.utils.data import DataLoader, DistributedSampler

from .checkpoint import CheckpointError, apply_checkpoint, read_checkpoint, save_checkpoint, set_rng_state
from .previous_chapters import (
    GPTDatasetV1, UserInputError, add_device_argument, cli_errors, find_data_file,
    gpt2_tokenizer, model_config, pick_device, read_text_file, save_figure, set_seed,
)
from .token_data import MemmapWindows, TokenFile
from .trainer import StopRequest, Trainer, TrainSettings, TrainState
from .training import plot_losses

TOKENIZER_NAME = "gpt2"


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m ch05_pretraining.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--data", default=None,
                      help="UTF-8 text file to train on (default: the-verdict.txt from data/ or $LLMS_DATA_DIR)")
    data.add_argument("--train-ratio", type=float, default=0.90, help="share of characters for training (0.90)")
    model = p.add_argument_group("model")
    model.add_argument("--preset", default="gpt2-small", help="gpt2-small|gpt2-medium|gpt2-large|gpt2-xl")
    model.add_argument("--context-length", type=int, default=256, help="tokens per window (book: 256)")
    model.add_argument("--emb-dim", type=int, help="override the preset's embedding size")
    model.add_argument("--n-layers", type=int, help="override the preset's layer count")
    model.add_argument("--n-heads", type=int, help="override the preset's head count")
    model.add_argument("--drop-rate", type=float, default=0.1, help="dropout rate (0.1)")
    model.add_argument("--tie-weights", action="store_true", help="share token embedding and output head")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=2)
    opt.add_argument("--epochs", type=int, default=10, help="total epochs (with --resume: the new total)")
    opt.add_argument("--lr", type=float, default=4e-4, help="peak learning rate (0.0004)")
    opt.add_argument("--weight-decay", type=float, default=0.1)
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps (0)")
    opt.add_argument("--min-lr", type=float, default=None,
                     help="cosine-decay the rate to this floor after warmup (default: constant rate)")
    opt.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    opt.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (1)")
    ev = p.add_argument_group("evaluation and output")
    ev.add_argument("--eval-freq", type=int, default=5, help="evaluate every N optimizer steps (5)")
    ev.add_argument("--eval-iter", type=int, default=5, help="batches per evaluation (5)")
    ev.add_argument("--start-context", default="Every effort moves you", help="prompt for the per-epoch sample")
    ev.add_argument("--out", default="checkpoints/model.pt", help="checkpoint to write (checkpoints/model.pt)")
    ev.add_argument("--plot", default=None, help="loss plot PNG (default: next to --out, .png)")
    ev.add_argument("--resume", default=None, help="continue the run saved in this checkpoint")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=123)
    add_device_argument(run)
    run.add_argument("--book", action="store_true",
                     help="the book's exact loop: the book's layers, fp32, plain AdamW, glibc's default allocator")
    run.add_argument("--no-amp", action="store_true", help="fast path without bf16 autocast")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the model (opt-in: measured slower on CPU here, see bench/README.md)")
    return p


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def keep_freed_memory(keep: bool = True) -> bool:
    """Ask glibc to serve big blocks from its heap instead of fresh mmap()s, and not to trim it.

    Every training step frees and re-allocates the same large tensors (the 50257x768 embedding
    gradient, the logits). With glibc's defaults each one is a new mmap whose pages fault in
    again on every step; reusing heap memory avoids that (measured in bench/train_speed.py).
    ``keep=False`` restores glibc's default thresholds. Linux/glibc only; elsewhere a no-op.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    # mallopt takes a C int: the largest trim threshold is 2**31 - 1 (a bigger Python int
    # would wrap around to 0 and make glibc trim after every free).
    mmap_max, trim = (0, 2 ** 31 - 1) if keep else (65536, 128 * 1024)
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))
    except (OSError, AttributeError):
        return False


def physical_cores() -> int:
    """Physical cores (hyper-threads share a core's matmul units), from /proc/cpuinfo."""
    cores, phys = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "physical id":
                    phys = value.strip()
                elif key.strip() == "core id":
                    cores.add((phys, value.strip()))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def load_datasets(args, tokenizer, context_length):
    """(path, train dataset, val dataset) from a prepared .bin token file or a UTF-8 text file
    (the book's 90/10 character split); each split must hold at least one window."""
    if args.data and Path(args.data).suffix == ".bin":
        token_file = TokenFile(args.data)
        splits = {"training": "train", "validation": "val"}
        datasets = {name: MemmapWindows(token_file, split, context_length) for name, split in splits.items()}
        for name, ds in datasets.items():
            if len(ds) == 0:
                start, end = token_file.split(splits[name])
                raise UserInputError(
                    f"the {name} split of '{args.data}' has {end - start} tokens, too few for one window of "
                    f"--context-length {context_length}: lower it or prepare with another --val-fraction")
        return Path(args.data), datasets["training"], datasets["validation"]

    path = Path(args.data) if args.data else find_data_file("the-verdict.txt")
    text = read_text_file(path)
    if not 0.0 < args.train_ratio < 1.0:
        raise UserInputError(f"--train-ratio must be between 0 and 1, got {args.train_ratio}")
    split_idx = int(args.train_ratio * len(text))
    datasets = {}
    for name, part in (("training", text[:split_idx]), ("validation", text[split_idx:])):
        try:
            datasets[name] = GPTDatasetV1(part, tokenizer, context_length, context_length)
        except ValueError:  # too short for one window: say it in the CLI's terms
            n = len(tokenizer.encode(part, allowed_special={"<|endoftext|>"}))
            what = "is empty" if n == 0 else f"has {n} tokens"
            raise UserInputError(
                f"the {name} split of '{path.name}' {what}, but --context-length {context_length} needs "
                f"at least {context_length + 1}: lower --context-length, change --train-ratio or use more text"
            ) from None
    return path, datasets["training"], datasets["validation"]


def make_loaders(args, train_ds, val_ds, rank=0, world_size=1, seed=123):
    """The book's loaders (shuffled, drop_last training; ordered validation); with several
    processes each rank gets its own shard of every epoch's permutation."""
    if world_size > 1:
        sampler = DistributedSampler(train_ds, num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=seed, drop_last=True)
        train_loader = DataLoader(train_ds, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    else:
        train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, shuffle=False, drop_last=False)
    if len(train_loader) == 0:
        raise UserInputError(
            f"the training split has {len(train_ds)} window(s), fewer than one batch of {args.batch_size} "
            f"per process: lower --batch-size or --context-length, or use more data")
    return train_loader, val_loader


def init_distributed(device):
    """Under torchrun (WORLD_SIZE > 1) join the process group: gloo on CPU, nccl on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def build_model_config(args):
    overrides = {k: v for k, v in (("emb_dim", args.emb_dim), ("n_layers", args.n_layers),
                                   ("n_heads", args.n_heads)) if v is not None}
    return model_config(args.preset, context_length=args.context_length, drop_rate=args.drop_rate,
                        tie_weights=args.tie_weights, impl="book" if args.book else "fast",
                        **overrides)


def make_optimizer(model, args, device):
    kwargs = dict(lr=args.lr, weight_decay=args.weight_decay)
    if not args.book:
        kwargs["fused"] = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.parameters(), **kwargs)


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        return run(args)


def run(args):
    from .previous_chapters import GPTModel

    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or physical_cores())
        if not args.book:
            keep_freed_memory()
    tokenizer = gpt2_tokenizer()
    resume = None
    if args.resume:
        resume = read_checkpoint(args.resume, map_location=device)
        cfg = resume["config"]
        if resume["tokenizer"] != TOKENIZER_NAME:
            raise CheckpointError(f"checkpoint '{args.resume}' uses tokenizer {resume['tokenizer']!r}, not gpt2")
    else:
        cfg = build_model_config(args)
    settings = TrainSettings(
        epochs=args.epochs, eval_freq=args.eval_freq, eval_iter=args.eval_iter, lr=args.lr,
        warmup_steps=args.warmup_steps, min_lr=args.min_lr, grad_clip=args.grad_clip,
        grad_accum=args.grad_accum, start_context=args.start_context,
        amp_dtype=torch.bfloat16 if (not args.book and not args.no_amp and bf16_supported(device)) else None)
    if args.batch_size < 1 or cfg["context_length"] < 1:
        raise UserInputError("--batch-size and --context-length must be >= 1")

    rank, world_size, device = init_distributed(device)
    is_main = rank == 0
    data_path, train_ds, val_ds = load_datasets(args, tokenizer, cfg["context_length"])
    set_seed(args.seed)
    train_loader, val_loader = make_loaders(args, train_ds, val_ds, rank, world_size, args.seed)

    set_seed(args.seed)
    model = GPTModel(cfg).to(device)
    optimizer = make_optimizer(model, args, device)
    state = None
    if resume is not None:
        apply_checkpoint(resume, model, optimizer, f"checkpoint '{args.resume}'")
        state = TrainState.from_dict(resume["trainer_state"])
        if state.rng_now is not None:
            set_rng_state(state.rng_now)
        if state.epoch >= args.epochs:
            raise UserInputError(f"checkpoint '{args.resume}' already finished {state.epoch} epochs: "
                                 f"pass --epochs larger than {state.epoch} to train on")

    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        set_seed(args.seed + rank)  # different dropout masks per process, same weights (DDP broadcasts)
        model_for_training = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        model_for_training = model
    if args.compile:
        model_for_training = torch.compile(model_for_training)
    out = Path(args.out)
    plot_path = Path(args.plot) if args.plot else out.with_suffix(".png")
    n_params = sum(p.numel() for p in model.parameters())
    if not is_main:
        return _train_worker(args, model_for_training, optimizer, train_loader, val_loader, device, settings,
                             tokenizer, state)
    print(f"model: {n_params:,} parameters, {cfg['n_layers']} layers, context {cfg['context_length']}, "
          f"{cfg['impl']} layers, {'bf16 autocast' if settings.amp_dtype else 'fp32'}, device {device}"
          + (f", {world_size} processes" if world_size > 1 else ""))
    print(f"data: {data_path.name}: {len(train_loader)} training batches of {args.batch_size}x"
          f"{cfg['context_length']} tokens, {len(val_loader)} validation batches")

    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=settings.epochs * len(train_loader) * args.batch_size * cfg["context_length"],
                        initial=0 if state is None else
                        (state.epoch * len(train_loader) + state.batch_in_epoch) * args.batch_size
                        * cfg["context_length"],
                        unit="tok", unit_scale=True, dynamic_ncols=True, file=sys.stderr)
    log = progress.write if progress is not None else print
    trainer = Trainer(model_for_training, optimizer, train_loader, val_loader, device, settings,
                      tokenizer=tokenizer, log=log, progress=progress)
    stop = StopRequest()
    start_time, start_tokens = time.perf_counter(), 0 if state is None else state.tokens_seen
    try:
        with stop.installed():
            state = trainer.fit(state, stop=stop)
    finally:
        if progress is not None:
            progress.close()
    save_checkpoint(out, model, optimizer, step=state.global_step + 1, epoch=state.epoch,
                    tokenizer=TOKENIZER_NAME, trainer_state=state.to_dict(), rng=state.rng_now)
    if stop.requested:
        print(f"interrupted: saved a resumable checkpoint to {out} "
              f"(continue with --resume {out} --epochs {args.epochs})", file=sys.stderr)
        raise SystemExit(130)
    if state.train_losses:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs_seen = torch.linspace(0, settings.epochs, len(state.train_losses))
        fig = plot_losses(epochs_seen, state.track_tokens_seen, state.train_losses, state.val_losses)
        save_figure(fig, plot_path.name, plot_path.parent)
        plt.close(fig)
    elapsed = time.perf_counter() - start_time
    print(f"trained {state.tokens_seen - start_tokens:,} tokens in {elapsed / 60:.2f} minutes "
          f"({(state.tokens_seen - start_tokens) / elapsed:.0f} tokens/s); "
          f"saved checkpoint {out} and loss plot {plot_path}")
    return state


def _train_worker(args, model, optimizer, train_loader, val_loader, device, settings, tokenizer, state):
    """Ranks > 0 of a torchrun job: train in step with rank 0, log and save nothing."""
    trainer = Trainer(model, optimizer, train_loader, val_loader, device, settings, tokenizer=tokenizer,
                      log=lambda *_: None, is_main=False)
    stop = StopRequest()
    with stop.installed():
        return trainer.fit(state, stop=stop)


if __name__ == "__main__":
    main()
