"""Chapter 6's data without pandas, checked against pandas itself: the same rows read from the TSV, the same
balanced draw and shuffle, the same CSV files; then the dataset and loaders the book counts (120 tokens,
130 / 19 / 38 batches), and the zip download."""

import io
import itertools
import zipfile

import pytest
import torch
from torch.utils.data import DataLoader

from ch02_text import data_files
from ch02_text.errors import UserInputError
from ch06_classification.dataset import SpamDataset
from ch06_classification.spam_data import (
    DATA_FILE, create_balanced_dataset, encode_labels, format_counts, random_split, read_sms_spam, read_split_csv,
    sample_indices, value_counts, write_csv,
)
from conftest import require_data


@pytest.fixture(scope="module")
def sms_path():
    require_data(DATA_FILE)
    return data_files.find_data_file(DATA_FILE, download=False)


@pytest.fixture(scope="module")
def ours(sms_path):
    rows = read_sms_spam(sms_path)
    balanced = create_balanced_dataset(rows)
    return rows, balanced, random_split(encode_labels(balanced), 0.7, 0.1)


@pytest.fixture(scope="module")
def books(sms_path):
    """The book's listings 6.2 and 6.3, run with pandas."""
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(sms_path, sep="\t", header=None, names=["Label", "Text"])
    num_spam = df[df["Label"] == "spam"].shape[0]
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    balanced_df = pd.concat([ham_subset, df[df["Label"] == "spam"]])
    balanced_df["Label"] = balanced_df["Label"].map({"ham": 0, "spam": 1})
    shuffled = balanced_df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(shuffled) * 0.7)
    validation_end = train_end + int(len(shuffled) * 0.1)
    splits = shuffled[:train_end], shuffled[train_end:validation_end], shuffled[validation_end:]
    return df, ham_subset, splits


def frame_rows(frame):
    return list(zip(frame["Label"].tolist(), frame["Text"].tolist()))


def test_the_file_reads_as_pandas_reads_it(ours, books):
    rows, _, _ = ours
    df, _, _ = books
    assert len(rows) == 5572 and rows == frame_rows(df)
    assert sum('"' in text for _, text in rows) > 90  # the quoting rules are exercised, not assumed
    assert value_counts(rows) == {"ham": 4825, "spam": 747} == df["Label"].value_counts().to_dict()


