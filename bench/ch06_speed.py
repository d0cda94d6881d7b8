"""Chapter 6's whole run: the book's loop (train --book) against the default fast path, as whole processes.

    python -m bench.ch06_speed                 # the book's 5 epochs each (an hour or more on 2 cores)
    python -m bench.ch06_speed --epochs 1      # one epoch each

Both start from one saved initial state (``bench.timing.gpt124m_start``: the book's GPT-124M with qkv bias,
freshly initialised under seed 123, written as GPT-2's model.safetensors), on the SMS Spam Collection, and run in
turn; each is timed from outside (start-up, data, training, every evaluation and the final
accuracies included) and its peak memory is its maximum resident set. The fast path's frozen blocks run once
per text (a cache of their outputs), the rest under bf16 autocast where the processor has it.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from bench.timing import gpt124m_start, machine_line, whole_command


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.ch06_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5, help="epochs of each run (the book's 5)")
    args = p.parse_args(argv)
    print(f"machine: {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        start = gpt124m_start(Path(tmp) / "gpt124m")
        results = {}
        for name, extra in (("default fast path", []), ("--book (the book's loop)", ["--book"])):
            seconds, peak, out = whole_command(["ch06_classification.train", "--init-from", str(start), "--epochs",
                                                str(args.epochs), "--no-progress", "--out", f"{tmp}/c.pt", *extra])
            test = re.findall(r"Test accuracy: ([\d.]+)%", out)[-1]
            results[name] = seconds
            print(f"{name:<28} {seconds / 60:7.2f} min  peak {peak:6.0f} MiB  test accuracy {test} %", flush=True)
    fast, book = results.values()
    print(f"the default path: {book / fast:.2f}x the book's loop over {args.epochs} epoch(s)")


if __name__ == "__main__":
    main()
