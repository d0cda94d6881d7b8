import pytest
import torch

from ch04_gpt.generate import generate_text_simple
from ch04_gpt.model import GPTModel
from ch05_pretraining.sampling import (
    generate, make_sampler, next_token_probs, print_sampled_tokens, softmax_with_temperature, top_k_filter, top_p_filter,
)
from conftest import TINY

LOGITS = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
VOCAB = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]


def test_book_sampling_counts(capsys):
    counts = print_sampled_tokens(torch.softmax(LOGITS, dim=0), dict(enumerate(VOCAB)))
    assert counts[0] == 73 and counts[3] == 582 and counts[7] == 343
    assert "582 x forward" in capsys.readouterr().out


def test_book_top_k_values():
    probs = torch.softmax(top_k_filter(LOGITS[None], 3)[0], dim=0)
    torch.testing.assert_close(probs[[0, 3, 7]], torch.tensor([0.0615, 0.5775, 0.3610]), atol=1e-4, rtol=0)


def test_temperature_scaling():
    sharp = softmax_with_temperature(LOGITS, 0.1)
    assert sharp.argmax() == 3 and sharp[3] > 0.99
    flat = softmax_with_temperature(LOGITS, 5)
    assert flat.max() < 0.25


def test_top_k_never_picks_outside_the_top_k():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    allowed = torch.topk(logits, 5).indices
    pick = make_sampler(temperature=2.0, top_k=5)
    for _ in range(200):
        ids = pick(logits)
        assert all(ids[r, 0] in allowed[r] for r in range(4))


def test_top_p_keeps_smallest_set_reaching_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = top_p_filter(logits, 0.7).isfinite()[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7 <= 0.8
    assert top_p_filter(logits, 0.5).isfinite()[0].tolist() == [True, False, False, False]
    assert top_p_filter(logits, 1.0).isfinite().all()
    torch.manual_seed(1)
    pick = make_sampler(temperature=1.0, top_p=0.7)
    assert set(pick(logits.expand(500, 4)).flatten().tolist()) == {0, 1}


def test_temperature_zero_is_argmax_and_small_temperature_converges():
    torch.manual_seed(0)
    logits = torch.randn(3, 40)
    assert torch.equal(make_sampler(0.0)(logits), logits.argmax(-1, keepdim=True))
    assert torch.equal(make_sampler(1e-4)(logits), logits.argmax(-1, keepdim=True))


@pytest.mark.parametrize("kwargs,match", [({"temperature": -0.5}, "temperature"), ({"top_k": -1}, "top_k"),
                                          ({"top_k": 2.5}, "top_k"), ({"top_p": 0.0}, "top_p"),
                                          ({"top_p": 1.5}, "top_p")])
def test_bad_sampling_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_sampler(**kwargs)


def test_top_k_zero_is_off_everywhere():
    """The page's slider, the API, the CLI and the REPL: top_k 0 means no top-k filter, as None does."""
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5]])
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_k=0), next_token_probs(logits, 1.0))
    draws = [make_sampler(1.0, top_k=k, generator=torch.Generator().manual_seed(0))(logits.repeat(64, 1))
             for k in (0, None)]
    assert torch.equal(*draws)


def test_greedy_generate_is_deterministic_and_equals_book_loop():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    idx = torch.tensor([[5, 6, 7]])
    a = generate(model, idx, 30, 16)
    assert torch.equal(a, generate(model, idx, 30, 16))
    assert torch.equal(a, generate_text_simple(model, idx, 30, 16))


def test_sampled_generate_cached_equals_uncached_with_same_seed():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    idx = torch.tensor([[5, 6, 7]])
    torch.manual_seed(3)
    cached = generate(model, idx, 40, 16, temperature=1.0, top_k=20, use_cache=True)
    torch.manual_seed(3)
    uncached = generate(model, idx, 40, 16, temperature=1.0, top_k=20, use_cache=False)
    assert torch.equal(cached, uncached)


def test_generate_stops_at_eos():
    torch.manual_seed(0)
    model = GPTModel(TINY).eval()
    idx = torch.tensor([[5, 6, 7]])
    full = generate(model, idx, 10, 16)
    eos = int(full[0, 5])  # the 3rd generated token
    out = generate(model, idx, 10, 16, eos_id=eos)
    assert out.tolist() == full[:, :5].tolist()
