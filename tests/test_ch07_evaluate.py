"""Chapter 7's evaluate command (issue 35): the book's judging prompt sent to an Ollama server, an
OpenAI-compatible one, or a model loaded here; the count and average printed as the book prints them, answers
without a number counted and shown, the scores written beside the answers, and bad input as one line."""

import json
from http.server import BaseHTTPRequestHandler

import pytest

from ch07_instructions import evaluate
from cli_checks import fails_with_one_line
from local_servers import FakeOllama, local, ollama, serving  # noqa: F401 (the fixture)

ENTRIES = [{"instruction": "Name a color.", "input": "", "output": "Blue.", "model_response": r}
           for r in ("Red.", "Green.", "Blue.")]


class FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/chat/completions as OpenAI's API answers it."""

    requests = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"]
        answer = {"Blue.": "90", "Green.": "I cannot say"}.get(prompt.split("score the model response `")[1]
                                                                .split("`")[0], "Score: 20")
        payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802
        self.send_response(404)
        self.end_headers()



@pytest.fixture
def openai_server():
    FakeOpenAI.requests.clear()
    with serving(local(FakeOpenAI)) as url:
        yield url


def answers(tmp_path, entries=ENTRIES):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(entries))
    return path


def test_ollama_judge_scores_as_the_book(ollama, tmp_path, capsys):  # noqa: F811
    FakeOllama.answers = {"`Red.`": "85", "`Green.`": "about 40", "`Blue.`": "not sure"}
    scores = evaluate.main(["--responses", str(answers(tmp_path)), "--url", ollama])
    out = capsys.readouterr().out
    assert scores == [85, 40] and "Could not convert score: not sure" in out
    assert "Number of scores: 2 of 3" in out and "Average score: 62.50" in out
    sent = FakeOllama.requests[-1]
    assert sent["options"] == {"seed": 123, "temperature": 0, "num_ctx": 2048}
    assert sent["messages"][0]["content"].endswith("Respond with the integer number only.")
    written = json.loads((tmp_path / "answers.json.scores.json").read_text())
    assert [e["score"] for e in written["entries"]] == [85, 40, None] and written["average"] == 62.5


def test_openai_compatible_judge(openai_server, tmp_path, capsys):
    scores = evaluate.main(["--responses", str(answers(tmp_path)), "--judge", "openai", "--url", openai_server,
                            "--judge-model", "judge", "--api-key", "k", "--scores", str(tmp_path / "s.json")])
    assert scores == [20, 90] and "Number of scores: 2 of 3" in capsys.readouterr().out
    path, auth, body = FakeOpenAI.requests[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["temperature"] == 0
    assert (tmp_path / "s.json").is_file()


def test_local_judge_needs_no_server(tmp_path, capsys):
    pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt")
    from hf_tiny import chat_folder

    folder = chat_folder(tmp_path)
    evaluate.main(["--responses", str(answers(tmp_path)), "--judge", "local", "--judge-hf", str(folder),
                   "--max-new-tokens", "3"])
    out = capsys.readouterr().out
    assert "Number of scores:" in out and "of 3" in out


@pytest.mark.parametrize("content, extra, match", [
    (None, [], "does not exist"),
    ("{oops", [], "is not JSON"),
    (json.dumps([{"instruction": "a", "output": "b"}]), [], "entry 0 has no answer under 'model_response'"),
    (json.dumps(ENTRIES), ["--url", "http://127.0.0.1:9/api/chat"], "no server answers at"),
    (json.dumps(ENTRIES), ["--judge", "local"], "--judge local needs the judge"),
])
def test_bad_input_is_one_line(content, extra, match, tmp_path, capsys):
    path = tmp_path / "answers.json"
    if content is not None:
        path.write_text(content)
    fails_with_one_line(capsys, evaluate.main, ["--responses", str(path), *extra], match)
    assert not (tmp_path / "answers.json.scores.json").exists()
