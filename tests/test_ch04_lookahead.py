import pytest
import torch

from ch02_text.errors import UserInputError

from ch04_gpt.generate import generate_text_cached, generate_text_simple
from ch04_gpt.lookahead import Drafts, can_look_ahead, generate_greedy_lookahead
from ch04_gpt.model import GPTModel
from conftest import TINY
from tiny_models import randomised, tiny


def model(**changes):
    torch.manual_seed(0)
    return GPTModel({**TINY, "context_length": 64, **changes}).eval()


def test_lookahead_gives_greedy_tokens_in_fewer_passes():
    m = model()
    idx = torch.tensor([[3, 14, 15, 92, 65]])
    expected = generate_text_cached(m, idx, 40, 64)
    assert torch.equal(expected, generate_text_simple(m, idx, 40, 64))
    good, bad, none = {}, {}, {}
    # a reference holding the continuation itself: most guesses are kept
    assert torch.equal(generate_greedy_lookahead(m, idx, 40, 64, Drafts([expected[0].tolist()]),
                                                 draft_tokens=8, stats=good),
                       expected)
    # a reference whose continuations are wrong: every guess is checked and dropped
    wrong = [(t + 1) % TINY["vocab_size"] for t in expected[0].tolist()]
    assert torch.equal(generate_greedy_lookahead(m, idx, 40, 64, Drafts([idx[0].tolist() + wrong[5:]]), stats=bad),
                       expected)
    assert torch.equal(generate_greedy_lookahead(m, idx, 40, 64, stats=none), expected)
    assert good["passes"] <= 10 and bad["passes"] >= 30  # 41 passes without guesses


def test_lookahead_falls_back_where_it_cannot_guess():
    idx = torch.tensor([[1, 2, 3]])
    sliding = GPTModel(tiny("gemma3")).eval()
    book = model()
    assert can_look_ahead(book, idx, 10, 64) and not can_look_ahead(book, idx, 62, 64)  # past the context
    assert not can_look_ahead(book, torch.tensor([[1, 2], [3, 4]]), 10, 64)  # batches
    assert not can_look_ahead(model().to(torch.bfloat16), idx, 10, 64)  # bf16 rounds several rows otherwise
    with pytest.raises(UserInputError, match="zero tokens"):  # generate_loop's sentence, not an IndexError
        generate_greedy_lookahead(book, torch.zeros(1, 0, dtype=torch.long), 5, 64)
    book_layers = GPTModel({**TINY, "context_length": 64}, impl="book").eval()
    assert not can_look_ahead(book_layers, idx, 10, 64)
    assert torch.equal(generate_greedy_lookahead(book_layers, idx, 10, 64),
                       generate_text_simple(book_layers, idx, 10, 64))
    assert torch.equal(generate_greedy_lookahead(book, idx, 62, 64), generate_text_simple(book, idx, 62, 64))
    assert not can_look_ahead(sliding, idx, 10, 24)  # a sliding window's ring cannot forget a guess
    assert torch.equal(generate_greedy_lookahead(sliding, idx, 10, 24), generate_text_cached(sliding, idx, 10, 24))


def test_lookahead_on_rope_and_grouped_query_and_experts():
    for family in ("llama", "qwen3-moe"):
        m = randomised(GPTModel(tiny(family)))
        idx = torch.tensor([[5, 7, 11]])
        expected = generate_text_simple(m, idx, 20, 24)
        stats = {}
        assert torch.equal(generate_greedy_lookahead(m, idx, 20, 24, Drafts([expected[0].tolist()]),
                                                     draft_tokens=8, stats=stats),
                           expected), family
        assert stats["passes"] <= 8  # 21 without guesses


def test_drafts_prefer_the_longest_run_and_the_text_itself():
    drafts = Drafts([[9, 1, 2, 7, 7], [4, 2, 5, 5]])
    assert drafts.guess([0, 2], 2) == [7, 7]        # first seen after "2" in the references
    assert drafts.guess([0, 4, 2], 2) == [5, 5]     # "4 2": the longer run wins
    assert drafts.guess([2, 8, 0, 2], 3) == [8, 0, 2]  # the text itself first
    assert drafts.guess([6], 2) == [] and Drafts().guess([1, 2], 4) == []
