"""Helpers every chapter shares: finding data files, picking a device, seeding, CLI errors.

Chapter 2 is the first layer of the project, so the few helpers that every later
chapter needs live here and are re-exported through ``previous_chapters.py``.

Data lookup order for a file such as ``the-verdict.txt``::

    1. <repo>/data/the-verdict.txt
    2. $LLMS_DATA_DIR/the-verdict.txt
    3. download from the public source into <repo>/data/ (atomic write)
    4. otherwise: DataFileError with one line naming the file and where to put it

>>> find_data_file("the-verdict.txt").name      # doctest: +SKIP
'the-verdict.txt'
>>> pick_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import contextlib
import os
import random
import runpy
import sys
import tempfile
import urllib.request
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
IMAGE_DIR = REPO_ROOT / "image"
DATA_ENV = "LLMS_DATA_DIR"

DATA_URLS = {
    "the-verdict.txt": (
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/"
        "ch02/01_main-chapter-code/the-verdict.txt"
    ),
    "gpt2/vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "gpt2/encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


class DataFileError(FileNotFoundError):
    """A data file is in none of the places we look and could not be downloaded."""


class UserInputError(ValueError):
    """Bad input from a reader (file, option, prompt): the message says what to change."""


def _local_candidates(name: str) -> list[Path]:
    places = [DATA_DIR / name]
    env = os.environ.get(DATA_ENV)
    if env:
        places.append(Path(env) / name)
    return places


def find_local_data_file(name: str) -> Path | None:
    """Return the first existing copy of ``name`` in data/ or $LLMS_DATA_DIR, else None."""
    for path in _local_candidates(name):
        if path.is_file():
            return path
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def find_data_file(name: str, download: bool = True, timeout: float = 20.0) -> Path:
    """Locate data file ``name`` (e.g. ``"gpt2/vocab.bpe"``); download it as a last resort."""
    path = find_local_data_file(name)
    if path is not None:
        return path
    url = DATA_URLS.get(name)
    reason = "no public source is known for it"
    if download and url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                payload = resp.read()
            target = DATA_DIR / name
            atomic_write_bytes(target, payload)
            return target
        except Exception as exc:  # any network failure ends in the one message below
            reason = f"download from {url} failed ({type(exc).__name__})"
    raise DataFileError(
        f"data file '{name}' not found: place it at data/{name} "
        f"or set {DATA_ENV} to a folder that holds {name} ({reason})"
    )


def read_text_file(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file; missing or non-UTF-8 files raise UserInputError with the name."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"text file '{path}' does not exist: check the path")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"text file '{path}' is not UTF-8 (byte {exc.start}): convert it to UTF-8 first"
        ) from None


def read_data_text(name: str = "the-verdict.txt") -> str:
    """Find a data text file (see module docstring) and return its contents."""
    return read_text_file(find_data_file(name))


def pick_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"`` picks cuda, then mps, then cpu; anything else is taken as asked.

    >>> pick_device("cpu").type
    'cpu'
    """
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("device 'cuda' asked for but CUDA is not available: use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError("device 'mps' asked for but MPS is not available: use --device cpu")
    return device


def set_seed(seed: int) -> None:
    """Seed torch (CPU and all GPUs) and Python's ``random`` the way the book does."""
    random.seed(seed)
    torch.manual_seed(seed)


def add_device_argument(parser) -> None:
    parser.add_argument(
        "--device", default="auto",
        help="cpu, cuda, cuda:N, mps, or auto (default: auto = cuda, then mps, then cpu)",
    )


USER_ERRORS = (UserInputError, DataFileError, FileNotFoundError, ValueError, KeyError, OSError)


@contextlib.contextmanager
def cli_errors():
    """Turn a reader's mistake into one line on stderr and exit code 1 (no traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(1) from None


def chapter_parser(chapter: str, description: str, figures: bool = True):
    """The argument parser every ``python -m chNN_*`` walk-through starts from."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {chapter}", description=description)
    if figures:
        parser.add_argument("--image-dir", default=None,
                            help="folder for the figures (default: the repo's image/)")
    return parser


def run_walkthrough(module: str, args) -> dict:
    """Run a chapter's ``walkthrough`` module (percent-format cells) with ``ARGS`` set.

    Returns the module's globals so tests and readers can inspect every result.
    """
    with cli_errors():
        return runpy.run_module(module, init_globals={"ARGS": args}, run_name=module)


def save_figure(fig, name: str, out_dir: str | os.PathLike | None = None) -> Path:
    """Save a matplotlib figure as PNG atomically in ``image/`` (or ``out_dir``)."""
    import io

    out = Path(out_dir) if out_dir is not None else IMAGE_DIR
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    path = out / name
    atomic_write_bytes(path, buf.getvalue())
    return path
