"""`python -m ch02_text` prints the book's values (checked on the returned namespace and stdout)."""

from ch02_text.__main__ import main


def test_walkthrough_prints_book_values(capsys):
    ns = main([])
    out = capsys.readouterr().out
    assert "Total number of character: 20479" in out
    assert "\n2.2 Tokenizing text\n-------------------\nTotal number of character" in out  # the book's headings
    assert "\nListing 2.3: SimpleTokenizerV1" in out
    assert len(ns["preprocessed"]) == 4690
    assert len(ns["vocab"]) == 1132
    assert ns["integers"] == [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250,
                              8812, 2114, 1659, 617, 34680, 27271, 13]
    assert len(ns["enc_text"]) == 5145
    assert ns["first_batch"][0].tolist() == [[40, 367, 2885, 1464]]
    assert ns["first_batch"][1].tolist() == [[367, 2885, 1464, 1807]]
    assert "KeyError: 'Hello'" in out
    assert "x: [290, 4920, 2241, 287]" in out
    assert " and established himself in ---->  a" in out
    assert "tensor([[ 0.3374, -0.1778, -0.1690]," in out
    assert tuple(ns["input_embeddings"].shape) == (8, 4, 256)


def test_readme_names_only_files_and_objects_that_exist():
    from conftest import check_readme

    check_readme("ch02_text")
