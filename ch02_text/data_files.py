"""Finding the data files (the-verdict, GPT-2's BPE files, ...) and reading text files.

Unlike the book, which downloads each file where a listing needs it: one lookup for every data file, so a
reader offline places the file once. The order, for a file such as ``the-verdict.txt``::

    1. <repo>/data/the-verdict.txt
    2. $LLMS_DATA_DIR/the-verdict.txt
    3. download from the public source into <repo>/data/ (atomic write; from a zip archive, its file of that name)
    4. otherwise: DataFileError with one line naming the file and where to put it

>>> find_data_file("the-verdict.txt").name      # doctest: +SKIP
'the-verdict.txt'
"""

from __future__ import annotations

import io
import os
import urllib.request
import zipfile
from pathlib import Path

from .errors import DataFileError, UserInputError
from .paths import DATA_DIR
from .safe_files import atomic_write_bytes

DATA_ENV = "LLMS_DATA_DIR"
NO_DOWNLOAD_ENV = "LLMS_NO_DOWNLOAD"  # "1": a missing data file is not downloaded (the tests)
DATA_URLS = {
    "the-verdict.txt": (
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/"
        "ch02/01_main-chapter-code/the-verdict.txt"
    ),
    "tinyshakespeare.txt": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    ),
    "gpt2/vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "gpt2/encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    # chapter 6's SMS spam data: served in a zip archive, of which the file of that name is kept
    "SMSSpamCollection": "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    # chapter 7's instruction data (1,100 instruction-response pairs)
    "instruction-data.json": (
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/"
        "ch07/01_main-chapter-code/instruction-data.json"
    ),
}


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


def find_data_file(name: str, download: bool = True, timeout: float = 20.0) -> Path:
    """Locate data file ``name`` (e.g. ``"gpt2/vocab.bpe"``); download it as a last resort."""
    path = find_local_data_file(name)
    if path is not None:
        return path
    url = DATA_URLS.get(name)
    reason = "no public source is known for it"
    if os.environ.get(NO_DOWNLOAD_ENV) == "1":  # the tests set it: they never reach the network
        download, reason = False, f"downloads are off ({NO_DOWNLOAD_ENV}=1)"
    if download and url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                payload = resp.read()
            target = DATA_DIR / name
            atomic_write_bytes(target, unzipped(payload, url, name))
            return target
        except Exception as exc:  # any network failure ends in the one message below
            reason = f"download from {url} failed ({type(exc).__name__})"
    raise DataFileError(
        f"data file '{name}' not found: place it at {DATA_DIR / name} "
        f"or set {DATA_ENV} to a folder that holds {name} ({reason})"
    )


def unzipped(payload: bytes, url: str, name: str) -> bytes:
    """The download itself, or for a ``.zip`` URL the archive's member named as the data file.

    >>> import io, zipfile
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w") as z:
    ...     z.writestr("readme", "x"); z.writestr("SMSSpamCollection", "ham\\tHi")
    >>> unzipped(buf.getvalue(), "https://host/a.zip", "SMSSpamCollection")
    b'ham\\tHi'
    """
    if not url.endswith(".zip"):
        return payload
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return archive.read(Path(name).name)  # a missing member: KeyError, reported as a failed download


def read_text_file(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file; missing or non-UTF-8 files raise UserInputError with the name."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"text file '{path}' is a directory: give a UTF-8 text file")
    if not path.is_file():
        raise UserInputError(f"text file '{path}' does not exist: check the path")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"text file '{path}' is not UTF-8 (byte {exc.start}): convert it to UTF-8 first"
        ) from None


def resolve_input(path) -> Path:
    """A path as given, or, when nothing is there and it names a known data file
    (``tinyshakespeare.txt``), that file found like every data file (see module docstring)."""
    path = Path(path)
    if not path.exists() and str(path) in DATA_URLS:
        return find_data_file(str(path))
    return path


def read_data_text(name: str = "the-verdict.txt") -> str:
    """Find a data text file (see module docstring) and return its contents."""
    return read_text_file(find_data_file(name))
