"""The whole training run, not only its steps: the book's chapter-5 run as whole processes, in turn.

    python -m bench.whole_run                   # book loop, then the train CLI in three ways
    python -m bench.whole_run --epochs 2        # a shorter check

Each variant is a fresh ``python`` process timed from start to exit (imports, data, model, training,
evaluation, samples, plot, saving): what a reader waits for.

- ``book``: the chapter's run as the book's code does it: ``train_model_simple`` with the book's layers
  (seed 123, AdamW lr 4e-4 wd 0.1, 10 epochs, evaluation every 5 steps over 5 batches), the loss plot,
  then ``torch.save(model.state_dict(), "model.pth")``.
- ``cli``: ``python -m ch05_pretraining.train --breakdown``, the default (fast path, the book's dropout masks
  drawn ahead of each step on two cores).
- ``cli, masks one by one``: the default with each dropout mask drawn when its layer asks, on one core
  (as before the masks were drawn ahead on two cores); the same masks, so the same losses.
- ``cli --own-dropout``: the same with dropout masks from the model's own generator.

The CLI's runs also save the resumable checkpoint (weights and AdamW state, 2 GB for GPT-124M), which
the book's run does not. The matmul peak (bf16 and fp32) is measured in this process before and
after the runs; MFU = training tokens x training FLOPs per token / seconds / peak of the run's dtype.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.timing import machine_line
from bench.train_speed import matmul_peak
from ch02_text.hardware import bf16_supported
from ch05_pretraining.previous_chapters import GPT_CONFIG_124M, estimate, model_config
from ch05_pretraining.engine.runtime import physical_cores

EVAL_LINE = re.compile(r"Train loss ([\d.]+), Val loss ([\d.]+)")


def book_run(out_dir: Path, epochs: int) -> None:
    """The chapter's training run with the book's code, as a reader's script runs it."""
    from ch05_pretraining.book_loop import plot_losses, train_model_simple
    from ch02_text.data_files import read_data_text
    from ch02_text.figures import save_figure
    from ch05_pretraining.previous_chapters import GPTModel, create_dataloader_v1, gpt2_tokenizer

    text_data = read_data_text("the-verdict.txt")
    split_idx = int(0.90 * len(text_data))
    torch.manual_seed(123)
    ctx = GPT_CONFIG_124M["context_length"] = 256
    train_loader = create_dataloader_v1(text_data[:split_idx], batch_size=2, max_length=ctx, stride=ctx,
                                        drop_last=True, shuffle=True, num_workers=0)
    val_loader = create_dataloader_v1(text_data[split_idx:], batch_size=2, max_length=ctx, stride=ctx,
                                      drop_last=False, shuffle=False, num_workers=0)
    torch.manual_seed(123)
    model = GPTModel({**GPT_CONFIG_124M, "context_length": ctx}, impl="book")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=epochs, eval_freq=5, eval_iter=5,
        start_context="Every effort moves you", tokenizer=gpt2_tokenizer())
    epochs_seen = torch.linspace(0, epochs, len(train_losses))
    save_figure(plot_losses(epochs_seen, tokens_seen, train_losses, val_losses), "loss.png", out_dir)
    torch.save(model.state_dict(), out_dir / "model.pth")


def run_process(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, done.stdout


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.whole_run", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="epochs of every run (10)")
    p.add_argument("--child", choices=["book", "one-by-one"], help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.child == "one-by-one":  # the train CLI with PyTorch's dropout drawing each mask as asked
        import ch05_pretraining.train as train

        train.use_prefetched_dropout = lambda model: None
        sys.argv = [sys.argv[0], *rest, "--epochs", str(args.epochs)]
        return train.main()  # argv None: its breakdown counts Python's start-up, as the CLI's own run does
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.child == "book":
        torch.set_num_threads(physical_cores())
        return book_run(Path(args.out_dir), args.epochs)

    torch.set_num_threads(physical_cores())
    has_bf16 = bf16_supported(torch.device("cpu"))
    print(f"machine: {machine_line()}; bf16 instructions: {has_bf16}")
    # without bf16 instructions a bf16 matmul is emulated (minutes for the peak's matmuls): fp32 only
    dtypes = (torch.bfloat16, torch.float32) if has_bf16 else (torch.float32,)
    peaks = {dtype: [matmul_peak(dtype)] for dtype in dtypes}
    flops_per_token = estimate(model_config("gpt2-small", context_length=256))["train_flops_per_token"]
    tokens = 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        epochs = ["--epochs", str(args.epochs)]
        runs = [("book loop (train_model_simple, book layers, fp32)",
                 ["-m", "bench.whole_run", "--child", "book", "--out-dir", tmp, *epochs]),
                ("train CLI", ["-m", "ch05_pretraining.train", "--breakdown", "--no-progress", "--out",
                               f"{tmp}/t.pt", *epochs]),
                ("train CLI, masks one by one", ["-m", "bench.whole_run", "--child", "one-by-one", "--breakdown",
                                                 "--no-progress", "--out", f"{tmp}/o.pt", *epochs]),
                ("train CLI --own-dropout", ["-m", "ch05_pretraining.train", "--breakdown", "--own-dropout",
                                             "--no-progress", "--out", f"{tmp}/f.pt", *epochs])]
        for name, command in runs:
            seconds, out = run_process(command)
            train_loss, val_loss = EVAL_LINE.findall(out)[-1]
            trained = re.search(r"trained ([\d,]+) tokens", out)
            tokens = int(trained[1].replace(",", "")) if trained else tokens
            results.append((name, seconds, float(train_loss), float(val_loss), out))
            print(f"{name}: {seconds:.1f} s, final train loss {train_loss}, val loss {val_loss}", flush=True)
    for dtype in dtypes:
        peaks[dtype].append(matmul_peak(dtype))
    peak = {dtype: max(values) for dtype, values in peaks.items()}
    dtype = dtypes[0]  # what the CLI trains in
    print("\nmatmul peak: " + ", ".join(f"{str(d)[6:]} {peak[d] / 1e9:.0f} GFLOP/s" for d in dtypes)
          + f"; training FLOPs per token {flops_per_token / 1e6:.0f} M; {tokens:,} training tokens\n")
    book_seconds = results[0][1]
    print("| run | whole process (s) | speed vs book loop | final train / val loss | "
          f"MFU of the whole run ({'bf16' if dtype == torch.bfloat16 else 'fp32'} peak) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, train_loss, val_loss, _ in results:
        run_dtype = dtype if "CLI" in name else torch.float32
        mfu = tokens * flops_per_token / seconds / peak[run_dtype]
        print(f"| {name} | {seconds:.1f} | {book_seconds / seconds:.2f}x | {train_loss:.3f} / {val_loss:.3f} | "
              f"{100 * mfu:.1f} % |")
    for name, _, _, _, out in results[1:]:
        print(f"\n{name}:\n" + out[out.index("breakdown of the whole run:"):].rstrip())


if __name__ == "__main__":
    main()
