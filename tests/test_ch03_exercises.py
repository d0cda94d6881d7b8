"""`python -m ch03_attention.exercises` prints the published solutions' values."""

import torch

from ch03_attention.exercises import main


def test_exercises_3_1_to_3_3(capsys):
    results = main([])
    out_v1, out_v2 = results["3.1"]
    torch.testing.assert_close(out_v1, out_v2)
    # the published solution's output (seed 123 before each module)
    assert [f"{v:.4f}" for v in out_v1[0].tolist()] == ["-0.5337", "-0.1051"]
    vecs = results["3.2"]
    assert vecs.shape == (2, 6, 2) and [f"{v:.4f}" for v in vecs[0, 0].tolist()] == ["-0.5740", "0.2216"]
    assert results["3.3"] == 2_360_064
    assert "Exercise 3.3: Initializing GPT-2 size attention modules" in capsys.readouterr().out
