"""`python -m ch02_text.exercises` prints the published solutions' values."""

from ch02_text.exercises import main


def test_exercises_2_1_and_2_2(capsys):
    results = main([])
    out = capsys.readouterr().out
    assert "Exercise 2.1: Byte pair encoding of unknown words" in out
    integers, pieces = results["2.1"]
    assert integers == [33901, 86, 343, 86, 220, 959] and pieces == ["Ak", "w", "ir", "w", " ", "ier"]
    assert results["2.2"][2].tolist() == [[40, 367], [2885, 1464], [1807, 3619], [402, 271]]
    assert results["2.2"][8][3].tolist() == [402, 271, 10899, 2138, 257, 7026, 15632, 438]


def test_only_runs_one(capsys):
    assert list(main(["--only", "2.2"])) == ["2.2"]
    assert "Exercise 2.1" not in capsys.readouterr().out
