"""HTTP servers on a free loopback port for the tests, in a thread: fake judges (chapter 7), the real server."""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@contextlib.contextmanager
def serving(server):
    """``server`` (already bound) answering in a thread while the context lasts; yields its base URL."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def quiet(handler):
    """A request handler class that logs nothing."""
    return type(handler.__name__, (handler,), {"log_message": lambda self, *args: None})


def local(handler):
    """A ThreadingHTTPServer of ``handler`` on a free loopback port."""
    return ThreadingHTTPServer(("127.0.0.1", 0), quiet(handler))


class FakeOllama(BaseHTTPRequestHandler):
    """Ollama's /api/chat as the book reads it: the answer streamed as JSON lines."""

    answers = {}
    requests = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        if body["model"] != "llama3":
            self.send_error(404, "model not found")
            return
        prompt = body["messages"][0]["content"]
        answer = next((a for key, a in self.answers.items() if key in prompt), "I'd say 50.")
        self.send_response(200)
        self.end_headers()
        for piece in (answer[:2], answer[2:]):  # two chunks, joined by query_model
            self.wfile.write((json.dumps({"message": {"role": "assistant", "content": piece}}) + "\n").encode())

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"Ollama is running")



@pytest.fixture
def ollama():
    FakeOllama.requests.clear()
    with serving(local(FakeOllama)) as url:
        yield f"{url}/api/chat"
