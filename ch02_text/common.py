"""Helpers every chapter shares: finding data files, safe file writes, picking a device, seeding.

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
import errno
import os
import random
import re
import tempfile
import urllib.request
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
IMAGE_DIR = REPO_ROOT / "image"
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


@contextlib.contextmanager
def atomic_writer(path, direct: bool = False):
    """Open a temp file beside ``path`` for writing; on success fsync it and rename it to ``path``.

    A crash at any moment leaves either the old file or the complete new one, never half a
    file. The new file gets normal permissions (0644 under the usual umask). Temp files of
    the same target left by an earlier killed writer (``.NAME.*.tmp``) are removed first.
    ``direct=True`` yields a ``DirectWriter`` instead (for files of gigabytes: see there).

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_writer(target) as f:
    ...     _ = f.write(b"hello")
    >>> target.read_bytes(), oct(target.stat().st_mode & 0o777)
    (b'hello', '0o644')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    own_temp = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")  # mkstemp's 8 random characters
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if own_temp.fullmatch(stale.name):
            with contextlib.suppress(OSError):
                stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            if direct:
                with DirectWriter(f.fileno()) as writer:
                    yield writer
                    writer.finish()
            else:
                yield f
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class DirectWriter:
    """A write-only file object that bypasses the page cache (``O_DIRECT``) where the system allows it.

    Unlike a plain file: data is gathered in one reused, page-aligned buffer and written to the disk in
    whole chunks, never copied into the kernel's page cache. Writing a 2 GB checkpoint through the cache
    has the kernel find 2 GB of free pages, which on a virtual machine that hands freed pages back to its
    host costs seconds (``python -m bench.checkpoint_speed``: 1.2 s this way against 4.8 s through the
    cache). Where ``O_DIRECT`` is missing (macOS, Windows) or refused (some file systems), it writes the
    same bytes plainly.
    ``finish()`` writes the rest, cuts the padding of the last chunk and fsyncs.

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as f, DirectWriter(f.fileno()) as w:
    ...     _ = w.write(b"x" * 5000)
    ...     w.finish()
    ...     _ = f.seek(0)
    ...     len(f.read())
    5000
    """

    CHUNK = 8 << 20  # bytes per write: a multiple of any disk's block size
    ALIGN = 4096

    def __init__(self, fd: int):
        import mmap

        self.fd, self.size, self.pending = fd, 0, 0
        self.direct = _set_direct_io(fd, True)
        self.buffer = mmap.mmap(-1, self.CHUNK)  # anonymous memory: page-aligned, as O_DIRECT needs
        self.view = memoryview(self.buffer)

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        done = 0
        while done < len(data):
            take = min(self.CHUNK - self.pending, len(data) - done)
            self.view[self.pending:self.pending + take] = data[done:done + take]
            self.pending, done = self.pending + take, done + take
            if self.pending == self.CHUNK:
                self._write_out(self.CHUNK)
        self.size += len(data)
        return len(data)

    def flush(self):
        """Nothing: the buffer goes out in whole chunks, its tail in ``finish``."""

    def finish(self):
        if self.pending:
            length = self.pending
            if self.direct:  # the last chunk padded to the alignment, the padding cut below
                length = -(-length // self.ALIGN) * self.ALIGN
                self.view[self.pending:length] = bytes(length - self.pending)
            self._write_out(length)
        self.direct = _set_direct_io(self.fd, False)  # the descriptor plain again for whoever reads it
        os.ftruncate(self.fd, self.size)
        os.fsync(self.fd)

    def _write_out(self, length: int):
        written = 0
        while written < length:
            try:
                written += os.write(self.fd, self.view[written:length])
            except OSError as exc:  # a file system that takes O_DIRECT at open but not these writes
                if not self.direct or exc.errno != errno.EINVAL:
                    raise
                self.direct = _set_direct_io(self.fd, False)
        self.pending = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(BufferError):  # a slice still held while an error unwinds: keep that error
            self.view.release()
            self.buffer.close()


def _set_direct_io(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; returns whether it is on now."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        import fcntl

        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag if on else flags & ~flag)
    except (ImportError, OSError):
        return False
    return on


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through ``atomic_writer``: never a half-written file."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def check_writable(path, what: str = "--out") -> Path:
    """Fail now, not after hours of work, if ``path`` cannot be written (a folder, no permission)."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{what} '{path}' is a directory: give a file name inside it")
    folder = path.parent  # folders still missing are made by the writer, not here: a failed run leaves none
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(20, "a file is in the way of its folder")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise UserInputError(f"{what} '{path}' cannot be written ({exc.strerror or exc}): "
                             "pick a folder you can write to") from None
    return path


def check_folder(path, what: str = "--out-dir") -> Path:
    """A folder the run will write into: refused now if a file is in its place or it cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{what} '{path}' is a file, not a folder: give a folder")
    check_writable(path / "probe", what)
    return path


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
            atomic_write_bytes(target, payload)
            return target
        except Exception as exc:  # any network failure ends in the one message below
            reason = f"download from {url} failed ({type(exc).__name__})"
    raise DataFileError(
        f"data file '{name}' not found: place it at {DATA_DIR / name} "
        f"or set {DATA_ENV} to a folder that holds {name} ({reason})"
    )


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


def bf16_supported(device: torch.device) -> bool:
    """bf16 matmuls in hardware: AVX512-BF16/AMX on CPU, a bf16 GPU on CUDA."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        flags = cpu_info()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def cpu_info() -> str:
    """The text of ``/proc/cpuinfo`` (flags, vendor), or "" where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def intel_cpu() -> bool:
    """Whether the processor is Intel's (``vendor_id: GenuineIntel``): MKL, PyTorch's fp32 matmul library on
    x86, is tuned for these."""
    return "GenuineIntel" in cpu_info()


def set_seed(seed: int) -> None:
    """Seed torch (CPU and all GPUs) and Python's ``random`` the way the book does."""
    random.seed(seed)
    torch.manual_seed(seed)


def save_figure(fig, name: str, out_dir: str | os.PathLike | None = None) -> Path:
    """Save a matplotlib figure as PNG atomically in ``image/`` (or ``out_dir``).

    In a notebook (inline backend) the figure stays open so it shows below the cell;
    anywhere else it is closed.
    """
    import io

    import matplotlib
    import matplotlib.pyplot as plt

    out = Path(out_dir) if out_dir is not None else IMAGE_DIR
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    path = atomic_write_bytes(out / name, buf.getvalue())
    if "inline" not in matplotlib.get_backend():
        plt.close(fig)
    return path
