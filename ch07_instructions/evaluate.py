"""python -m ch07_instructions.evaluate: score a fine-tuned model's answers 0-100 with a judge, no paid API needed.

Unlike section 7.8 (the book's Llama 3 through Ollama, in the walk-through): the judge is any of three, with the
book's judging prompt and settings (seed 123, temperature 0, a 2048-token context where the judge takes them):

    python -m ch07_instructions.evaluate --responses instruction-data-with-response.json            # Ollama
    python -m ch07_instructions.evaluate --responses FILE --judge openai --url http://localhost:8000 \\
        --judge-model my-model                                 # any OpenAI-compatible server (/v1/chat/completions)
    python -m ch07_instructions.evaluate --responses FILE --judge local --judge-hf models/Qwen3-0.6B

``local`` loads the judge with this project (a Hugging Face folder or a checkpoint; no server at all) and asks
it in its chat template. It prints ``Number of scores: N of M`` and ``Average score: ...`` as the book does; an
answer the judge gives no score in is counted and shown, not a crash. The scores are written beside the answers
(``FILE.scores.json``: each entry with its ``score``, and the judge) so that runs can be compared.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import torch

from ch02_text.cli import CliParser, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.option_types import positive_int
from ch02_text.safe_files import atomic_write_bytes, check_writable

from ch05_pretraining.engine.chat import ChatFormat, checkpoint_chat
from ch05_pretraining.engine.model_source import load_model

from .judge import JUDGE_MODEL, OLLAMA_URL, START_HINT, judge_errors, query_model, score_prompt, server_answers
from .previous_chapters import generate, render_chat
from .responses import RESPONSE_KEY

JUDGES = ("ollama", "openai", "local")
OPENAI_URL = "http://localhost:8000"
SCORE = re.compile(r"\b(100|[1-9]?[0-9])\b")


def build_parser():
    p = CliParser(prog="python -m ch07_instructions.evaluate", description=__doc__)
    p.add_argument("--responses", required=True, help="the answers: train's instruction-data-with-response.json")
    p.add_argument("--key", default=RESPONSE_KEY, help="the entries' field holding the answer to score")
    p.add_argument("--judge", choices=JUDGES, default="ollama",
                   help="ollama: an Ollama server's /api/chat (the book's); openai: an OpenAI-compatible server's "
                        "/v1/chat/completions; local: a model loaded here (--judge-hf or --judge-checkpoint)")
    p.add_argument("--url", default=None, help=f"the server (None: {OLLAMA_URL} for ollama, {OPENAI_URL} for openai)")
    p.add_argument("--judge-model", default=None, help=f"the server's model (None: the book's {JUDGE_MODEL})")
    p.add_argument("--api-key", default=None, help="openai: the server's key (None: $OPENAI_API_KEY, if set)")
    p.add_argument("--judge-hf", default=None, help="local: a Hugging Face model folder with a chat template")
    p.add_argument("--judge-checkpoint", default=None, help="local: a checkpoint of chapter 7's train")
    p.add_argument("--max-new-tokens", type=positive_int, default=16, help="local: tokens of each answer at most")
    p.add_argument("--scores", default=None, help="where to write the scores (None: RESPONSES.scores.json)")
    return p


def read_responses(path, key) -> list[dict]:
    """The entries of the answers file, each with an answer under ``key`` (one line naming the first without)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--responses '{path}' does not exist: write it with python -m ch07_instructions.train")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"--responses '{path}' is not JSON ({exc}): give the answers file train wrote") from None
    if not isinstance(entries, list) or not entries:
        raise UserInputError(f"--responses '{path}' holds no entries: give the answers file train wrote")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
            raise UserInputError(f"--responses '{path}': entry {i} has no answer under '{key}': give a file of "
                                 f"answers (--key names the field)")
        if "messages" not in entry and not {"instruction", "output"} <= set(entry):
            raise UserInputError(f"--responses '{path}': entry {i} has neither instruction and output nor messages")
    return entries


