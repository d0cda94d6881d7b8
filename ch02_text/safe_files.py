"""Files written whole or not at all, and checked before long work starts.

Unlike ``open(path, "wb")``: a crash mid-write leaves the old file or the new one, never half of one;
``DirectWriter`` writes gigabytes past the page cache; ``check_writable``/``check_folder`` refuse an
output that cannot be written before hours of training, not after.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path

from .errors import UserInputError


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
    host costs seconds (``python -m bench.checkpoint_speed`` measures both ways; bench/README.md has the
    figures). Where ``O_DIRECT`` is missing (macOS, Windows) or refused (some file systems), it writes the
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
