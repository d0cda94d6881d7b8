"""Serving (issue 36): the server started on port 0 with a tiny chat model, used by real clients (the openai package,
sync, streaming and async; the ollama package; LangChain's ChatOpenAI; the book's urllib query_model), greedy text
compared with generate's; the explorer still at /; bad requests, a wrong key and a full queue answered in each
API's error shape."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the serving tests")

from chat_server import MESSAGES, NAME, greedy_reply  # noqa: E402
from ch05_pretraining.sampling import generate  # noqa: E402
from hf_tiny import chat_folder  # noqa: E402


def post(url, body, headers=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


def test_openai_client_sync_streaming_and_async(served):
    openai = pytest.importorskip("openai", reason="pip install -r requirements-dev.txt")
    url, model, tok, _ = served
    expected = greedy_reply(model, tok, MESSAGES, 12)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == [NAME]
    reply = client.chat.completions.create(model=NAME, messages=MESSAGES, temperature=0, max_tokens=12)
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens == 12 or reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    chunks = list(client.chat.completions.create(model=NAME, messages=MESSAGES, temperature=0, max_tokens=12,
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

    async def ask():
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
        return await client.chat.completions.create(model=NAME, messages=MESSAGES, temperature=0, max_tokens=12)
    assert asyncio.run(ask()).choices[0].message.content == expected
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model=NAME, messages=MESSAGES, n=2)


def test_completions_stop_seed_and_logprobs(served):
    url, model, tok, _ = served
    status, body = post(f"{url}/v1/completions", {"model": NAME, "prompt": "Every effort", "max_tokens": 8,
                                                  "temperature": 0, "logprobs": 2})
    answer = json.loads(body)
    ids = tok.encode("Every effort")
    expected = tok.decode(generate(model, torch.tensor([ids]), 8, model.context_length,
                                   eos_id=tok.stop_ids())[0, len(ids):].tolist())
    assert status == 200 and answer["choices"][0]["text"] == expected
    assert len(answer["choices"][0]["logprobs"]["token_logprobs"]) == answer["usage"]["completion_tokens"]
    if len(expected) > 2:  # a stop string cuts the text before it, and is not returned
        stop = expected[1:3]
        _, body = post(f"{url}/v1/completions", {"model": NAME, "prompt": "Every effort", "max_tokens": 8,
                                                 "temperature": 0, "stop": [stop]})
        assert json.loads(body)["choices"][0]["text"] == expected[:expected.find(stop)]
    sampled = [json.loads(post(f"{url}/v1/completions", {"model": NAME, "prompt": "Hi", "max_tokens": 6,
                                                         "temperature": 1.0, "seed": 7})[1])["choices"][0]["text"]
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed gives the same draws


def test_ollama_client_and_the_books_query_model(served):
    url, model, tok, _ = served
    expected = greedy_reply(model, tok, MESSAGES, 10)
    from ch07_instructions.judge import query_model
    # the book's plain POST reading JSON lines; no num_predict: up to the server's --max-new-tokens (64 here)
    assert query_model(MESSAGES[0]["content"], NAME, f"{url}/api/chat") == greedy_reply(model, tok, MESSAGES, 64)
    ollama = pytest.importorskip("ollama", reason="pip install -r requirements-dev.txt")
    client = ollama.Client(host=url)
    reply = client.chat(model=NAME, messages=MESSAGES, options={"temperature": 0, "num_predict": 10}, stream=False)
    assert reply.message.content == expected and reply.done
    pieces = [p.message.content for p in client.chat(model=NAME, messages=MESSAGES, stream=True,
                                                      options={"temperature": 0, "num_predict": 10})]
    assert "".join(pieces) == expected
    assert [m.model for m in client.list().models] == [NAME]
    generated = client.generate(model=NAME, prompt="Every effort moves you", options={"temperature": 0,
                                                                                      "num_predict": 10})
    assert generated.response == expected  # a chat model: the prompt goes through its template


def test_langchain_chat_openai(served):
    pytest.importorskip("langchain_openai", reason="pip install -r requirements-dev.txt")
    from langchain_openai import ChatOpenAI

    url, model, tok, _ = served
    chat = ChatOpenAI(base_url=f"{url}/v1", api_key="unused", model=NAME, temperature=0, max_tokens=10)
    expected = greedy_reply(model, tok, MESSAGES, 10)
    assert chat.invoke(MESSAGES[0]["content"]).content == expected
    assert "".join(c.content for c in chat.stream(MESSAGES[0]["content"])) == expected


def test_the_explorer_is_still_at_the_root(served):
    url = served[0]
    with urllib.request.urlopen(f"{url}/", timeout=10) as page:
        assert b"<html" in page.read().lower()
    with urllib.request.urlopen(f"{url}/api/info", timeout=10) as info:
        assert json.loads(info.read())["vocab_size"] > 0


@pytest.mark.parametrize("body, status, match", [
    ("{not json", 400, "not JSON"),
    ({"model": NAME, "messages": []}, 400, "messages must be a non-empty list"),
    ({"model": NAME, "messages": [{"role": "robot", "content": "x"}]}, 400, "role must be one of"),
    ({"model": NAME, "messages": MESSAGES, "max_tokens": -1}, 400, "max_tokens must be a whole number"),
    ({"model": NAME, "messages": MESSAGES, "temperature": "hot"}, 400, "temperature must be a number"),
    ({"model": NAME, "messages": MESSAGES, "tools": [{"type": "function"}]}, 400, "tools is not supported"),
    ({"model": NAME, "messages": [{"role": "user", "content": "word " * 400}]}, 400, "this server takes up to"),
    ({"model": "other", "messages": MESSAGES}, 404, "does not exist"),
])
def test_bad_requests_get_openais_error_shape(served, body, status, match):
    url = served[0]
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=10)
    assert exc.value.code == status
    error = json.loads(exc.value.read())["error"]
    assert match in error["message"] and {"type", "param", "code"} <= set(error)


def test_api_key_and_a_full_queue(served):
    url, model, tok, service = served
    service.api_key = "secret"
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            post(f"{url}/v1/chat/completions", {"model": NAME, "messages": MESSAGES})
        assert exc.value.code == 401
        status, _ = post(f"{url}/v1/chat/completions", {"model": NAME, "messages": MESSAGES, "max_tokens": 2},
                         {"Authorization": "Bearer secret"})
        assert status == 200
    finally:
        service.api_key = None
    service.generator.max_queue = 0  # no request may wait: the next is refused (tests/test_ch07_batching.py
    try:                             # fills a real queue)
        with pytest.raises(urllib.error.HTTPError) as exc:
            post(f"{url}/v1/chat/completions", {"model": NAME, "messages": MESSAGES})
        assert exc.value.code == 503 and exc.value.headers["Retry-After"] == "1"
    finally:
        service.generator.max_queue = 2


# -- the command --------------------------------------------------------------------------------------------
def test_the_command_serves_the_apis_until_ctrl_c(served, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    folder = chat_folder(tmp_path / "m")
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "ch07_instructions.serve", "--hf", str(folder), "--port", "0",
                             "--max-new-tokens", "2000", "--device", "cpu"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=root, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:") and line.endswith("/\n"), line
        base = line.split()[-1].rstrip("/")
        with urllib.request.urlopen(f"{base}/v1/models", timeout=10) as models:
            assert json.loads(models.read())["data"][0]["id"] == "m"  # the folder's name
        stream = urllib.request.urlopen(urllib.request.Request(  # a long generation, then Ctrl-C in the middle
            f"{base}/api/generate", data=json.dumps({"model": "m", "prompt": "Hi", "options": {
                "num_predict": 200, "temperature": 1.0}}).encode(), headers={"Content-Type": "application/json"}),
            timeout=10)
        stream.readline()
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        code = proc.wait(timeout=10)
        assert time.monotonic() - start < 2 and code in (0, 130)
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr, stderr
        stream.close()
    finally:
        proc.kill()


def test_a_busy_port_and_a_missing_model_are_one_line(tmp_path, capsys):
    import socket

    from ch07_instructions.serve import main
    from cli_checks import fails_with_one_line

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        fails_with_one_line(capsys, main, ["--checkpoint", str(tmp_path / "none.pt"), "--port", str(port)],
                            f"--port {port} is in use")
    fails_with_one_line(capsys, main, ["--checkpoint", str(tmp_path / "none.pt"), "--port", "0"], "does not exist")
