import os
import subprocess
import sys

import pytest
import torch

from ch02_text import data_files, errors, hardware, paths, safe_files, seeds


def test_lookup_order_data_then_env(tmp_path, monkeypatch):
    repo_data = tmp_path / "repo_data"
    env_data = tmp_path / "env_data"
    (env_data).mkdir()
    (env_data / "x.txt").write_text("env")
    monkeypatch.setattr(data_files, "DATA_DIR", repo_data)
    monkeypatch.setenv(data_files.DATA_ENV, str(env_data))
    assert data_files.find_data_file("x.txt", download=False) == env_data / "x.txt"
    repo_data.mkdir()
    (repo_data / "x.txt").write_text("repo")
    assert data_files.find_data_file("x.txt", download=False) == repo_data / "x.txt"


def test_download_failure_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv(data_files.NO_DOWNLOAD_ENV)  # conftest turns downloads off; here a local file:// URL fails
    monkeypatch.setattr(data_files, "DATA_DIR", tmp_path / "data")
    monkeypatch.setenv(data_files.DATA_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setitem(data_files.DATA_URLS, "the-verdict.txt", (tmp_path / "missing.txt").as_uri())
    with pytest.raises(errors.DataFileError) as info:
        data_files.find_data_file("the-verdict.txt")
    msg = str(info.value)
    assert str(tmp_path / "data" / "the-verdict.txt") in msg and data_files.DATA_ENV in msg and "\n" not in msg
    assert not (tmp_path / "data" / "the-verdict.txt").exists()


def test_download_writes_into_data_and_tests_never_download(tmp_path, monkeypatch):
    src = tmp_path / "src.txt"
    src.write_text("payload")
    monkeypatch.setattr(data_files, "DATA_DIR", tmp_path / "data")
    monkeypatch.delenv(data_files.DATA_ENV, raising=False)
    monkeypatch.setitem(data_files.DATA_URLS, "the-verdict.txt", src.as_uri())
    with pytest.raises(errors.DataFileError, match="downloads are off"):  # the tests' setting (conftest)
        data_files.find_data_file("the-verdict.txt")
    monkeypatch.delenv(data_files.NO_DOWNLOAD_ENV)
    path = data_files.find_data_file("the-verdict.txt")
    assert path == tmp_path / "data" / "the-verdict.txt" and path.read_text() == "payload"
    assert [p.name for p in path.parent.iterdir()] == ["the-verdict.txt"]  # no temp file left


def test_chapter_script_exits_1_with_one_line_when_data_missing(tmp_path, monkeypatch, capsys):
    from ch02_text.__main__ import main

    monkeypatch.setattr(data_files, "DATA_DIR", tmp_path / "data")
    monkeypatch.setenv(data_files.DATA_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setitem(data_files.DATA_URLS, "the-verdict.txt", (tmp_path / "missing.txt").as_uri())
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data file 'the-verdict.txt' not found")


def test_non_utf8_file_is_named(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(errors.UserInputError, match="latin1.txt' is not UTF-8"):
        data_files.read_text_file(bad)


def test_pick_device_and_seed():
    assert hardware.pick_device("cpu") == torch.device("cpu")
    assert hardware.pick_device(None).type in {"cpu", "cuda", "mps"}
    with pytest.raises(errors.UserInputError, match="unknown device"):
        hardware.pick_device("tpu9")
    seeds.set_seed(123)
    a = torch.rand(3)
    seeds.set_seed(123)
    assert torch.equal(a, torch.rand(3))


def test_help_is_useful():
    out = subprocess.run([sys.executable, "-m", "ch02_text", "--help"], capture_output=True, text=True,
                         cwd=paths.REPO_ROOT)
    assert out.returncode == 0 and "Chapter 2" in out.stdout


@pytest.mark.parametrize("refused", [False, True], ids=["direct", "refused-mid-file"])
def test_direct_atomic_writes_keep_every_byte(tmp_path, monkeypatch, refused):
    """Odd-sized writes across several chunks land byte for byte, the padding of the last chunk cut;
    a file system that refuses O_DIRECT writes gets the same bytes plainly."""
    import errno

    monkeypatch.setattr(safe_files.DirectWriter, "CHUNK", 3 * 4096)
    real_write, refusals = os.write, []

    def write(fd, data):
        if refused and not refusals:
            refusals.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(safe_files.os, "write", write)
    if refused:  # O_DIRECT taken at first, wherever the system has it or not, so the refusal is what is tested
        real_set = safe_files._set_direct_io
        monkeypatch.setattr(safe_files, "_set_direct_io", lambda fd, on: real_set(fd, on) or on)
    data = bytes(range(256)) * 200 + b"tail"  # 51,204 bytes: four chunks and a piece
    target = tmp_path / "big.bin"
    with safe_files.atomic_writer(target, direct=True) as f:
        for start in range(0, len(data), 5000):
            assert f.write(data[start:start + 5000]) == len(data[start:start + 5000])
        f.flush()
        if refused:
            assert not f.direct
    assert target.read_bytes() == data and [p.name for p in tmp_path.iterdir()] == ["big.bin"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_direct_atomic_write_that_fails_leaves_nothing(tmp_path):
    target = tmp_path / "big.bin"
    with pytest.raises(RuntimeError):
        with safe_files.atomic_writer(target, direct=True) as f:
            f.write(b"x" * 10_000)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
