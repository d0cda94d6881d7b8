"""python -m ch07_instructions.serve: any model of this project behind the OpenAI and Ollama APIs, and a chat page.

Unlike ``python -m ch05_pretraining.explore`` (one page over its own API): the clients readers already use talk
to the model. The ``openai`` package, LangChain and editors that speak the OpenAI API use ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions``; the ``ollama`` package and the book's own ``query_model`` use
``/api/chat``, ``/api/generate`` and ``/api/tags`` (so chapter 7's judge can be any model this project loads).
A chat page is at ``/chat``; the explorer's page is served at ``/`` by the same server (its form-encoded ``POST
/api/generate`` is told apart from Ollama's JSON one by the body), on one HTTP core
(``ch05_pretraining/engine/explorer.py``).

    python -m ch07_instructions.serve --checkpoint checkpoints/instructions.pt
    python -m ch07_instructions.serve --hf models/Qwen3-0.6B --port 0 --api-key secret
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "instructions.pt", "messages": [{"role": "user", "content": "Name a color."}]}'

Requests are decoded together: each joins the running batch between decoding steps and leaves it when it ends
(continuous batching, up to --max-batch rows; at most --max-queue more wait, the next gets 503 with Retry-After),
and each gets the tokens it would get alone; a client that disconnects frees its row at the next step. Chat messages are rendered with the checkpoint's prompt style
(chapter 7's train) or the folder's chat template. Loopback only unless --host says otherwise (then a line warns
when no --api-key is set); requests never name files; prompt, new tokens, body and queue are bounded.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit

from ch02_text.cli import CliParser, add_device_argument, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.hardware import pick_device
from ch02_text.option_types import port_number, positive_int
from ch05_pretraining.engine.chat import ChatFormat, checkpoint_chat
from ch05_pretraining.engine.explorer import ClientGone, Explorer, Handler, bind, make_server
from ch05_pretraining.engine.model_source import add_source_arguments, load_model_of
from ch05_pretraining.previous_chapters import decode_dtype, pack_for_decoding, render_chat

from .api import ApiError, Limits, OllamaRoutes, OpenAIRoutes, new_id, usage
from .serving import Generator, QueueFull

MAX_BODY = 2_000_000  # bytes of a request body
CHAT_PAGE = Path(__file__).resolve().parent / "chat_page"
CHAT_FILES = {"/chat": ("index.html", "text/html"), "/chat/": ("index.html", "text/html"),
              "/chat/chat.js": ("chat.js", "text/javascript"), "/chat/chat.css": ("chat.css", "text/css")}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser():
    p = CliParser(prog="python -m ch07_instructions.serve", description=__doc__)
    add_source_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1: this computer only)")
    p.add_argument("--port", type=port_number, default=8000, help="port (0: any free one, printed)")
    p.add_argument("--model-name", default=None, help="the name /v1/models lists (None: the file or folder name)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="weights while serving: auto = bfloat16 where the processor has bf16, else float32")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on the APIs")
    p.add_argument("--max-batch", type=positive_int, default=8, help="requests decoded together at most")
    p.add_argument("--max-queue", type=positive_int, default=16, help="requests that may wait for a row; more get 503")
    p.add_argument("--max-new-tokens", type=positive_int, default=512, help="tokens a request may ask for at most")
    p.add_argument("--max-prompt-tokens", type=positive_int, default=2048, help="prompt tokens at most")
    add_device_argument(p)
    return p


class Service:
    """The served model: its name, tokenizer, chat format, generator and the two APIs' routes."""

    def __init__(self, model, tokenizer, name, chat: ChatFormat | None, limits: Limits, max_queue=16, api_key=None,
                 max_batch=8):
        self.name, self.tokenizer, self.chat, self.limits, self.api_key = name, tokenizer, chat, limits, api_key
        stops = chat.stop_ids if chat else [getattr(tokenizer, "eot_token", None)]
        pack_for_decoding(model, rows=max_batch)  # weights laid out for a batch's rows (CPU)
        self.generator = Generator(model, tokenizer, [s for s in stops if s is not None], max_queue, max_batch,
                                   limits.max_prompt_tokens + limits.max_new_tokens)
        self.openai = OpenAIRoutes(name, self.encode, self.render, limits)
        self.ollama = OllamaRoutes(name, self.encode, self.render, limits)

    def encode(self, text, param) -> list[int]:
        ids = self.tokenizer.encode(text, allowed_special="all")
        if not ids:
            raise ApiError(f"{param} is empty", param)
        if len(ids) > self.limits.max_prompt_tokens:
            raise ApiError(f"{param} has {len(ids)} tokens; this server takes up to {self.limits.max_prompt_tokens}",
                           param)
        return ids

    def render(self, messages, plain=False) -> str:
        """A conversation as the model's prompt; ``plain``: a bare prompt stays bare on a model without a
        template (Ollama's /api/generate)."""
        if self.chat is None:
            if plain:
                return messages[-1]["content"]
            raise ApiError("this model has no chat template (a base model): send a prompt to /v1/completions or "
                           "/api/generate instead", "messages")
        return render_chat(self.chat.template, messages, bos_token=self.chat.bos, eos_token=self.chat.eos)


