"""Continuous batching (issue 36): requests decoded together by the server's Generator each get what they get
alone (greedy tokens equal generate's, a seed's draws the same whatever else runs); a client that goes away frees
its row; a full queue refuses the next request; closing ends every request."""

import threading
import time

import pytest
import torch

from ch04_gpt.model import GPTModel
from ch05_pretraining.sampling import generate
from ch07_instructions.serving import Generator, QueueFull, Request
from tiny_models import randomised, tiny


class Letters:
    """A tokenizer of the tiny models' 61 ids: one letter or digit each."""
    ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXY"

    def decode(self, ids):
        return "".join(self.ALPHABET[i] for i in ids)


PROMPTS = [[3, 14, 15], [9, 2, 6, 5, 35], [8], [9, 7, 9, 3, 2, 38], [4, 6], [26, 43, 3]]


@pytest.fixture(scope="module")
def model():
    return randomised(GPTModel(tiny("qwen3")))


def alone(model, ids, n):
    return Letters().decode(generate(model, torch.tensor([ids]), n, 24)[0, len(ids):].tolist())


def in_threads(generator, requests, pieces=None):
    """Each request run from its own thread at once, as HTTP clients send them; their completions in order
    (``pieces``: a list that gets each request's streamed pieces)."""
    out = [None] * len(requests)
    if pieces is not None:
        pieces.extend([] for _ in requests)

    def one(i):
        try:
            out[i] = generator.run(requests[i], None if pieces is None else pieces[i].append)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[i] = exc
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    return out


def test_requests_decoded_together_get_what_each_gets_alone(model):
    generator = Generator(model, Letters(), [], max_queue=8, max_batch=3)
    try:
        lengths = [12, 3, 9, 14, 1, 7]  # rows leave at different steps and waiting requests take them
        got = in_threads(generator, [Request(p, n, temperature=0.0) for p, n in zip(PROMPTS, lengths)])
        assert [c.text for c in got] == [alone(model, p, n) for p, n in zip(PROMPTS, lengths)]
        assert [c.completion_tokens for c in got] == lengths and all(c.finish_reason == "length" for c in got)
        assert generator.jobs == [] and generator.cache.rows == 0
    finally:
        generator.close()


def test_stop_strings_and_log_probs_per_row(model):
    generator = Generator(model, Letters(), [], max_queue=8, max_batch=4)
    try:
        text = alone(model, PROMPTS[1], 10)
        stop = text[4:6]
        pieces = []
        got = in_threads(generator, [Request(PROMPTS[1], 10, temperature=0.0, stop=[stop]),
                                     Request(PROMPTS[0], 10, temperature=0.0, logprobs=2),
                                     Request(PROMPTS[2], 10, temperature=0.0)], pieces)
        assert got[0].text == text[:text.find(stop)] and got[0].finish_reason == "stop"
        assert [p["token"] for p in got[1].logprobs] == list(alone(model, PROMPTS[0], 10))
        assert all(p["top"][0][1] >= p["logprob"] - 1e-6 for p in got[1].logprobs)
        assert ["".join(p) for p in pieces] == [c.text for c in got]  # streamed = returned, stop text held back
    finally:
        generator.close()


def test_a_seed_draws_the_same_tokens_whatever_else_runs(model):
    generator = Generator(model, Letters(), [], max_queue=8, max_batch=4)
    try:
        seeded = Request(PROMPTS[3], 16, temperature=1.0, top_k=20, seed=7)
        first = generator.run(seeded).text
        busy = in_threads(generator, [Request(p, 16, temperature=1.0) for p in PROMPTS[:3]] + [seeded])
        assert busy[3].text == first and len(first) == 16
    finally:
        generator.close()


def test_a_client_that_goes_away_frees_its_row(model):
    generator = Generator(model, Letters(), [], max_queue=8, max_batch=2)
    try:
        def hang_up(piece):
            raise ConnectionResetError("the client went away")
        with pytest.raises(ConnectionResetError):
            generator.run(Request(PROMPTS[0], 20, temperature=0.0), hang_up)
        deadline = time.monotonic() + 5
        while generator.jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert generator.jobs == [] and generator.cache.rows == 0
        assert generator.run(Request(PROMPTS[1], 5, temperature=0.0)).text == alone(model, PROMPTS[1], 5)
    finally:
        generator.close()


def test_a_full_queue_refuses_the_next_request_and_closing_ends_the_waiting_ones(model):
    generator = Generator(model, Letters(), [], max_queue=1, max_batch=1, start=False)
    waiting = threading.Thread(target=lambda: results.append(generator.run(Request(PROMPTS[0], 4, temperature=0.0))))
    results = []
    waiting.start()
    deadline = time.monotonic() + 5
    while generator.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(QueueFull, match="1 requests are waiting"):
        generator.run(Request(PROMPTS[1], 4))
    generator.start()
    waiting.join(10)
    assert results[0].text == alone(model, PROMPTS[0], 4)
    generator.close()
    assert not generator.thread.is_alive()
    with pytest.raises(QueueFull, match="shutting down"):
        generator.run(Request(PROMPTS[1], 4))


def test_a_request_beyond_what_a_row_holds_is_refused_before_it_waits(model):
    generator = Generator(model, Letters(), [], max_len=10, start=False)
    with pytest.raises(Exception, match="exceed the 10 tokens this server holds per request"):
        generator.run(Request(PROMPTS[0], 8))
    assert generator.waiting == 0
