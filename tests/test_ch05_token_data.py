import json

import numpy as np
import pytest
import torch

from ch05_pretraining.prepare import list_text_files, main as prepare_main, tokenize_files
from ch02_text.errors import UserInputError
from ch05_pretraining.engine.token_data import TokenFile, TokenWindows, write_token_file


@pytest.fixture
def folder(tmp_path, verdict_text):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text(verdict_text[:3000], encoding="utf-8")
    (d / "sub" / "b.txt").write_text(verdict_text[3000:6000], encoding="utf-8")
    (d / "c.txt").write_text("Déjà vu 🙂", encoding="utf-8")
    (d / "skip.md").write_text("not a txt file")
    return d


def test_prepare_folder_writes_tokens_and_header(folder, tmp_path, gpt2_tok, capsys):
    out = tmp_path / "data" / "corpus.bin"
    header = prepare_main(["--input", str(folder), "--out", str(out), "--workers", "2", "--val-fraction", "0.2"])
    files = sorted([folder / "a.txt", folder / "c.txt", folder / "sub" / "b.txt"])
    expected = []
    for f in files:
        expected += gpt2_tok.encode_ordinary(f.read_text(encoding="utf-8")) + [50256]
    tokens = np.fromfile(out, dtype=np.uint16)
    assert tokens.tolist() == expected and header["count"] == len(expected)
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk == header and on_disk["tokenizer"] == {"format": "gpt2"} and on_disk["dtype"] == "uint16"
    n_val = round(0.2 * len(expected))
    assert on_disk["split"] == {"train": [0, len(expected) - n_val], "val": [len(expected) - n_val, len(expected)]}
    assert "wrote" in capsys.readouterr().out


def test_memmap_windows_stream_from_disk(folder, tmp_path):
    out = tmp_path / "c.bin"
    prepare_main(["--input", str(folder), "--out", str(out), "--workers", "1"])
    tf = TokenFile(out)
    assert isinstance(tf.tokens, np.memmap)
    ds = TokenWindows.of_split(tf, "train", context_length=16)
    start, end = tf.split("train")
    assert len(ds) == (end - start - 16 - 1) // 16 + 1
    x, y = ds[len(ds) - 1]
    assert x.dtype == torch.int64 and x.shape == (16,) and torch.equal(x[1:], y[:-1])
    assert int(y[-1]) == int(tf.tokens[start + (len(ds) - 1) * 16 + 16])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_training_on_a_token_file(folder, tmp_path):
    from ch05_pretraining.train import main

    out = tmp_path / "c.bin"
    prepare_main(["--input", str(folder), "--out", str(out)])
    state = main(["--data", str(out), "--n-layers", "1", "--emb-dim", "32", "--n-heads", "2",
                  "--context-length", "32", "--epochs", "1", "--eval-freq", "5", "--eval-iter", "2",
                  "--no-progress", "--out", str(tmp_path / "m.pt")])
    assert state.train_losses and (tmp_path / "m.pt").is_file()


def test_empty_folder_and_non_utf8_file(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="has no \\*.txt files"):
        list_text_files(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.txt").write_text("fine")
    (bad / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SystemExit) as info:
        prepare_main(["--input", str(bad), "--out", str(tmp_path / "x.bin"), "--workers", "2"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latin.txt' is not UTF-8" in err[0]
    assert not (tmp_path / "x.bin").exists()


def test_token_id_that_does_not_fit(tmp_path):
    with pytest.raises(UserInputError, match="token id 70000 from 'big.txt' does not fit in uint16"):
        write_token_file(tmp_path / "t.bin", [np.array([1, 70000])], ["big.txt"], val_fraction=0.5)
    assert list(tmp_path.iterdir()) == []
    header = write_token_file(tmp_path / "t.bin", [np.array([1, 70000])], ["big.txt"], dtype="uint32",
                              val_fraction=0.5)
    assert TokenFile(tmp_path / "t.bin", vocab_size=70001).tokens.tolist() == [1, 70000] and header["dtype"] == "uint32"


def test_damaged_token_file_is_explained(tmp_path):
    write_token_file(tmp_path / "t.bin", [np.arange(100)], ["x.txt"])
    (tmp_path / "t.bin").write_bytes((tmp_path / "t.bin").read_bytes()[:50])
    with pytest.raises(UserInputError, match="does not match its header"):
        TokenFile(tmp_path / "t.bin")
    (tmp_path / "t.json").write_text("{broken")
    with pytest.raises(UserInputError, match="damaged"):
        TokenFile(tmp_path / "t.bin")
    with pytest.raises(UserInputError, match="python -m ch05_pretraining.prepare"):
        TokenFile(tmp_path / "none.bin")


def test_parallel_tokenization_matches_serial(folder):
    files = list_text_files(folder)
    serial = tokenize_files(files, workers=1)
    parallel = tokenize_files(files, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel))
