"""Chapter 7's whole run: the book's loop and answers (train --book) against the default fast path, as whole
processes.

    python -m bench.ch07_speed                    # one epoch each, the 110 test answers (about 21 min on 2 cores)
    python -m bench.ch07_speed --max-test 11      # a tenth of the answers; the 110 projected at each side's rate

Both start from one saved initial state (``bench.timing.gpt124m_start``: the book's GPT-124M with qkv bias,
freshly initialised under seed 123, written as GPT-2's model.safetensors), on the book's instruction-data.json
(935 training, 55 validation, 110 test entries, the Alpaca prompt), and run in turn; each is timed from outside
(start-up, data, the losses before training, training with its evaluations, the loss figure, the test answers
with up to 256 new tokens each, the checkpoint) and its peak memory is its maximum resident set. The training
steps alone are the "Training completed in" minutes each prints. The book's ``generate`` reads the whole text
again for every token; after one epoch even a freshly initialised model ends most answers with its end-of-text
token, so the answers are short on both sides and training is most of the run. Each prints how long its
answers took; with ``--max-test`` the ratio for all 110 answers is also projected from each side's time per
answer (marked as such).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from bench.timing import gpt124m_start, machine_line, whole_command


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.ch07_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1, help="epochs of each run")
    p.add_argument("--max-test", type=int, default=None, help="test answers each run writes (None: all 110)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer at most (the book's 256)")
    args = p.parse_args(argv)
    print(f"machine: {machine_line()}")
    answers = [] if args.max_test is None else ["--max-test", str(args.max_test)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = gpt124m_start(Path(tmp) / "gpt124m")
        for name, extra in (("default fast path", []), ("--book (the book's loop and generate)", ["--book"])):
            seconds, peak, out = whole_command([
                "ch07_instructions.train", "--init-from", str(start), "--epochs", str(args.epochs), "--no-progress",
                "--max-new-tokens", str(args.max_new_tokens), *answers, "--out", f"{tmp}/i.pt", *extra])
            training = float(re.findall(r"Training completed in ([\d.]+) minutes", out)[-1])
            written, answering = re.findall(r"(\d+) answers written to .* in ([\d.]+) minutes", out)[-1]
            results[name] = seconds / 60, training, float(answering) / int(written)
            print(f"{name:<40} {seconds / 60:7.2f} min whole, {training:6.2f} min training, {written} answers in "
                  f"{float(answering):6.2f} min, peak {peak:6.0f} MiB", flush=True)
    (fast, fast_training, fast_answer), (book, book_training, book_answer) = results.values()
    print(f"the default path: {book / fast:.2f}x the book's whole run, {book_training / fast_training:.2f}x its "
          f"training steps, {book_answer / fast_answer:.2f}x its answers, over {args.epochs} epoch(s)")
    if args.max_test is not None and args.max_test < 110:  # the rest of the 110 answers, at each side's rate
        rest = 110 - args.max_test
        print(f"with all 110 answers at these rates: {(book + rest * book_answer) / (fast + rest * fast_answer):.2f}x "
              "(projected, not measured)")


if __name__ == "__main__":
    main()
