"""The explorer's server and CLI without a browser (issue 23): JSON endpoints against the model and the
sampling functions, 400s with a sentence, streamed generation equal to the generate CLI's, stops when the
reader leaves, tabs served at once; the command's serving line, Ctrl-C and its one-line refusals."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

from ch02_text.tokenizer_choice import choose_tokenizer, tokenizer_to_dict
from ch04_gpt.attention_maps import forward_with_attention
from ch04_gpt.config import model_config
from ch04_gpt.model import GPTModel
from ch05_pretraining.baselines import build_rung
from ch05_pretraining.checkpoint import save_checkpoint
from ch05_pretraining.engine.explorer import Explorer
from ch05_pretraining.generate import main as generate_main
from ch05_pretraining.sampling import next_token_probs
from explorer_site import CONTEXT, TEXT, serve, tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return choose_tokenizer("char", text=TEXT)


@pytest.fixture(scope="module")
def checkpoint(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("explore") / "model.pt"
    save_checkpoint(path, tiny_model(tok), tokenizer=tokenizer_to_dict(tok), run_options={"start_context": "to be"})
    return path


@pytest.fixture(scope="module")
def explorer(tok):
    return Explorer(tiny_model(tok), tok, "to be", source="tiny")


@pytest.fixture(scope="module")
def url(explorer):
    server, base = serve(explorer)
    yield base
    server.shutdown()
    server.server_close()


def get(base, path, **params):
    """(status, JSON) of a GET."""
    try:
        with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def events(base, **params):
    """The events of one generation: [(name, data), ...]."""
    with urllib.request.urlopen(f"{base}/api/generate?{urllib.parse.urlencode(params)}", timeout=60) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        blocks = r.read().decode("utf-8").strip().split("\n\n")
    out = []
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_info_describes_the_model(url, explorer):
    status, info = get(url, "/api/info")
    assert status == 200 and info["n_layers"] == 3 and info["n_heads"] == 4 and info["context_length"] == CONTEXT
    assert info["has_attention"] and info["default_prompt"] == "to be" and info["active_generations"] == 0


def test_analysis_is_the_tokenizer_the_model_and_the_sampling_functions(url, explorer, tok):
    prompt = "whether 'tis nobler"
    status, data = get(url, "/api/analyse", prompt=prompt, layer=2, head=1, temperature=1.5, top_k=7, n=20)
    assert status == 200
    ids = tok.encode(prompt)
    assert [t["id"] for t in data["tokens"]] == ids
    assert [t["text"] for t in data["tokens"]] == [tok.decode([i]) for i in ids]
    assert data["tokens"][0]["bytes"] == "77"  # 'w'
    logits, maps = forward_with_attention(explorer.model, torch.tensor([ids]))
    weights = torch.tensor(data["attention"]["weights"])
    torch.testing.assert_close(weights, maps[2][0, 1], atol=1e-6, rtol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(len(ids)), atol=1e-5)
    assert torch.equal(weights.triu(1), torch.zeros_like(weights))
    probs = next_token_probs(logits[:, -1].float(), 1.5, 7, None)[0]
    assert [b["id"] for b in data["next"]] == torch.topk(probs, 7).indices.tolist()  # top-k 7: 7 bars
    torch.testing.assert_close(torch.tensor([b["p"] for b in data["next"]]), torch.topk(probs, 7).values)
    # per layer 2 x kv heads x head_dim x tokens x 4 bytes (fp32)
    assert data["kv_cache_bytes"] == 3 * 2 * 4 * 16 * len(ids) * 4
    _, avg = get(url, "/api/analyse", prompt=prompt, layer=0, head="avg")
    torch.testing.assert_close(torch.tensor(avg["attention"]["weights"]), maps[0][0].mean(0), atol=1e-6, rtol=1e-5)


def test_the_bars_follow_temperature_top_k_and_top_p(url, explorer, tok):
    prompt = "to be or not"
    logits = explorer.model(torch.tensor([tok.encode(prompt)]))[:, -1].float()
    for settings in [dict(temperature=0), dict(temperature=0.7, top_p=0.8), dict(temperature=3, top_k=4),
                     dict(temperature=5)]:
        _, data = get(url, "/api/next", prompt=prompt, n=30, **settings)
        probs = next_token_probs(logits, settings["temperature"], settings.get("top_k"), settings.get("top_p"))[0]
        expected = {i: p for i, p in enumerate(probs.tolist()) if p > 0}
        top = sorted(expected, key=expected.get, reverse=True)[:30]
        assert [b["id"] for b in data["next"]] == top, settings
        assert [b["p"] for b in data["next"]] == pytest.approx([expected[i] for i in top], abs=1e-6)
    _, greedy = get(url, "/api/next", prompt=prompt)
    assert len(greedy["next"]) == 1 and greedy["next"][0]["p"] == 1.0
    _, off = get(url, "/api/next", prompt=prompt, temperature=2, top_k=0, n=30)  # 0 is off, as the page says
    _, unfiltered = get(url, "/api/next", prompt=prompt, temperature=2, n=30)
    assert off == unfiltered and len(off["next"]) > 1


@pytest.mark.parametrize("params,said", [
    (dict(prompt=""), "the prompt is empty"),
    (dict(prompt="   "), "the prompt is empty"),
    (dict(prompt="to be", layer=3), "layer=3 is not a layer of this model: give 0 to 2"),
    (dict(prompt="to be", head=4), "head=4 is not a head of layer 0"),
    (dict(prompt="to be", head="x"), "head='x' is not a head"),
    (dict(prompt="to be", temperature="abc"), "temperature='abc' is not a number"),
    (dict(prompt="to be", temperature=-1), "temperature=-1 is out of range"),
    (dict(prompt="to be", temperature="nan"), "temperature=nan is out of range"),
    (dict(prompt="to be", top_p=1.5), "top_p=1.5 is out of range"),
    (dict(prompt="to be", top_k=-1), "top_k=-1 is out of range"),
    (dict(prompt="to be", layer=1.5), "layer='1.5' is not an integer"),
    (dict(prompt="x" * 20_001), "the explorer takes up to 20,000"),
])
def test_bad_values_are_400_with_a_sentence(url, params, said):
    status, data = get(url, "/api/analyse", **params)
    assert status == 400 and said in data["error"], data


def test_bad_generation_values_and_unknown_paths(url):
    for params in [dict(prompt=""), dict(prompt="to be", max_new_tokens=5000), dict(prompt="to be", seed=-1)]:
        status, data = get(url, "/api/generate", **params)
        assert status == 400 and data["error"].endswith(("text to see its tokens", "from 0 to 2000",
                                                          "from 0 to 9223372036854775807")), data
    status, data = get(url, "/nothing/here")
    assert status == 404 and "open / for the explorer" in data["error"]
    with urllib.request.urlopen(f"{url}/") as r:
        page = r.read().decode("utf-8")
    assert "explorer.js" in page and "http" not in page.replace('"http://www.w3.org', "")  # nothing from elsewhere


def test_the_page_posts_prompts_longer_than_an_address_and_every_refusal_is_json(url):
    prompt = ("to be or not " * 1600)[:20_000]  # percent-encoded: longer than a request line may be
    body = urllib.parse.urlencode({"prompt": prompt, "layer": 0, "head": "avg"}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/analyse", data=body), timeout=60) as r:
        data = json.loads(r.read())
    assert data["n_tokens"] == 20_000 and data["seen_from"] == 20_000 - CONTEXT
    status, data = get(url, "/api/analyse", prompt="é" * 15_000)  # the same values in an address: too long
    assert status == 414 and "POST" in data["error"]
    for method in ("PUT", "DELETE", "PATCH"):
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/info", method=method), timeout=10)
        except urllib.error.HTTPError as e:
            assert e.code == 405 and "not served" in json.loads(e.read())["error"]
    status, data = get(url, "/api/analyse", prompt="to be", temperature=1e-300)
    assert status == 400 and "too small to divide by" in data["error"]


def test_a_prompt_longer_than_the_context_is_cropped(url, tok):
    prompt = TEXT[:60]
    status, data = get(url, "/api/analyse", prompt=prompt, layer=0, head=0)
    assert status == 200 and data["n_tokens"] == 60 and len(data["tokens"]) == 60
    assert data["seen_from"] == 60 - CONTEXT and len(data["attention"]["weights"]) == CONTEXT


def test_streamed_greedy_text_equals_the_generate_cli(url, checkpoint, capsys):
    got = events(url, prompt="to be or", max_new_tokens=30, temperature=0)
    assert got[-1] == ("done", {"reason": "length"}) and len(got) == 31
    explorer_server, base = serve(Explorer(*_load(checkpoint)))
    try:
        streamed = "".join(d["text"] for name, d in events(base, prompt="to be or", max_new_tokens=30)
                           if name == "token")
    finally:
        explorer_server.shutdown()
        explorer_server.server_close()
    cli = generate_main(["--checkpoint", str(checkpoint), "--prompt", "to be or", "--max-new-tokens", "30",
                         "--dtype", "float32", "--device", "cpu"])
    assert "to be or" + streamed == cli


def _load(checkpoint):
    from ch05_pretraining.engine.model_source import load_model

    model, tok, prompt = load_model(checkpoint=checkpoint)
    return model, tok, prompt


def test_sampling_is_seeded(url):
    def text(seed):
        return "".join(d.get("text", "") for _, d in events(url, prompt="to be", max_new_tokens=40, temperature=1.5,
                                                            seed=seed))
    assert text(7) == text(7) and text(7) != text(8)


def open_stream(base, **params):
    """A raw connection reading a generation's first event; the caller closes it."""
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    sock.sendall(f"GET /api/generate?{urllib.parse.urlencode(params)} HTTP/1.0\r\n\r\n".encode())
    received = b""
    while b"event: token" not in received:
        received += sock.recv(4096)
    return sock


