"""python -m ch05_pretraining.prepare: tokenize a text file or a folder of them for training.

    python -m ch05_pretraining.prepare --input my_corpus/ --out data/corpus.bin
    python -m ch05_pretraining.prepare --input tinyshakespeare.txt --out data/shakespeare.bin --train-tokenizer 2000
    python -m ch05_pretraining.prepare --input tinyshakespeare.txt --out data/shakespeare_char.bin --tokenizer char
    python -m ch05_pretraining.train --data data/corpus.bin --context-length 512

Files are tokenized in parallel (--workers), each followed by the tokenizer's end-of-text
token, and written as uint16 ids to --out with a JSON header beside it (data/corpus.json:
the tokenizer itself, token count, files, train/val split). The tokenizer is GPT-2's
(tiktoken) by default; --tokenizer char uses the corpus's characters, --tokenizer FILE.json
a saved BPE tokenizer, and --train-tokenizer N trains the project's own BPE on the corpus
to N ids (saved beside --out as NAME.tokenizer.json too). Training then streams random
windows through numpy.memmap without loading the file into memory.
"""

from __future__ import annotations

import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ch02_text.cli import CliParser, cli_errors
from ch02_text.data_files import resolve_input
from ch02_text.errors import UserInputError
from ch02_text.option_types import fraction, positive_int
from ch02_text.safe_files import check_writable
from .engine.token_data import DTYPES, write_token_file
from .previous_chapters import (
    BPETokenizer, SPECIAL_TOKENS, TOKENIZER_CHOICES, choose_tokenizer, describe_tokenizer, tokenizer_from_dict,
    tokenizer_to_dict,
)


def list_text_files(input_path, pattern="*.txt") -> list[Path]:
    path = resolve_input(input_path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserInputError(f"input '{path}' does not exist: give a text file or a folder of them")
    files = sorted(p for p in path.rglob(pattern) if p.is_file())
    if not files:
        raise UserInputError(f"folder '{path}' has no {pattern} files: check --input and --glob")
    return files


def read_file(path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"file '{path}' is not UTF-8 (byte {exc.start}): convert it first") from None


_TOKENIZER = None  # each worker process builds its tokenizer once (see tokenize_files)


def _init_worker(spec):
    global _TOKENIZER
    _TOKENIZER = tokenizer_from_dict(spec)


def tokenize_file(path) -> np.ndarray:
    """Ids of one UTF-8 file plus the end-of-text token; a non-UTF-8 file is named in the error."""
    tok = _TOKENIZER if _TOKENIZER is not None else tokenizer_from_dict("gpt2")
    return np.array(tok.encode_ordinary(read_file(path)) + [tok.eot_token], dtype=np.int64)


def tokenize_files(files, workers=1, tokenizer_spec=None):
    """Token arrays of ``files`` in order, with ``workers`` processes (GPT-2's tokenizer by default)."""
    spec = tokenizer_spec or {"format": "gpt2"}
    if workers <= 1 or len(files) == 1:
        _init_worker(spec)
        return [tokenize_file(f) for f in files]
    with Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
        return pool.map(tokenize_file, files)


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.prepare", description=__doc__)
    p.add_argument("--input", required=True, help="a UTF-8 text file or a folder (searched recursively)")
    p.add_argument("--out", required=True, help="token file to write, e.g. data/corpus.bin")
    p.add_argument("--glob", default="*.txt", help="file pattern inside a folder")
    p.add_argument("--tokenizer", default=None, help=f"{TOKENIZER_CHOICES} (None: gpt2)")
    p.add_argument("--train-tokenizer", type=positive_int, default=None, metavar="VOCAB_SIZE",
                   help="train the project's own byte-level BPE on the corpus to this many ids and use it")
    p.add_argument("--specials", choices=sorted(SPECIAL_TOKENS), default="gpt2",
                   help="special tokens of a char or trained tokenizer: gpt2 = <|endoftext|>; "
                        "classic = <pad> <unk> <bos> <eos>")
    p.add_argument("--val-fraction", type=fraction, default=0.1, help="last share of tokens for validation")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (None: one per CPU)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="uint16", help="uint16 fits vocabularies up to 65,536")
    return p


def make_tokenizer(args, files):
    """The tokenizer this run writes with: named, or trained on (or read off) the corpus."""
    if args.train_tokenizer is None and args.tokenizer != "char":
        return choose_tokenizer(args.tokenizer or "gpt2")
    text = "".join(read_file(f) for f in files)
    if args.train_tokenizer is None:
        return choose_tokenizer("char", text, args.specials)
    tok = BPETokenizer()
    tok.train(text, args.train_tokenizer, special_tokens=SPECIAL_TOKENS[args.specials])
    saved = tok.save(Path(args.out).with_suffix(".tokenizer.json"))
    print(f"trained the tokenizer ({describe_tokenizer(tok)}), saved to {saved}")
    return tok


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        if Path(args.out).suffix != ".bin":
            raise UserInputError(f"--out '{args.out}' must end in .bin (its header is written beside it as .json)")
        if args.train_tokenizer is not None and args.tokenizer is not None:
            raise UserInputError("give either --tokenizer or --train-tokenizer, not both")
        check_writable(args.out, "--out")
        files = list_text_files(args.input, args.glob)
        tokenizer = make_tokenizer(args, files)
        if tokenizer.eot_token is None:
            raise UserInputError(f"--tokenizer '{args.tokenizer or 'gpt2'}' has no end-of-text token (<|endoftext|> or <eos>) "
                                 "to separate documents: train one with special tokens")
        arrays = tokenize_files(files, args.workers or os.cpu_count() or 1, tokenizer_to_dict(tokenizer))
        text_tokens = sum(len(a) - 1 for a in arrays)  # each array ends with one end-of-text token
        header = write_token_file(args.out, arrays, [str(f) for f in files], args.val_fraction, args.dtype,
                                  tokenizer=tokenizer_to_dict(tokenizer), text_tokens=text_tokens)
        train, val = header["split"]["train"], header["split"]["val"]
        print(f"wrote {header['count']:,} tokens from {len(files)} file(s) to {args.out} "
              f"(train {train[1] - train[0]:,}, val {val[1] - val[0]:,}; {describe_tokenizer(tokenizer)}; "
              f"header {Path(args.out).with_suffix('.json')})")
        return header


if __name__ == "__main__":
    main()
