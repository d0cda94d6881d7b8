"""``python -m ch05_pretraining.prepare``: tokenize a text file or a folder of them for training.

    python -m ch05_pretraining.prepare --input my_corpus/ --out data/corpus.bin
    python -m ch05_pretraining.train --data data/corpus.bin --context-length 512

Files are tokenized in parallel with GPT-2's BPE (tiktoken), each followed by
``<|endoftext|>``, and written as uint16 ids to ``--out`` with a JSON header beside it
(``data/corpus.json``: tokenizer, token count, train/val split). Training then streams
random windows from it through ``numpy.memmap`` without loading it into memory.
"""

from __future__ import annotations

import argparse
import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from .previous_chapters import UserInputError, cli_errors, gpt2_tokenizer
from .token_data import DTYPES, write_token_file


def list_text_files(input_path, pattern="*.txt") -> list[Path]:
    path = Path(input_path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserInputError(f"input '{path}' does not exist: give a text file or a folder of them")
    files = sorted(p for p in path.rglob(pattern) if p.is_file())
    if not files:
        raise UserInputError(f"folder '{path}' has no {pattern} files: check --input and --glob")
    return files


def tokenize_file(path) -> np.ndarray:
    """GPT-2 ids of one UTF-8 file plus <|endoftext|>; a non-UTF-8 file is named in the error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"file '{path}' is not UTF-8 (byte {exc.start}): convert it first") from None
    tok = gpt2_tokenizer()
    return np.array(tok.encode_ordinary(text) + [tok.eot_token], dtype=np.int64)


def tokenize_files(files, workers=1, encode=tokenize_file):
    if workers <= 1 or len(files) == 1:
        return [encode(f) for f in files]
    with Pool(workers) as pool:
        return pool.map(encode, files)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ch05_pretraining.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="a UTF-8 text file or a folder (searched recursively)")
    p.add_argument("--out", required=True, help="token file to write, e.g. data/corpus.bin")
    p.add_argument("--glob", default="*.txt", help="file pattern inside a folder (*.txt)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last share of tokens for validation (0.1)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="uint16", help="uint16 fits GPT-2's 50257 ids")
    args = p.parse_args(argv)
    with cli_errors():
        if not 0.0 <= args.val_fraction < 1.0:
            raise UserInputError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
        files = list_text_files(args.input, args.glob)
        arrays = tokenize_files(files, args.workers or os.cpu_count() or 1)
        header = write_token_file(args.out, arrays, [str(f) for f in files], args.val_fraction, args.dtype)
        train, val = header["split"]["train"], header["split"]["val"]
        print(f"wrote {header['count']:,} tokens from {len(files)} file(s) to {args.out} "
              f"(train {train[1] - train[0]:,}, val {val[1] - val[0]:,}; header {Path(args.out).with_suffix('.json')})")
        return header


if __name__ == "__main__":
    main()