def wait_for(condition, seconds=20):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.02)


def test_a_reader_who_leaves_ends_the_generation_and_tabs_are_served_at_once(url, explorer):
    first = open_stream(url, prompt="to be", max_new_tokens=2000, temperature=1.0)
    second = open_stream(url, prompt="or not", max_new_tokens=2000, temperature=1.0)
    assert explorer.active == 2  # two generations interleave, token by token
    status, data = get(url, "/api/analyse", prompt="that is the question", layer=1, head=0)
    assert status == 200 and explorer.active == 2  # answered while both go on
    first.close()
    wait_for(lambda: explorer.active == 1)
    second.close()
    wait_for(lambda: explorer.active == 0)


def test_a_model_without_attention_says_so(tok):
    cfg = model_config("gpt2-small", vocab_size=tok.n_vocab, context_length=8, emb_dim=16, n_heads=2, n_layers=1)
    server, base = serve(Explorer(build_rung(cfg, {"name": "ngram-mlp", "n": 3}).eval(), tok, source="mlp"))
    try:
        _, info = get(base, "/api/info")
        status, data = get(base, "/api/analyse", prompt="to be")
        assert not info["has_attention"] and info["n_layers"] == 0 and info["family"] == "ngram-mlp"
        assert status == 200 and data["attention"] is None and data["kv_cache_bytes"] is None and data["next"]
        assert "".join(d.get("text", "") for _, d in events(base, prompt="to be", max_new_tokens=5))
    finally:
        server.shutdown()
        server.server_close()