def test_tricky_quoting_reads_as_pandas_reads_it(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "tricky.tsv"
    path.write_text('ham\t"Quoted, with ""doubled"" quotes"\nspam\tIn the "middle" and at the end"\n\n'
                    'ham\t"spans\ntwo lines"\nham\t"unclosed at first" then more\nspam\tplain £5 text\n',
                    encoding="utf-8")
    df = pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"])
    assert read_sms_spam(path) == frame_rows(df) and len(df) == 5


def test_a_malformed_file_is_one_error_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("ham\tfine\nspam only a label\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="line 2: expected a label, a tab and a text"):
        read_sms_spam(tmp_path / "bad.tsv")
    (tmp_path / "latin1.tsv").write_bytes("ham\t£5\n".encode("latin-1"))
    with pytest.raises(UserInputError, match="is not UTF-8"):
        read_sms_spam(tmp_path / "latin1.tsv")
    with pytest.raises(UserInputError, match="unknown label 'eggs'"):
        encode_labels([("ham", "a"), ("eggs", "b")])


@pytest.mark.parametrize("population, size", [(10, 3), (4825, 747), (1494, 1494), (7, 0)])
def test_sample_indices_are_pandas_draws(population, size):
    pd = pytest.importorskip("pandas")
    expected = pd.Series(range(population)).sample(size, random_state=123).index.tolist()
    assert sample_indices(population, size) == expected


def test_the_balanced_and_split_rows_are_the_books(ours, books):
    _, balanced, (train, validation, test) = ours
    _, ham_subset, splits = books
    assert balanced[:747] == frame_rows(ham_subset) and value_counts(balanced) == {"ham": 747, "spam": 747}
    assert (len(train), len(validation), len(test)) == (1045, 149, 300)
    for rows, frame in zip((train, validation, test), splits):
        assert rows == frame_rows(frame)  # the same rows in the same order, labels and texts


def test_the_csv_files_are_the_books(ours, books, tmp_path):
    pd = pytest.importorskip("pandas")
    _, _, ours_splits = ours
    _, _, splits = books
    for name, rows, frame in zip(("train", "validation", "test"), ours_splits, splits):
        path = write_csv(rows, tmp_path / f"{name}.csv")
        frame.to_csv(tmp_path / f"{name}-pandas.csv", index=None)
        assert path.read_bytes() == (tmp_path / f"{name}-pandas.csv").read_bytes()
        pd.testing.assert_frame_equal(pd.read_csv(path), frame.reset_index(drop=True))
        assert read_split_csv(path) == rows  # and our reader reads them back


def test_counts_print_as_the_book_prints_them(ours):
    assert format_counts(value_counts(ours[1])) == "Label\nham     747\nspam    747"


def test_the_datasets_and_loaders_the_book_counts(ours, tmp_path, gpt2_tok):
    require_data("gpt2/vocab.bpe", "gpt2/encoder.json")
    paths = [write_csv(rows, tmp_path / f"{name}.csv") for name, rows in zip(("t", "v", "s"), ours[2])]
    train = SpamDataset(paths[0], gpt2_tok)
    val, test = (SpamDataset(p, gpt2_tok, max_length=train.max_length) for p in paths[1:])
    assert train.max_length == 120 and val.max_length == test.max_length == 120
    x, y = train[0]
    text_ids = gpt2_tok.encode(ours[2][0][0][1])
    assert x.tolist() == text_ids + [50256] * (120 - len(text_ids)) and y.item() == ours[2][0][0][0]
    short = SpamDataset(paths[2], gpt2_tok, max_length=20)  # longer texts are cut, shorter ones padded
    for (label, text), (ids, target) in zip(ours[2][2], short):
        assert ids.tolist() == (gpt2_tok.encode(text) + [50256] * 20)[:20] and target.item() == label
    loaders = (DataLoader(train, batch_size=8, shuffle=True, drop_last=True), DataLoader(val, batch_size=8),
               DataLoader(test, batch_size=8))
    assert [len(loader) for loader in loaders] == [130, 19, 38]
    torch.manual_seed(123)  # as before the book's first accuracies (section 6.6), over 10 batches of each loader
    spam_shares = [torch.cat([y for _, y in itertools.islice(loader, 10)]).float().mean().item() for loader in loaders]
    # the book's accuracies before fine-tuning, 46.25% / 45.00% / 48.75%, are those of a model that answers
    # "spam" to every padded text: the loaders serve the book's texts in the book's order
    assert spam_shares == pytest.approx([0.4625, 0.45, 0.4875])
    inputs, labels = next(iter(loaders[0]))
    assert inputs.shape == (8, 120) and labels.shape == (8,)


def test_a_download_is_unzipped(monkeypatch, tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme", "The SMS Spam Collection")
        z.writestr(DATA_FILE, "ham\tHello\nspam\tWIN\n")

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    seen = []
    monkeypatch.setattr(data_files.urllib.request, "urlopen", lambda url, timeout: seen.append(url) or
                        Response(archive.getvalue()))
    monkeypatch.setattr(data_files, "DATA_DIR", tmp_path)
    monkeypatch.delenv(data_files.DATA_ENV, raising=False)
    monkeypatch.delenv(data_files.NO_DOWNLOAD_ENV, raising=False)
    path = data_files.find_data_file(DATA_FILE)
    assert seen == [data_files.DATA_URLS[DATA_FILE]] and seen[0].endswith(".zip")
    assert path == tmp_path / DATA_FILE and read_sms_spam(path) == [("ham", "Hello"), ("spam", "WIN")]
