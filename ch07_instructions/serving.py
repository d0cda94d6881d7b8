"""The generation behind the server: many requests decoded together (continuous batching), each streamed as text.

Unlike ``generate``'s REPL (one reader at a terminal) and ``generate_batch`` (rows that start together): requests
from many HTTP clients, each a ``Request`` of prompt ids and sampling settings, join the running batch between
decoding steps and leave it when they finish. ``Generator.run`` hands a request to the one decoding thread and
gives its text in pieces to ``on_text`` as it grows (a piece that could begin a stop string, or ends inside a
UTF-8 character, is held back until it cannot); it returns a ``Completion``: the text without the stop string,
why it ended (``stop`` or ``length``), the token counts and, when asked, each token's log-probability and its
most likely alternatives.

The decoding thread encodes a new request's prompt alone, then adds its keys and values as a row of a
``RowKVCache``: every step feeds each row's last token, at that row's own position, attending to its own keys
only, so a request gets the tokens it would get alone (greedy ones are ``generate``'s; a ``seed`` draws from the
request's own generator, whatever else runs). At most ``max_batch`` rows decode together; at most ``max_queue``
requests wait for a row, the next is refused (``QueueFull``: HTTP 503). A client that goes away (``on_text``
raising) frees its row at the next step.

>>> held_back("Hello wor", ["world"]), held_back("Hello", ["\\n\\n"]), held_back("ab\\ufffd", [])
(6, 5, 2)
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import sys
import threading
import traceback

import torch

from ch02_text.errors import UserInputError

from .previous_chapters import RowKVCache, make_sampler


class QueueFull(Exception):
    """More requests are waiting than the server takes (HTTP 503, retry later)."""


@dataclasses.dataclass
class Request:
    ids: list
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list = dataclasses.field(default_factory=list)
    logprobs: int | None = None  # None: none; N: each token's and its N most likely alternatives'


@dataclasses.dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list | None = None  # per token: {"token", "logprob", "top": [(token, logprob), ...]}


def held_back(text: str, stops) -> int:
    """How many of ``text``'s characters may be sent now: none that could begin a stop string, none of an
    unfinished UTF-8 character (decoded as U+FFFD)."""
    safe = len(text)
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                safe = min(safe, len(text) - k)
                break
    while safe > 0 and text[safe - 1] == "\ufffd":
        safe -= 1
    return safe


class Job:
    """One request on its way: its sampler and tokens so far (the decoding thread's), and the events it sends
    to the thread that waits for it (``("text", piece)``, then ``("done", Completion)`` or ``("error", exc)``)."""

    def __init__(self, request: Request, pick):
        self.request, self.pick = request, pick
        self.events, self.cancelled = queue.SimpleQueue(), threading.Event()
        self.new, self.sent, self.text, self.finish = [], 0, "", None
        self.logprobs = [] if request.logprobs is not None else None

    def completion(self) -> Completion:
        return Completion(self.text, self.finish or "length", len(self.request.ids), len(self.new), self.logprobs)


class Generator:
    """One model serving many requests at once (see the module docstring). ``start=False``: the decoding thread
    starts at ``start()`` (requests wait until then)."""

    def __init__(self, model, tokenizer, stop_ids, max_queue=16, max_batch=8, max_len=None, start=True):
        self.model, self.tokenizer, self.stop_ids = model.eval(), tokenizer, set(stop_ids)
        self.max_queue, self.max_batch = max_queue, max_batch
        self.max_len = min(max_len or model.context_length, model.context_length)
        self.device = model.tok_emb.weight.device
        self.cache = RowKVCache.of(model, max_batch, self.max_len)
        self.pending, self.jobs = collections.deque(), []  # waiting for a row; decoding, one per cache row
        self.wake, self.closing = threading.Condition(), threading.Event()
        self.thread = threading.Thread(target=self._loop, name="decoding", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self.thread.start()

    def close(self, seconds=1.5) -> None:
        """End the running step and every request (no thread may compute while Python exits); requests after
        this are refused."""
        with self.wake:
            self.closing.set()
            self.wake.notify()
        if self.thread.is_alive():
            self.thread.join(seconds)

    @property
    def waiting(self) -> int:
        return len(self.pending)

    def run(self, request: Request, on_text=None) -> Completion:
        """Decode ``request``; its text goes to ``on_text`` in pieces as it grows. Blocks until it ends."""
        if len(request.ids) + request.max_tokens > self.max_len:
            raise UserInputError(f"the prompt ({len(request.ids)} tokens) and max_tokens {request.max_tokens} "
                                 f"exceed the {self.max_len} tokens this server holds per request: shorten one "
                                 "of them")
        job = Job(request, self._pick(request))
        with self.wake:
            if self.closing.is_set():
                raise QueueFull("the server is shutting down")
            if len(self.pending) >= self.max_queue:
                raise QueueFull(f"{len(self.pending)} requests are waiting already")
            self.pending.append(job)
            self.wake.notify()
        try:
            while True:
                kind, value = job.events.get()
                if kind == "done":
                    return value
                if kind == "error":
                    raise value
                if on_text is not None:
                    on_text(value)
        finally:
            job.cancelled.set()  # a client gone (on_text raised): its row is freed at the next step

    def _pick(self, request):
        """The request's sampler; with a seed, its own generator: the same tokens whatever else runs."""
        generator = None if request.seed is None else torch.Generator(self.device).manual_seed(request.seed)
        return make_sampler(request.temperature, request.top_k, request.top_p, generator=generator)

    # -- the decoding thread ----------------------------------------------------------------------------------
    def _loop(self):
        with torch.inference_mode():
            while True:
                with self.wake:
                    while not (self.pending or self.jobs or self.closing.is_set()):
                        self.wake.wait()
                    if self.closing.is_set():
                        break
                    free = self.max_batch - len(self.jobs)
                    joining = [self.pending.popleft() for _ in range(min(free, len(self.pending)))]
                for i, job in enumerate(joining):
                    if self.closing.is_set():  # long prompts may be waiting: end before encoding them
                        with self.wake:
                            self.pending.extendleft(reversed(joining[i:]))
                        break
                    self._guarded(lambda: self._join(job), [job])
                if self.jobs and not self.closing.is_set():
                    self._guarded(self._step, list(self.jobs))
        shutting = QueueFull("the server is shutting down")
        for job in [*self.jobs, *self.pending]:
            job.events.put(("error", shutting))

    def _guarded(self, work, jobs):
        """``work()`` for ``jobs``; a failure (a bug) ends those jobs with it, and the thread goes on."""
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - the request fails, the server stays up
            traceback.print_exc(file=sys.stderr)
            for job in jobs:
                job.events.put(("error", exc))
                if job in self.jobs:
                    self._leave(job)

    def _join(self, job):
        """Encode the prompt alone, take the first token, and give the request a row if it goes on."""
        ids = job.request.ids
        # the prompt's keys alone (no rings: the row keeps them all)
        alone = self.model.new_kv_cache(1, max_len=len(ids), rings=False, dtype=self.cache.keys[0].dtype)
        logits = self.model(torch.tensor([ids], device=self.device), kv_cache=alone, last_only=True)
        if job.cancelled.is_set() or self._take(job, logits[0, -1].float()):
            return job.events.put(("done", job.completion()))
        self.cache.add(alone)
        self.jobs.append(job)

    def _step(self):
        """One decoding step of every row; the rows that end leave."""
        tokens = torch.tensor([[job.new[-1]] for job in self.jobs], device=self.device)  # (rows, 1)
        logits = self.model(tokens, kv_cache=self.cache, last_only=True)[:, -1].float()  # (rows, vocab)
        done = [job for job, row in zip(self.jobs, logits) if job.cancelled.is_set() or self._take(job, row)]
        for job in done:
            self._leave(job)
            job.events.put(("done", job.completion()))

    def _leave(self, job):
        row = self.jobs.index(job)
        self.cache.remove(row)  # the last row moves into ``row``
        self.jobs[row] = self.jobs[-1]
        self.jobs.pop()

    def _take(self, job, logits) -> bool:
        """Pick the job's next token from its ``logits`` (vocab,), send the text that is final; True: it ended."""
        request = job.request
        token = int(job.pick(logits[None])[0, 0])
        if token in self.stop_ids:
            job.finish = "stop"
            return self._flush(job)
        job.new.append(token)
        if job.logprobs is not None:
            job.logprobs.append(self._logprob(logits, token, request.logprobs))
        job.text = self.tokenizer.decode(job.new)
        cut = min((job.text.find(s) for s in request.stop if s in job.text), default=-1)
        if cut >= 0:
            job.text, job.finish = job.text[:cut], "stop"
            return self._flush(job)
        if len(job.new) == request.max_tokens:
            return self._flush(job)
        ready = held_back(job.text, request.stop)
        if ready > job.sent:
            job.events.put(("text", job.text[job.sent:ready]))
            job.sent = ready
        return False

    @staticmethod
    def _flush(job) -> bool:
        """Send what was held back, now final; the job has ended."""
        if len(job.text) > job.sent:
            job.events.put(("text", job.text[job.sent:]))
            job.sent = len(job.text)
        return True

    def _logprob(self, logits, token, top):
        values = torch.log_softmax(logits, dim=-1)
        best = torch.topk(values, top) if top else None
        decode = self.tokenizer.decode
        return {"token": decode([token]), "logprob": float(values[token]),
                "top": [] if best is None else [(decode([i]), float(v)) for v, i in zip(best.values.tolist(),
                                                                                      best.indices.tolist())]}
