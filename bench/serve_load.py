"""The server under load: one client against many at once (continuous batching), and memory over many requests.

    python -m bench.serve_load                       # GPT-124M and a Qwen3-0.6B-shaped model: about 10 minutes
    python -m bench.serve_load --models gpt2 --leak 0  # a quick look

Each model is served by the real command (``python -m ch07_instructions.serve ... --port 0``, loopback only) in
a process of its own, with random weights written as readers' files are (GPT-2's ``model.safetensors``; a bf16
Hugging Face folder for Qwen3-0.6B's shape, with a word-level ``tokenizer.json`` of its 151,936 ids). Clients
are threads of this process streaming ``/v1/completions`` (greedy, ``max_tokens`` new tokens, a different
prompt each): first one client alone, then ``--clients`` at once, each sending ``--requests`` in turn. Printed:
aggregate tokens/s (completion tokens / wall time) and its ratio to one client's, p50 / p95 latency to the
first token and per token after it, errors; then the server's resident memory after 100 and after ``--leak``
short requests (8 tokens, ``--clients`` at a time): equal when nothing leaks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.timing import machine_line

WORDS = "every effort moves you toward the light of a quiet morning in the old town by the sea".split()


def gpt2_model(folder: Path) -> list[str]:
    """GPT-124M (random, seed 123) as GPT-2's model.safetensors: the serve command's source options."""
    from bench.ch06_speed import initial_state

    return ["--gpt2", str(initial_state(folder))]


def qwen3_model(folder: Path) -> list[str]:
    """Qwen3-0.6B's shape (random) as a bf16 folder, with a word-level tokenizer.json of its 151,936 ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    from bench.lora_speed import write_folder

    write_folder(folder, 28)
    vocab = {**{w: i for i, w in enumerate(WORDS)}, "<unk>": len(WORDS)}
    vocab.update({f"t{i}": i for i in range(len(vocab), 151_936)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.WhitespaceSplit(), decoders.WordPiece(prefix="##")
    tok.save(str(folder / "tokenizer.json"))
    return ["--hf", str(folder)]


MODELS = {"gpt2": ("GPT-124M", gpt2_model), "qwen3": ("Qwen3-0.6B shape", qwen3_model)}


class Server:
    """``python -m ch07_instructions.serve`` on port 0 in a process of its own."""

    def __init__(self, source: list[str], max_batch: int, new_tokens: int):
        argv = [sys.executable, "-m", "ch07_instructions.serve", *source, "--port", "0", "--max-batch",
                str(max_batch), "--max-queue", "256", "--max-new-tokens", str(new_tokens)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("serving on "):
            raise SystemExit(f"the server did not start: {line}{self.proc.stderr.read()[-2000:]}")
        self.url = line.split()[-1].rstrip("/")
        with urllib.request.urlopen(f"{self.url}/v1/models", timeout=30) as response:
            self.model = json.loads(response.read())["data"][0]["id"]

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1]) / 1024

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def stream(server: "Server", prompt: str, max_tokens: int) -> dict:
    """One streamed completion: seconds to the first text, seconds of each later piece, tokens."""
    body = json.dumps({"model": server.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    request = urllib.request.Request(f"{server.url}/v1/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    start, times, tokens = time.perf_counter(), [], 0
    with urllib.request.urlopen(request, timeout=600) as response:
        for line in response:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                times.append(time.perf_counter() - start)
    return {"first": times[0] if times else None, "gaps": [b - a for a, b in zip(times, times[1:])],
            "tokens": tokens}


def prompt(i: int) -> str:
    return " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 9))


def load(server: Server, clients: int, requests: int, max_tokens: int, offset: int = 0) -> dict:
    """``clients`` threads, each sending ``requests`` in turn; what they measured and the wall time."""
    results, errors = [], []

    def client(c):
        for r in range(requests):
            try:
                results.append(stream(server, prompt(offset + c * requests + r), max_tokens))
            except Exception as exc:  # noqa: BLE001 - counted and shown
                errors.append(repr(exc))
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - start
    return {"results": results, "errors": errors, "wall": wall,
            "tokens_per_s": sum(r["tokens"] for r in results) / wall}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def report(label: str, run: dict) -> None:
    firsts = [r["first"] for r in run["results"] if r["first"] is not None]
    gaps = [g for r in run["results"] for g in r["gaps"]]
    print(f"  {label:<22} {run['tokens_per_s']:7.1f} tokens/s   first token p50 {pct(firsts, .5):6.2f} s "
          f"p95 {pct(firsts, .95):6.2f} s   per token p50 {1000 * pct(gaps, .5):6.1f} ms "
          f"p95 {1000 * pct(gaps, .95):6.1f} ms   {len(run['results'])} requests, {len(run['errors'])} errors",
          flush=True)
    for error in run["errors"][:3]:
        print(f"    error: {error}")


def bench_model(key: str, args, tmp: Path) -> None:
    name, write = MODELS[key]
    source = write(tmp / key)
    server = Server(source, args.clients, args.new_tokens)
    try:
        print(f"{name} ({' '.join(source[:1])}), {args.new_tokens} new tokens per request, greedy:", flush=True)
        load(server, 1, 1, 8)  # warm-up
        one = load(server, 1, args.requests, args.new_tokens)
        report("1 client", one)
        many = load(server, args.clients, args.requests, args.new_tokens, offset=100)
        report(f"{args.clients} clients at once", many)
        print(f"  aggregate: {many['tokens_per_s'] / one['tokens_per_s']:.2f}x one client's", flush=True)
        if args.leak:
            load(server, args.clients, 100 // args.clients, 8, offset=1000)
            after_100 = server.rss_mib()
            load(server, args.clients, (args.leak - 100) // args.clients, 8, offset=2000)
            print(f"  server memory after 100 requests {after_100:,.0f} MiB, after {args.leak:,} "
                  f"{server.rss_mib():,.0f} MiB", flush=True)
    finally:
        server.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.serve_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["gpt2", "qwen3"])
    p.add_argument("--clients", type=int, default=8, help="clients at once (and the server's --max-batch)")
    p.add_argument("--requests", type=int, default=2, help="requests each client sends in turn")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--leak", type=int, default=1000, help="short requests before the second memory reading (0: none)")
    args = p.parse_args(argv)
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            bench_model(key, args, Path(tmp))


if __name__ == "__main__":
    main()