# -- the command ----------------------------------------------------------------------------------------
def run_cli(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ch05_pretraining.explore", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_the_command_serves_until_ctrl_c(checkpoint):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ch05_pretraining.explore", "--checkpoint", str(checkpoint),
                             "--port", "0", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:") and line.endswith("/\n"), line
        base = line.split()[-1].rstrip("/")
        status, info = get(base, "/api/info")
        assert status == 200 and info["default_prompt"] == "to be"  # the run's --start-context
        stream = open_stream(base, prompt="to be", max_new_tokens=2000, temperature=1.0)  # Ctrl-C mid-generation
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        code = proc.wait(timeout=10)
        assert time.monotonic() - start < 2 and code in (0, 130)
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "terminate" not in stderr, stderr
        stream.close()
    finally:
        proc.kill()


def test_a_port_in_use_a_bad_checkpoint_and_a_bad_option_are_one_line(checkpoint, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("--checkpoint", str(checkpoint), "--port", str(port))
    assert r.returncode == 1 and r.stderr == f"error: --port {port} is in use on 127.0.0.1: give another --port, " \
                                             "or --port 0 for any free one\n" and not r.stdout
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    for args, said in [(["--checkpoint", str(tmp_path / "junk.pt"), "--port", "0"], "is a text file"),
                       (["--checkpoint", str(tmp_path / "none.pt"), "--port", "0"], "does not exist"),
                       (["--checkpoint", str(checkpoint), "--port", "70000"], "--port: must be a port number"),
                       (["--checkpoint", str(checkpoint), "--host", "no.such.host.invalid"], "is not an address"),
                       (["--port", "0"], "one of the arguments --checkpoint --gpt2 --hf is required")]:
        r = run_cli(*args)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and said in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pt"]  # nothing created


@pytest.mark.parametrize("kind", ["LM1", "LM2", "LM3", "llama", "gemma3", "qwen3-moe"])
def test_every_kind_of_checkpoint_is_explored(kind, tok, tmp_path):
    """Ladder rungs (no attention, the book's single head, its multi-head) and the open-weight families (GQA,
    sliding windows, experts), each from a checkpoint file as the command reads it."""
    from ch05_pretraining.previous_chapters import FAMILIES

    sizes = dict(vocab_size=tok.n_vocab, context_length=CONTEXT, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    if kind.startswith("LM"):
        model = build_rung(model_config("gpt2-small", **sizes), {"name": kind, "n": 3, "n_blocks": 1})
    else:
        extra = dict(n_kv_heads=2, hidden_dim=48, sliding_window=4, full_every=2) if kind == "gemma3" else \
            dict(n_kv_heads=2, hidden_dim=48, n_experts=4, n_experts_per_token=2) if kind == "qwen3-moe" else \
            dict(n_kv_heads=1, hidden_dim=48)
        model = GPTModel(model_config("gpt2-small", **{**FAMILIES[kind], **sizes, **extra}))
    save_checkpoint(tmp_path / "m.pt", model, tokenizer=tokenizer_to_dict(tok))
    explorer = Explorer(*_load(tmp_path / "m.pt"))
    server, base = serve(explorer)
    try:
        _, info = get(base, "/api/info")
        status, data = get(base, "/api/analyse", prompt=TEXT[:30], layer=info["n_layers"] - 1 if info["n_layers"]
                           else 0, head="avg")
        assert status == 200 and data["next"] and len(data["tokens"]) == 30
        if kind == "LM1":
            assert not info["has_attention"] and data["attention"] is None
        else:
            weights = torch.tensor(data["attention"]["weights"])
            assert weights.shape == (CONTEXT, CONTEXT) and torch.allclose(weights.sum(-1), torch.ones(CONTEXT))
            assert torch.equal(weights.triu(1), torch.zeros_like(weights))
        if kind == "gemma3":  # the last layer is full; the first slides: nothing older than its window
            _, first = get(base, "/api/analyse", prompt=TEXT[:30], layer=0, head=0)
            assert torch.equal(torch.tensor(first["attention"]["weights"]).tril(-4), torch.zeros(CONTEXT, CONTEXT))
            assert data["kv_cache_bytes"] == (4 + CONTEXT) * 2 * 2 * 8 * 4  # a sliding layer keeps its window
        assert "".join(d.get("text", "") for _, d in events(base, prompt="to be", max_new_tokens=5))
    finally:
        server.shutdown()
        server.server_close()


def test_open_without_a_browser_says_so(checkpoint):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROWSER": "false"}  # a "browser" that fails
    proc = subprocess.Popen([sys.executable, "-m", "ch05_pretraining.explore", "--checkpoint", str(checkpoint),
                             "--port", "0", "--device", "cpu", "--open"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        url = proc.stdout.readline().split()[-1]
        assert proc.stdout.readline() == f"--open: no browser found here; open {url} in one\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) in (0, 130)
    finally:
        proc.kill()


def test_a_default_prompt_the_tokenizer_cannot_encode_falls_back_to_a_character(tmp_path):
    from ch05_pretraining.engine.model_source import encodable_prompt, load_model

    tok = choose_tokenizer("char", text="abc abc\n")
    assert encodable_prompt("cab", tok) == "cab" and encodable_prompt("Every effort moves you", tok) == "\n"
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model(tok), tokenizer=tokenizer_to_dict(tok), run_options={})
    assert load_model(str(path))[2] == "\n"  # the run stored no --start-context: not "Every effort moves you"
