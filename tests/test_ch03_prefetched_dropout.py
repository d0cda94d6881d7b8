import contextlib
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ch03_attention.prefetched_dropout as prefetched
from ch03_attention import mersenne_twister as mt
from ch03_attention.fast_attention import book_to_fast_state_dict
from ch03_attention.prefetched_dropout import BookMasks, book_masks, use_prefetched_dropout
from ch04_gpt.model import GPTModel
from conftest import TINY


def test_characteristic_polynomial_is_the_twisters():
    """Known facts of MT19937's polynomial (degree 19,937, 135 terms), and every bit of a fresh sequence
    obeys it: the sum of words n + i over its terms i is zero, checked on all 32 bits at once."""
    phi = mt.characteristic_polynomial()
    assert phi.bit_length() - 1 == mt.DEGREE and phi.bit_count() == 135
    terms = [i for i in range(mt.DEGREE + 1) if phi >> i & 1]
    seq = mt.extend(mt.TwisterState.of(torch.Generator().manual_seed(77)).words, 3 * mt.DEGREE)
    for n in (1, 5_000, mt.DEGREE):
        assert np.bitwise_xor.reduce(seq[[n + i for i in terms]]) == 0
    assert np.bitwise_xor.reduce(seq[[n + i + 1 for i in terms[:-1]] + [n + terms[-1]]]) != 0  # not any sum


def test_extend_gives_the_words_numpy_draws():
    """The sequence ``extend`` makes, tempered as MT19937 tempers its output, is what numpy's MT19937 (an
    independent implementation) draws from the same state."""
    state = mt.TwisterState.of(torch.Generator().manual_seed(3))
    y = mt.extend(state.words, 624 * 5)[624:]
    y = y ^ (y >> 11)
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    bits = np.random.MT19937(0)
    bits.state = {"bit_generator": "MT19937", "state": {"key": state.words, "pos": 624}}
    assert np.array_equal(bits.random_raw(624 * 4).astype(np.uint32), y)


def test_jump_lands_on_torchs_own_state_byte_for_byte():
    rng = random.Random(0)
    for trial in range(12):
        g = torch.Generator().manual_seed(trial)
        torch.empty(rng.randrange(0, 2000), dtype=torch.bool).bernoulli_(0.5, generator=g)  # any position
        start = mt.TwisterState.of(g)
        # the first two jumps end on a block's last word (the next draw makes a new block), the others anywhere
        elements = (624 * (3 + trial) - start.pos) // 2 if trial < 2 else rng.randrange(624, 4000)
        jumped = mt.JumpAhead(2 * elements).apply(start)
        assert (jumped.pos == 624) == (trial < 2 or (start.pos + 2 * elements) % 624 == 0)
        torch.empty(elements, dtype=torch.float32).bernoulli_(0.9, generator=g)
        copy = torch.Generator()
        jumped.set_into(copy)
        assert torch.equal(copy.get_state(), g.get_state())
        assert torch.equal(torch.rand(100, generator=copy), torch.rand(100, generator=g))


def test_a_long_jump_like_a_training_step():
    g = torch.Generator().manual_seed(123)
    jump = mt.JumpAhead(2 * 5_000_000)
    jumped = jump.apply(mt.TwisterState.of(g))
    torch.empty(5_000_000, dtype=torch.bool).bernoulli_(0.9, generator=g)
    assert jumped.to_bytes() == g.get_state().numpy().tobytes()


def test_short_jumps_are_refused():
    with pytest.raises(ValueError, match="too short"):
        mt.JumpAhead(1000)


def tiny_pair(drop_rate=0.5):
    torch.manual_seed(3)
    book = GPTModel({**TINY, "drop_rate": drop_rate}, impl="book")
    fast = GPTModel({**TINY, "drop_rate": drop_rate})
    fast.load_state_dict(book_to_fast_state_dict(book.state_dict()))
    return book, fast


def train_steps(model, masks, steps=3, batch=(2, 12)):
    """Losses, gradients and generator states of a few forward + backward passes, from seed 11."""
    torch.manual_seed(11)
    out = []
    for _ in range(steps):
        idx, target = torch.randint(0, 97, batch), torch.randint(0, 97, batch)
        model.zero_grad()
        with masks.ahead(batch) if masks else contextlib.nullcontext():
            loss = F.cross_entropy(model.train()(idx).flatten(0, 1), target.flatten())
        loss.backward()
        out.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, torch.get_rng_state()))
    return out


@pytest.fixture
def two_cores_for_tiny_models(monkeypatch):
    """Split even a tiny model's masks between the two cores, and count the second core's parts."""
    monkeypatch.setattr(prefetched, "TWO_CORES_FROM", 1000)
    monkeypatch.setattr(prefetched, "JUMP_HEAD_START", 7)
    calls = []
    real = prefetched._draw_from_jump
    monkeypatch.setattr(prefetched, "_draw_from_jump", lambda *a: calls.append(1) or real(*a))
    return calls


