"""Saving the chapter-5 checkpoint (GPT-124M weights and AdamW state, 2 GB): how ``save_checkpoint`` writes it
against plain ``torch.save``.

    python -m bench.checkpoint_speed                  # in the system's temp folder
    python -m bench.checkpoint_speed --dir checkpoints # on the disk the train CLI writes to

Each variant writes the same state to a new file, fsyncs it and deletes it, in alternating rounds:

- ``torch.save`` into a plain file with the zip format's CRC-32 of every record (PyTorch's default; how
  ``save_checkpoint`` wrote before);
- the same without the CRC-32s, which ``torch.load`` never checks;
- ``save_checkpoint``'s way: no CRC-32s, through ``DirectWriter`` (``O_DIRECT``: past the page cache).

Each write starts ``--pause`` seconds after the last one, as the train CLI's final checkpoint comes minutes
after anything of its size: on a virtual machine whose freed pages go back to the host, 2 GB through the page
cache then find 2 GB of pages the host must back again (without the pause, freed pages are reused at once
and a write through the page cache is nearly as fast as one past it). The first round is printed apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from bench.timing import machine_line
from ch02_text.safe_files import DirectWriter
from ch05_pretraining.checkpoint import without_zip_checksums
from ch05_pretraining.engine.runtime import physical_cores
from ch05_pretraining.engine.trainer import make_optimizer
from ch05_pretraining.previous_chapters import GPT_CONFIG_124M, GPTModel


def book_state() -> dict:
    """The chapter-5 model and its AdamW state after one step, as the train CLI's checkpoint holds them."""
    torch.manual_seed(123)
    model = GPTModel({**GPT_CONFIG_124M, "context_length": 256})
    optimizer = make_optimizer(model, fused=True)
    model(torch.zeros(1, 4, dtype=torch.long)).float().mean().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def plain(state, path, checksums: bool):
    with open(path, "wb") as f:
        if checksums:
            torch.save(state, f)
        else:
            with without_zip_checksums():
                torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def direct(state, path):
    with open(path, "wb") as f, DirectWriter(f.fileno()) as writer, without_zip_checksums():
        torch.save(state, writer)
        writer.finish()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.checkpoint_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=tempfile.gettempdir(),
                   help="folder to write the test files in (default: the system's temp folder)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    p.add_argument("--pause", type=float, default=15.0, help="seconds between writes (default: 15)")
    args = p.parse_args(argv)
    torch.set_num_threads(physical_cores())
    state = book_state()
    size = sum(t.numel() * t.element_size() for t in state["model"].values())
    size += sum(t.numel() * t.element_size() for s in state["optimizer"]["state"].values() for t in s.values())
    variants = {"torch.save with CRC-32s (before)": lambda path: plain(state, path, True),
                "torch.save without CRC-32s": lambda path: plain(state, path, False),
                "save_checkpoint's way (no CRC-32s, O_DIRECT)": lambda path: direct(state, path)}
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, save in variants.items():
            path = os.path.join(args.dir, f".checkpoint_speed.{os.getpid()}.pt")
            time.sleep(args.pause)
            start = time.perf_counter()
            try:
                save(path)
                times[name].append(time.perf_counter() - start)
            finally:
                if os.path.exists(path):
                    os.remove(path)
    print(f"machine: {machine_line()}; {size / 1e9:.2f} GB of tensors, written in {args.dir}")
    for name, t in times.items():
        rest = t[1:] or t
        print(f"{name:46s} first {t[0]:5.2f} s, then median {statistics.median(rest):5.2f} s "
              f"({size / statistics.median(rest) / 1e9:.1f} GB/s)")


if __name__ == "__main__":
    main()
