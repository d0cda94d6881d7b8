"""python -m ch05_pretraining.prepare: tokenize a text file or a folder of them for training.

    python -m ch05_pretraining.prepare --input my_corpus/ --out data/corpus.bin
    python -m ch05_pretraining.train --data data/corpus.bin --context-length 512

Files are tokenized in parallel with GPT-2's BPE (tiktoken), each followed by
<|endoftext|>, and written as uint16 ids to --out with a JSON header beside it
(data/corpus.json: tokenizer, token count, train/val split). Training then streams
random windows from it through numpy.memmap without loading it into memory.
"""

from __future__ import annotations

import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from .previous_chapters import CliParser, UserInputError, check_writable, cli_errors, fraction, gpt2_tokenizer, positive_int
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
    p = CliParser(prog="python -m ch05_pretraining.prepare", description=__doc__)
    p.add_argument("--input", required=True, help="a UTF-8 text file or a folder (searched recursively)")
    p.add_argument("--out", required=True, help="token file to write, e.g. data/corpus.bin")
    p.add_argument("--glob", default="*.txt", help="file pattern inside a folder")
    p.add_argument("--val-fraction", type=fraction, default=0.1, help="last share of tokens for validation")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (None: one per CPU)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="uint16", help="uint16 fits GPT-2's 50257 ids")
    args = p.parse_args(argv)
    with cli_errors():
        if Path(args.out).suffix != ".bin":
            raise UserInputError(f"--out '{args.out}' must end in .bin (its header is written beside it as .json)")
        check_writable(args.out, "--out")
        files = list_text_files(args.input, args.glob)
        arrays = tokenize_files(files, args.workers or os.cpu_count() or 1)
        text_tokens = sum(len(a) - 1 for a in arrays)  # each array ends with one <|endoftext|>
        header = write_token_file(args.out, arrays, [str(f) for f in files], args.val_fraction, args.dtype,
                                  text_tokens=text_tokens)
        train, val = header["split"]["train"], header["split"]["val"]
        print(f"wrote {header['count']:,} tokens from {len(files)} file(s) to {args.out} "
              f"(train {train[1] - train[0]:,}, val {val[1] - val[0]:,}; header {Path(args.out).with_suffix('.json')})")
        return header


if __name__ == "__main__":
    main()
