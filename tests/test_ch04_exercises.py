"""`python -m ch04_gpt.exercises` prints the published solutions' values."""

import pytest
import torch

from ch04_gpt.exercises import GPTModelSeparateDropout, main
from conftest import TINY


def test_exercises_4_1_to_4_3(capsys):
    results = main([])
    assert results["4.1"] == (4_722_432, 2_360_064)
    assert results["4.2"] == {
        "gpt2-small": (163_009_536, 124_412_160, 621.83), "gpt2-medium": (406_212_608, 354_749_440, 1549.58),
        "gpt2-large": (838_220_800, 773_891_840, 3197.56), "gpt2-xl": (1_637_792_000, 1_557_380_800, 6247.68)}
    assert results["4.3"] == {"embedding": 0.1, "shortcut": 0.2, "attention": 0.3}
    assert "gpt2-medium (355M):\nTotal number of parameters: 406,212,608" in capsys.readouterr().out


@pytest.mark.parametrize("impl", ["book", "fast"])
def test_separate_dropout_rates_act_where_they_should(impl):
    cfg = {**TINY, "drop_rate_emb": 0.0, "drop_rate_shortcut": 0.0, "drop_rate_attn": 0.5}
    model = GPTModelSeparateDropout(cfg, impl=impl).train()
    x = torch.tensor([[1, 2, 3, 4]])
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.equal(a, model(x))  # attention dropout is on
    model.trf_blocks[0].att.dropout = 0.0 if impl == "fast" else torch.nn.Dropout(0.0)
    model.trf_blocks[1].att.dropout = 0.0 if impl == "fast" else torch.nn.Dropout(0.0)
    torch.manual_seed(0)
    b = model(x)
    torch.manual_seed(1)
    assert torch.equal(b, model(x))  # and it was the only dropout