class ServeHandler(Handler):
    """The explorer's handler with the OpenAI and Ollama routes in front."""

    service: Service = None
    server_version = "llms-serve"

    def do_GET(self):  # noqa: N802
        path = urlsplit(self.path).path
        if path in ("/v1/models", "/api/tags"):
            return self.api(path, None)
        if path == "/api/version":
            return self.send_json(200, {"version": "0.6.0"})
        if path in CHAT_FILES:
            return self.send_file(*CHAT_FILES[path], CHAT_PAGE)
        return super().do_GET()

    def do_POST(self):  # noqa: N802
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        json_body = "json" in (self.headers.get("Content-Type") or "") or path != "/api/generate"
        if path not in ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate") or not json_body:
            return super().do_POST()  # the explorer's form-encoded POSTs
        if length > MAX_BODY:
            self.rfile.read(min(length, MAX_BODY))
            return self.api_error(path, ApiError(f"the body has {length:,} bytes; this server takes up to "
                                                 f"{MAX_BODY:,}", status=413))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return self.api_error(path, ApiError(f"the body is not JSON ({exc})"))
        self.api(path, body)

    def api(self, path, body):
        service = self.service
        if service.api_key and self.headers.get("Authorization") != f"Bearer {service.api_key}":
            return self.api_error(path, ApiError("a missing or wrong API key: send 'Authorization: Bearer KEY'",
                                                 status=401, code="invalid_api_key"))
        try:
            if path == "/v1/models":
                return self.send_json(200, service.openai.models())
            if path == "/api/tags":
                return self.send_json(200, service.ollama.tags())
            if path.startswith("/v1/"):
                return self.openai(body, chat=path.endswith("chat/completions"))
            return self.ollama(body, chat=path == "/api/chat")
        except ApiError as exc:
            self.api_error(path, exc)
        except UserInputError as exc:
            self.api_error(path, ApiError(str(exc)))
        except QueueFull as exc:
            self.api_error(path, ApiError(f"the server is busy ({exc}): retry in a moment", status=503),
                           {"Retry-After": "1"})
        except (ClientGone, BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - a bug: a sentence for the client, the traceback in the terminal
            traceback.print_exc(file=sys.stderr)
            self.api_error(path, ApiError("the server failed on this request (its traceback is in its terminal)",
                                          status=500))

    def api_error(self, path, exc: ApiError, headers=None):
        body = exc.openai() if path.startswith("/v1/") else {"error": str(exc)}
        self.send_json(exc.status, body, headers)

    def send_json(self, status, data, headers=None):
        payload = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def write(self, data: bytes):
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            raise ClientGone from None

    def start_stream(self, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    # -- OpenAI ----------------------------------------------------------------------------------------------
    def openai(self, body, chat):
        routes = self.service.openai
        request, options = routes.request(body, chat)
        rid = new_id("chatcmpl" if chat else "cmpl")
        if not options["stream"]:
            return self.send_json(200, routes.answer(self.service.generator.run(request), chat, rid))

        def event(data):
            self.write(f"data: {json.dumps(data)}\n\n".encode("utf-8"))

        started = []

        def on_text(piece):
            if not started:
                self.start_stream("text/event-stream")
                started.append(True)
                if chat:
                    event(routes.chunk(rid, chat, role=True))
            event(routes.chunk(rid, chat, text=piece))

        completion = self.service.generator.run(request, on_text)
        on_text("") if not started else None
        event(routes.chunk(rid, chat, finish=completion.finish_reason))
        if options["include_usage"]:
            event({**routes.chunk(rid, chat), "choices": [], "usage": usage(completion)})
        self.write(b"data: [DONE]\n\n")

    # -- Ollama ----------------------------------------------------------------------------------------------
    def ollama(self, body, chat):
        routes = self.service.ollama
        request, options = routes.request(body, chat)
        start = time.perf_counter()
        if not options["stream"]:
            completion = self.service.generator.run(request)
            return self.send_json(200, routes.final(chat, completion, completion.text, time.perf_counter() - start))
        started = []

        def on_text(piece):
            if not started:
                self.start_stream("application/x-ndjson")
                started.append(True)
            self.write((json.dumps(routes.piece(chat, piece)) + "\n").encode("utf-8"))

        completion = self.service.generator.run(request, on_text)
        if not started:
            self.start_stream("application/x-ndjson")
        self.write((json.dumps(routes.final(chat, completion, "", time.perf_counter() - start)) + "\n").encode())


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        if args.host not in LOOPBACK and not args.api_key:
            print(f"warning: serving on {args.host} without --api-key: anyone who reaches this address can use the "
                  "model", file=sys.stderr)
        device = pick_device(args.device)
        server = bind(args.host, args.port)
        try:
            serve(args, server, device)
        finally:
            server.server_close()
    return 0


def serve(args, server, device):
    model, tokenizer, prompt = load_model_of(args, device)
    model = model.to(decode_dtype(device, args.dtype))
    source = args.checkpoint or args.gpt2 or args.hf
    name = args.model_name or Path(source).name
    chat = ChatFormat.of(tokenizer, checkpoint_chat(args.checkpoint))
    service = Service(model, tokenizer, name, chat, Limits(args.max_new_tokens, args.max_prompt_tokens),
                      args.max_queue, args.api_key, args.max_batch)
    handler = type("Handler", (ServeHandler,), {"service": service, "explorer": Explorer(model, tokenizer, prompt,
                                                                                        source)})
    server.RequestHandlerClass = handler
    host, port = server.server_address[:2]
    print(f"serving on http://{host if ':' not in host else f'[{host}]'}:{port}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        service.generator.close()  # no generation thread may still compute while Python exits
        handler.explorer.close()
        raise


def make_service_server(service: Service, explorer, host="127.0.0.1", port=0):
    """A server of ``service`` (tests, the bench): ``make_server``'s core with the API routes."""
    server = make_server(explorer, host, port)
    server.RequestHandlerClass = type("Handler", (ServeHandler,), {"service": service, "explorer": explorer})
    return server


if __name__ == "__main__":
    sys.exit(main())
