"""The generation behind the server: one request's tokens, streamed as text, with stop strings and log-probs.

Unlike ``generate``'s REPL (one reader at a terminal): requests from many HTTP clients, each a ``Request`` of
prompt ids and sampling settings. ``Generator.run`` decodes one request with the KV cache, giving its text in
pieces to ``on_text`` as it grows (a piece that could begin a stop string, or ends inside a UTF-8 character, is
held back until it cannot), and returns a ``Completion``: the text without the stop string, why it ended
(``stop`` or ``length``), the token counts and, when asked, each token's log-probability and its most likely
alternatives. Requests are taken one at a time in arrival order; at most ``max_queue`` wait, the next is
refused (``QueueFull``: HTTP 503). A client that goes away (``on_text`` raising) stops its request at once.

>>> held_back("Hello wor", ["world"]), held_back("Hello", ["\\n\\n"]), held_back("ab\\ufffd", [])
(6, 5, 2)
"""

from __future__ import annotations

import dataclasses
import threading

import torch

from ch02_text.errors import UserInputError

from .previous_chapters import make_sampler


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


class Generator:
    """One model serving requests in turn (see the module docstring)."""

    def __init__(self, model, tokenizer, stop_ids, max_queue=16):
        self.model, self.tokenizer, self.stop_ids = model.eval(), tokenizer, set(stop_ids)
        self.lock, self.count_lock = threading.Lock(), threading.Lock()
        self.max_queue, self.waiting = max_queue, 0
        self.device = model.tok_emb.weight.device
        self.closing = threading.Event()

    def close(self, seconds=1.5) -> None:
        """End the running generation at its next token and wait for it (no thread may compute while Python
        exits); requests after this are refused."""
        self.closing.set()
        if self.lock.acquire(timeout=seconds):
            self.lock.release()

    def run(self, request: Request, on_text=None) -> Completion:
        with self.count_lock:
            if self.closing.is_set():
                raise QueueFull("the server is shutting down")
            if self.waiting >= self.max_queue + 1:
                raise QueueFull(f"{self.waiting - 1} requests are waiting already")
            self.waiting += 1
        try:
            with self.lock:
                return self._decode(request, on_text)
        finally:
            with self.count_lock:
                self.waiting -= 1

    def _pick(self, request):
        """The request's sampler; with a seed, its own generator: the same tokens whatever else runs."""
        generator = None if request.seed is None else torch.Generator(self.device).manual_seed(request.seed)
        return make_sampler(request.temperature, request.top_k, request.top_p, generator=generator)

    @torch.inference_mode()
    def _decode(self, request, on_text):
        model, tok = self.model, self.tokenizer
        if len(request.ids) + request.max_tokens > model.context_length:
            raise UserInputError(f"the prompt ({len(request.ids)} tokens) and max_tokens {request.max_tokens} exceed "
                                 f"the model's context of {model.context_length} tokens: shorten one of them")
        pick, cache = self._pick(request), model.new_kv_cache(1)
        logits = model(torch.tensor([request.ids], device=self.device), kv_cache=cache, last_only=True)
        new, sent, text, finish, logprobs = [], 0, "", "length", [] if request.logprobs is not None else None
        for _ in range(request.max_tokens):
            if self.closing.is_set():
                raise QueueFull("the server is shutting down")
            row = logits[:, -1, :].float()
            token = int(pick(row)[0, 0])
            if token in self.stop_ids:
                finish = "stop"
                break
            new.append(token)
            if logprobs is not None:
                logprobs.append(self._logprob(row[0], token, request.logprobs))
            text = tok.decode(new)
            cut = min((text.find(s) for s in request.stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            ready = held_back(text, request.stop)
            if on_text is not None and ready > sent:
                on_text(text[sent:ready])
                sent = ready
            logits = model(torch.tensor([[token]], device=self.device), kv_cache=cache, last_only=True)
        if on_text is not None and len(text) > sent:
            on_text(text[sent:])  # what was held back, now final
        return Completion(text, finish, len(request.ids), len(new), logprobs)

    def _logprob(self, logits, token, top):
        values = torch.log_softmax(logits, dim=-1)
        best = torch.topk(values, top) if top else None
        decode = self.tokenizer.decode
        return {"token": decode([token]), "logprob": float(values[token]),
                "top": [] if best is None else [(decode([i]), float(v)) for v, i in zip(best.values.tolist(),
                                                                                      best.indices.tolist())]}
