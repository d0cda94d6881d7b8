"""The explorer's server: a model's tokens, attention maps, next-token distribution and streamed generation
over HTTP, for the page in ``ch05_pretraining/explorer_page/``.

Unlike the REPL of ``generate`` (one reader, text only): several tabs at once, each request answered as JSON
(or, for a generation, as server-sent events, one per token). Only single model calls are serialised (a
lock around each forward pass), so a long generation in one tab does not hold up another tab's analysis;
a generation ends when its reader closes the connection (the next event cannot be written). Bad query
values get HTTP 400 with a sentence; nothing is fetched from any other host.

>>> parse_query("prompt=Hi&top_k=&top_p=0.9", {"prompt": str, "top_k": (int, 1, 50), "top_p": (float, 0, 1)})
{'prompt': 'Hi', 'top_k': None, 'top_p': 0.9}
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from ch02_text.errors import UserInputError
from ch02_text.text_stream import TextStream

from ..previous_chapters import (
    ATTENTION_CLASSES, GPTModel, forward_with_attention, generate_loop, pack_for_decoding, token_bytes,
)
from ..sampling import make_sampler, next_token_probs

PAGE = Path(__file__).resolve().parent.parent / "explorer_page"
STATIC = {"/": ("index.html", "text/html"), "/explorer.js": ("explorer.js", "text/javascript"),
          "/explorer.css": ("explorer.css", "text/css")}
MAX_PROMPT_CHARS = 20_000
MAX_NEW_TOKENS = 2_000
MAX_TEMPERATURE = 10.0
HEATMAP_MAX = 256   # longest window drawn as a heatmap (cells: its square)
MAX_BARS = 100
MAX_BODY = 1_000_000  # bytes of a POST body (a 20,000-character prompt, percent-encoded, fits)


class BadRequest(UserInputError):
    """A query value the explorer refuses (HTTP 400 with this sentence)."""


def parse_query(query: str, spec: dict) -> dict:
    """Values of ``spec``'s names from a query string: ``str``, or ``(int|float, low, high)``; a missing or
    empty number (or ``none``) is None. Out of range or not a number: BadRequest naming the value."""
    given = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    out = {}
    for name, kind in spec.items():
        raw = given.get(name)
        if kind is str:
            out[name] = raw
            continue
        cast, low, high = kind
        if raw is None or raw.strip().lower() in ("", "none"):
            out[name] = None
            continue
        try:
            value = cast(raw)
        except ValueError:
            raise BadRequest(f"{name}={raw!r} is not {'an integer' if cast is int else 'a number'}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise BadRequest(f"{name}={raw} is out of range: give a value from {low} to {high}")
        out[name] = value
    return out


class LockedModel:
    """The model with each call under one lock: generations of several tabs interleave token by token."""

    def __init__(self, model, lock):
        self.model, self.lock = model, lock

    def __call__(self, *args, **kwargs):
        with self.lock:
            return self.model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


class ClientGone(Exception):
    """The reader closed the connection (a closed tab, the stop button): end the generation."""


class Explorer:
    """A model and its tokenizer behind the page's requests."""

    def __init__(self, model, tokenizer, default_prompt="Every effort moves you", source=""):
        self.model, self.tokenizer, self.default_prompt, self.source = model.eval(), tokenizer, default_prompt, source
        self.lock = threading.Lock()
        self.cache, self.cache_lock = OrderedDict(), threading.Lock()  # token ids -> (last logits, maps)
        self.active = 0  # generations running
        self.closing = threading.Event()  # set on Ctrl-C: every generation ends at its next token
        self.layers = [m for m in model.modules() if isinstance(m, ATTENTION_CLASSES)]
        self.device, self.dtype = next(model.parameters()).device, next(model.parameters()).dtype
        self.n_params = sum(p.numel() for p in model.parameters())
        pack_for_decoding(model)  # as generate does: the same numbers, at close to memory speed

    # -- what the page needs to know once ------------------------------------------------------------
    def info(self) -> dict:
        heads = [getattr(m, "num_heads", 1) for m in self.layers]
        rung = getattr(self.model, "rung", None)
        return {"source": self.source, "model": type(self.model).__name__,
                "family": rung["name"] if isinstance(rung, dict) else self.model.cfg.family,
                "params": self.n_params, "dtype": str(self.dtype).removeprefix("torch."),
                "vocab_size": self.model.cfg.vocab_size, "n_vocab": self.tokenizer.n_vocab,
                "context_length": self.model.context_length, "n_layers": len(self.layers),
                "n_heads": max(heads, default=0), "has_attention": bool(self.layers),
                "default_prompt": self.default_prompt, "max_new_tokens": MAX_NEW_TOKENS,
                "max_temperature": MAX_TEMPERATURE, "max_prompt_chars": MAX_PROMPT_CHARS,
                "heatmap_max": HEATMAP_MAX, "active_generations": self.active}

    # -- one prompt -----------------------------------------------------------------------------------
    def encode(self, prompt) -> list[int]:
        if prompt is None or not prompt.strip():
            raise BadRequest("the prompt is empty: type some text to see its tokens")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise BadRequest(f"the prompt has {len(prompt):,} characters; the explorer takes up to "
                             f"{MAX_PROMPT_CHARS:,}: shorten it")
        return self.tokenizer.encode(prompt, allowed_special="all")

    def forward(self, window: list[int]):
        """(last position's logits (vocab,), maps or None) of the window, cached for the sliders."""
        key = tuple(window)
        with self.cache_lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        idx = torch.tensor([window], device=self.device)
        with self.lock:
            if len(window) <= HEATMAP_MAX:
                logits, maps = forward_with_attention(self.model, idx)
                maps = None if maps is None else [m[0].cpu() for m in maps]  # (heads, T, T) each
            else:
                with torch.inference_mode():
                    logits, maps = self.model(idx), None
        entry = (logits[0, -1].float().cpu(), maps)
        with self.cache_lock:
            self.cache[key] = entry
            while len(self.cache) > 8:
                self.cache.popitem(last=False)
        return entry

    def pieces(self, ids) -> list[dict]:
        return [{"id": i, "text": self.tokenizer.decode([i]), "bytes": token_bytes(self.tokenizer, i).hex(" ")}
                for i in ids]

    def bars(self, logits, temperature=0.0, top_k=None, top_p=None, n=20) -> list[dict]:
        """The top ``n`` tokens of the distribution ``generate`` samples from (sampling.next_token_probs)."""
        probs = next_token_probs(logits[None], temperature or 0.0, top_k, top_p)[0]
        values, ids = torch.topk(probs, min(n, probs.numel()))
        return [{"id": i, "text": self.tokenizer.decode([i]), "p": p}
                for i, p in zip(ids.tolist(), values.tolist()) if p > 0]

    def kv_cache_bytes(self, n_tokens: int) -> int | None:
        """Bytes the KV cache holds for ``n_tokens`` (a sliding layer keeps its window), None without one."""
        if not isinstance(self.model, GPTModel) or not self.model.supports_kv_cache:
            return None
        cfg, size = self.model.cfg, torch.empty((), dtype=self.dtype).element_size()
        total = 0
        for kind in cfg.layer_types:
            kept = min(n_tokens, cfg.sliding_window) if kind == "sliding" and cfg.sliding_window else n_tokens
            total += 2 * cfg.n_kv_heads * cfg.head_dim * kept * size
        return total

    def analyse(self, q: dict) -> dict:
        ids = self.encode(q["prompt"])
        context = self.model.context_length
        window = ids[-context:]
        logits, maps = self.forward(window)
        out = {"tokens": self.pieces(ids), "n_tokens": len(ids), "context_length": context,
               "seen_from": len(ids) - len(window), "kv_cache_bytes": self.kv_cache_bytes(len(window)),
               "next": self.bars(logits, q["temperature"], q["top_k"], q["top_p"], q["n"] or 20),
               "attention": self.attention(maps, q["layer"] or 0, q["head"], len(window))}
        return out

    def attention(self, maps, layer: int, head, n_tokens: int) -> dict | None:
        if not self.layers:
            return None
        if n_tokens > HEATMAP_MAX:
            return {"layer": layer, "head": head, "weights": None, "too_long": True}
        if layer >= len(maps):
            raise BadRequest(f"layer={layer} is not a layer of this model: give 0 to {len(maps) - 1}")
        weights = maps[layer]  # (heads, T, T)
        if head in (None, "", "avg"):
            grid, head = weights.mean(0), "avg"
        else:
            try:
                head = int(head)
            except ValueError:
                raise BadRequest(f"head={head!r} is not a head: give 0 to {weights.shape[0] - 1} or avg") from None
            if not 0 <= head < weights.shape[0]:
                raise BadRequest(f"head={head} is not a head of layer {layer}: give 0 to {weights.shape[0] - 1} "
                                 "or avg")
            grid = weights[head]
        return {"layer": layer, "head": head, "weights": grid.tolist(), "too_long": False}

    def next_tokens(self, q: dict) -> dict:
        ids = self.encode(q["prompt"])
        logits, _ = self.forward(ids[-self.model.context_length:])
        return {"next": self.bars(logits, q["temperature"], q["top_k"], q["top_p"], q["n"] or 20)}

    def count_generations(self, change: int) -> None:
        with self.cache_lock:
            self.active += change

    def close(self, seconds=1.5) -> None:
        """End every generation (at its next token) and wait for them, so no thread computes while Python exits."""
        self.closing.set()
        deadline = time.monotonic() + seconds
        while self.active and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- generation -----------------------------------------------------------------------------------
    def generate(self, q: dict, send) -> str:
        """Stream a continuation: ``send(event, data)`` per token; returns why it ended (length, eos, stopped)."""
        ids = self.encode(q["prompt"])
        temperature = q["temperature"] or 0.0
        generator = torch.Generator(device=self.device).manual_seed(123 if q["seed"] is None else q["seed"])
        pick_next = make_sampler(temperature, q["top_k"], q["top_p"], generator=generator)
        n_new = 50 if q["max_new_tokens"] is None else q["max_new_tokens"]
        eos = self.tokenizer.eot_token if q["stop_at_eos"] in ("1", "true", "on") else None
        count = [0]
        stream = TextStream(self.tokenizer, lambda piece: send("token", {"text": piece, "id": stream.ids[-1]}))

        def on_token(idx_next):
            if self.closing.is_set():
                raise ClientGone
            count[0] += 1
            before = stream.shown
            stream.add(idx_next)
            if stream.shown == before:  # text held back (half a character): the reader still hears of it
                send("token", {"text": "", "id": stream.ids[-1]})

        self.count_generations(+1)
        try:
            generate_loop(LockedModel(self.model, self.lock), torch.tensor([ids], device=self.device), n_new,
                          self.model.context_length, pick_next=pick_next, eos_id=eos, on_token=on_token)
        except ClientGone:
            return "stopped"
        finally:
            self.count_generations(-1)
        return "eos" if count[0] < n_new else "length"