def judging_prompt(entry, key) -> str:
    """The book's prompt (listing 7.10's, the integer alone); a conversation as its last user message and the
    dataset's last assistant message."""
    if "messages" in entry:
        messages = entry["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        user = next(m["content"] for m in reversed(messages[:last]) if m["role"] == "user")
        entry = {"instruction": user, "input": "", "output": messages[last]["content"], key: entry[key]}
    return score_prompt(entry, key, integer_only=True)


class OllamaJudge:
    def __init__(self, url, model):
        self.url, self.model = url or OLLAMA_URL, model or JUDGE_MODEL
        if not server_answers(self.url):
            raise UserInputError(f"no server answers at {self.url}: {START_HINT}")

    def ask(self, prompt) -> str:
        with judge_errors(self.url, self.model):
            return query_model(prompt, self.model, self.url)


class OpenAIJudge:
    """``/v1/chat/completions`` of any OpenAI-compatible server (this project's serve, vLLM, llama.cpp, ...)."""

    def __init__(self, url, model, api_key):
        self.url = (url or OPENAI_URL).rstrip("/")
        self.url = self.url if self.url.endswith("/chat/completions") else (
            self.url + ("/chat/completions" if self.url.endswith("/v1") else "/v1/chat/completions"))
        self.model, self.key = model or JUDGE_MODEL, api_key or os.environ.get("OPENAI_API_KEY")
        if not server_answers(self.url):
            raise UserInputError(f"no server answers at {self.url}: start an OpenAI-compatible server there or "
                                 "give --url")

    def ask(self, prompt) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                "seed": 123}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), method="POST")
        request.add_header("Content-Type", "application/json")
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.loads(response.read())["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise UserInputError(f"the server at {self.url} answered {exc.code} {exc.reason} ({detail}): check "
                                 "--judge-model and --api-key") from None
        except (urllib.error.URLError, OSError, json.JSONDecodeError, KeyError, IndexError) as exc:
            raise UserInputError(f"the server at {self.url} did not answer as /v1/chat/completions does "
                                 f"({type(exc).__name__}: {exc})") from None


class LocalJudge:
    """A model loaded here, asked greedily in its chat template (a checkpoint: its prompt style)."""

    def __init__(self, hf, checkpoint, max_new_tokens):
        if not (hf or checkpoint) or (hf and checkpoint):
            raise UserInputError("--judge local needs the judge: give --judge-hf FOLDER or --judge-checkpoint FILE")
        self.model, self.tokenizer, _ = load_model(checkpoint=checkpoint, hf=hf)
        self.format = ChatFormat.of(self.tokenizer, checkpoint_chat(checkpoint))
        if self.format is None:
            raise UserInputError(f"the judge '{hf or checkpoint}' has no chat template: give a chat model's folder "
                                 "or a checkpoint of chapter 7's train")
        self.max_new_tokens = max_new_tokens

    def ask(self, prompt) -> str:
        form = self.format
        text = render_chat(form.template, [{"role": "user", "content": prompt}], bos_token=form.bos,
                           eos_token=form.eos)
        ids = self.tokenizer.encode(text, allowed_special="all")[-(self.model.context_length - self.max_new_tokens):]
        out = generate(self.model, torch.tensor([ids]), self.max_new_tokens, self.model.context_length,
                       eos_id=form.stop_ids)
        return self.tokenizer.decode(out[0, len(ids):].tolist()).strip()


def make_judge(args):
    if args.judge == "ollama":
        return OllamaJudge(args.url, args.judge_model)
    if args.judge == "openai":
        return OpenAIJudge(args.url, args.judge_model, args.api_key)
    return LocalJudge(args.judge_hf, args.judge_checkpoint, args.max_new_tokens)


def parse_score(answer: str) -> int | None:
    """The score in a judge's answer: the book's ``int(answer)``, else the first number 0-100 in it.

    >>> parse_score("85"), parse_score("Score: 70/100"), parse_score("no idea")
    (85, 70, None)
    """
    try:
        return int(answer)
    except ValueError:
        found = SCORE.search(answer)
        return int(found.group(1)) if found else None


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        return run(args)


def run(args):
    from tqdm import tqdm

    entries = read_responses(args.responses, args.key)
    scores_path = Path(args.scores) if args.scores else Path(f"{args.responses}.scores.json")
    check_writable(scores_path, "--scores")
    judge = make_judge(args)
    scored = []
    for entry in tqdm(entries, desc="Scoring entries"):
        answer = judge.ask(judging_prompt(entry, args.key))
        score = parse_score(answer)
        if score is None:
            print(f"Could not convert score: {answer}")
        scored.append({**entry, "score": score, "judge_answer": answer})
    scores = [e["score"] for e in scored if e["score"] is not None]
    print(f"Number of scores: {len(scores)} of {len(entries)}")
    if scores:
        print(f"Average score: {sum(scores) / len(scores):.2f}")
    record = {"judge": args.judge, "judge_model": args.judge_model or args.judge_hf or args.judge_checkpoint,
              "average": sum(scores) / len(scores) if scores else None, "entries": scored}
    atomic_write_bytes(scores_path, json.dumps(record, indent=2).encode("utf-8"))
    print(f"scores written to {scores_path}")
    return scores


if __name__ == "__main__":
    main()