def test_masks_drawn_ahead_on_two_cores_are_the_books(two_cores_for_tiny_models):
    """A fast GPT whose masks are drawn ahead, half of them from a jumped copy of the generator, trains as
    the book's model: same losses, same gradients, the global generator in the same state after each step."""
    book, fast = tiny_pair()
    masks = use_prefetched_dropout(fast)
    assert book_masks(fast) is masks
    expected, got = train_steps(book, None), train_steps(fast, masks)
    assert len(two_cores_for_tiny_models) == 2 and masks.two_cores  # step 1 learns the plan; 2 and 3 split it
    assert [shape for shape, _ in masks.plans[(2, 12)]] == [(2, 12, 32)] + [(2, 4, 12, 12), (2, 12, 32),
                                                                            (2, 12, 32)] * 2
    for (loss, grads, state), (book_loss, book_grads, book_state) in zip(got, expected):
        torch.testing.assert_close(loss, book_loss, atol=1e-5, rtol=0)
        assert torch.equal(state, book_state)
        book_grads = book_to_fast_state_dict(book_grads)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, book_grads[name], atol=1e-5, rtol=1e-4)


def test_same_as_torchs_dropout_bit_for_bit(two_cores_for_tiny_models):
    """Against the same fast model with PyTorch's dropout: not close, equal."""
    _, plain = tiny_pair(0.1)
    _, ahead = tiny_pair(0.1)
    masks = use_prefetched_dropout(ahead)
    for (loss, grads, state), (plain_loss, plain_grads, plain_state) in zip(train_steps(ahead, masks, 4),
                                                                          train_steps(plain, None, 4)):
        assert torch.equal(loss, plain_loss) and torch.equal(state, plain_state)
        assert all(torch.equal(grads[n], plain_grads[n]) for n in grads)
    assert masks.usable and masks.two_cores and len(two_cores_for_tiny_models) == 3  # steps 2-4 split


def test_one_thread_draws_on_one_core(two_cores_for_tiny_models):
    book, fast = tiny_pair()
    masks = use_prefetched_dropout(fast)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = train_steps(fast, masks)
    finally:
        torch.set_num_threads(threads)
    assert not two_cores_for_tiny_models
    assert all(torch.equal(a[2], b[2]) for a, b in zip(got, train_steps(book, None)))


def test_a_failing_second_core_is_caught_and_drawn_here(two_cores_for_tiny_models, monkeypatch):
    def broken(*args):
        raise OSError("no thread")

    monkeypatch.setattr(prefetched, "_draw_from_jump", broken)
    book, fast = tiny_pair()
    masks = use_prefetched_dropout(fast)
    got = train_steps(fast, masks)
    assert not masks.two_cores
    assert all(torch.equal(a[2], b[2]) for a, b in zip(got, train_steps(book, None)))


def test_a_jump_that_misses_is_caught_and_drawn_on_one_core(two_cores_for_tiny_models, monkeypatch):
    monkeypatch.setattr(mt.JumpAhead, "apply", lambda self, state: mt.TwisterState(
        state.words ^ np.uint32(1), 624, state.raw))  # a wrong state
    book, fast = tiny_pair()
    masks = use_prefetched_dropout(fast)
    got, expected = train_steps(fast, masks), train_steps(book, None)
    assert not masks.two_cores and len(two_cores_for_tiny_models) == 1
    for (loss, _, state), (book_loss, _, book_state) in zip(got, expected):
        torch.testing.assert_close(loss, book_loss, atol=1e-5, rtol=0)
        assert torch.equal(state, book_state)


def test_a_pass_that_draws_other_masks_than_planned_is_an_error():
    masks = BookMasks()
    drop = prefetched.PrefetchedDropout(0.5, masks)
    with masks.ahead("k"):
        drop(torch.ones(4, 4))
    with pytest.raises(RuntimeError, match="asked for"):
        with masks.ahead("k"):
            drop(torch.ones(2, 4))
    with pytest.raises(RuntimeError, match="were not taken"):
        with masks.ahead("k"):
            pass
    with pytest.raises(RuntimeError, match="not contiguous"):
        with masks.ahead("k"):
            drop(torch.ones(4, 4).t())  # the planned shape, but strided: PyTorch would draw it in another order
    with masks.ahead("k"):  # and nothing left over from the failures
        drop(torch.ones(4, 4))


def test_non_contiguous_inputs_are_never_drawn_ahead():
    """PyTorch draws a strided tensor's mask in memory order, not in the order of its elements: such a
    pass keeps drawing its masks one by one."""
    masks = BookMasks()
    drop = prefetched.PrefetchedDropout(0.5, masks)
    x = torch.ones(6, 4).t()
    with masks.ahead("k"):
        drop(x)
    assert masks.plans["k"] is None
    torch.manual_seed(0)
    with masks.ahead("k"):
        y = drop(x)
    torch.manual_seed(0)
    assert torch.equal(y, F.dropout(x, 0.5))


def test_eval_mode_and_p_zero_draw_nothing():
    masks = BookMasks()
    before = torch.get_rng_state()
    with masks.ahead("k"):
        prefetched.PrefetchedDropout(0.5, masks).eval()(torch.ones(3))
        prefetched.PrefetchedDropout(0.0, masks)(torch.ones(3))
    assert masks.plans["k"] == [] and torch.equal(before, torch.get_rng_state())