# -- HTTP -----------------------------------------------------------------------------------------------
ANALYSE = {"prompt": str, "layer": (int, 0, 10_000), "head": str, "temperature": (float, 0.0, MAX_TEMPERATURE),
           "top_k": (int, 0, 10_000_000), "top_p": (float, 1e-9, 1.0), "n": (int, 1, MAX_BARS)}
GENERATE = {"prompt": str, "temperature": (float, 0.0, MAX_TEMPERATURE), "top_k": (int, 0, 10_000_000),
            "top_p": (float, 1e-9, 1.0), "max_new_tokens": (int, 0, MAX_NEW_TOKENS), "seed": (int, 0, 2 ** 63 - 1),
            "stop_at_eos": str}


class Handler(BaseHTTPRequestHandler):
    """GET only: the page's three files, /api/info, /api/analyse, /api/next and /api/generate (events)."""

    explorer: Explorer = None  # set by make_server on a subclass
    server_version = "llms-explorer"

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        self.answer(url.path, url.query)

    def do_POST(self):  # noqa: N802 - the page sends its values in the body: prompts longer than an address takes
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.send_json(413, {"error": f"the request has {length:,} bytes; the explorer takes up to "
                                                 f"{MAX_BODY:,}: shorten the prompt"})
        self.answer(urlsplit(self.path).path, self.rfile.read(length).decode("utf-8", errors="replace"))

    def answer(self, path, query):
        routes = {"/api/info": lambda: self.explorer.info(),
                  "/api/analyse": lambda: self.explorer.analyse(parse_query(query, ANALYSE)),
                  "/api/next": lambda: self.explorer.next_tokens(parse_query(query, ANALYSE))}
        try:
            if path in STATIC and self.command == "GET":
                self.send_file(*STATIC[path])
            elif path in routes:
                self.send_json(200, routes[path]())
            elif path == "/api/generate":
                self.stream(parse_query(query, GENERATE))
            else:
                self.send_json(404, {"error": f"there is nothing at {path}: open / for the explorer"})
        except UserInputError as exc:
            self.send_json(400, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - a programming error: a sentence for the page, the traceback here
            traceback.print_exc(file=sys.stderr)
            self.send_json(500, {"error": "the server failed on this request (its traceback is in the terminal "
                                          "that runs the explorer)"})

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a method it has no do_ for, a request line too long) as JSON sentences."""
        sentence = {405: "this method is not served: the explorer answers GET (and POST for the page)",
                    501: "this method is not served: the explorer answers GET (and POST for the page)",
                    414: "the address is too long: send the values in a POST body, as the page does"}
        self.send_json(405 if code == 501 else code, {"error": sentence.get(code, message or explain or str(code))})

    def send_file(self, name, kind, folder=PAGE):
        """A file of a page's own folder (a name from a fixed table: requests never name files)."""
        body = (folder / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, data):
        body = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, q):
        self.explorer.encode(q["prompt"])  # a bad prompt is a 400, before the events start
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def send(event, data):
            try:
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode("utf-8"))
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                raise ClientGone from None

        try:
            reason = self.explorer.generate(q, send)
            if reason != "stopped":
                send("done", {"reason": reason})
        except UserInputError as exc:
            send("failed", {"error": str(exc)})
        except ClientGone:
            pass
        except Exception:  # noqa: BLE001 - a bug mid-stream: the page hears a sentence, the terminal the traceback
            traceback.print_exc(file=sys.stderr)
            with contextlib.suppress(ClientGone):
                send("failed", {"error": "the generation failed on the server (its traceback is in the terminal "
                                         "that runs the explorer)"})

    def log_message(self, format, *args):  # noqa: A002 - quiet: the terminal shows the one serving line
        pass


def make_server(explorer: Explorer, host="127.0.0.1", port=8000) -> ThreadingHTTPServer:
    """A threaded server for ``explorer`` (port 0: any free port; ``server.server_address`` says which)."""
    handler = type("ExplorerHandler", (Handler,), {"explorer": explorer})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = type("ExplorerServer", (ThreadingHTTPServer,), {"address_family": family})((host, port), handler)
    server.daemon_threads = True
    return server


def bind(host: str, port: int):
    """The server's socket, bound before the model loads: a port in use is found at once."""
    if not host.strip():
        raise UserInputError("--host is empty: give an address, 127.0.0.1 for this computer only")
    try:
        return make_server(None, host, port)
    except socket.gaierror:
        raise UserInputError(f"--host {host!r} is not an address of this computer: use 127.0.0.1") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserInputError(f"--port {port} is in use on {host}: give another --port, or --port 0 for any "
                                 "free one") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UserInputError(f"--port {port} needs administrator rights: use a port above 1023") from None
        raise UserInputError(f"cannot serve on --host {host} ({exc.strerror or exc}): give an address of this "
                             "computer, such as 127.0.0.1") from None
