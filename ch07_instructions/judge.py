"""Evaluating the fine-tuned model (section 7.8): another, larger LLM scores its answers, through Ollama's REST API.

Unlike chapter 6's accuracy, counted against labels: an answer in words has no single right form, so a judge
model (the book's Llama 3 8B, served by Ollama at ``http://localhost:11434``) reads the prompt, the dataset's
answer and the model's, and answers with a score from 0 to 100. ``query_model`` is the book's plain POST of JSON
to ``/api/chat``, read back as JSON lines; ``server_answers`` checks first, with a short timeout, that something
listens there (the book checks for an ``ollama`` process instead), so a run without a server skips the scoring.

>>> entry = {"instruction": "Name a color.", "input": "", "output": "Blue.", "model_response": "Red."}
>>> prompt = score_prompt(entry, "model_response", integer_only=True)
>>> "score the model response `Red.` on a scale from 0 to 100" in prompt, prompt.endswith("the integer number only.")
(True, True)
>>> server_answers("http://127.0.0.1:9/api/chat", timeout=0.5)   # nothing listens on port 9
False
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request

from ch02_text.errors import UserInputError

from .instruction_data import format_input

OLLAMA_URL = "http://localhost:11434/api/chat"
JUDGE_MODEL = "llama3"  # the book's judge: Llama 3 8B instruct (`ollama pull llama3`, 4.7 GB)
START_HINT = ("install Ollama (ollama.com), start it (`ollama serve`) and pull the judge (`ollama pull llama3`), "
              "or point --ollama-url at a server that answers Ollama's /api/chat")


def server_answers(url=OLLAMA_URL, timeout=2.0) -> bool:
    """Whether an HTTP server answers at ``url``'s host and port within ``timeout`` seconds (any status)."""
    parts = urllib.parse.urlsplit(url)
    try:
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/", timeout=timeout):
            return True
    except urllib.error.HTTPError:  # a status such as 404: something answers
        return True
    except (urllib.error.URLError, OSError, ValueError):  # refused, timed out, no such host, a malformed URL
        return False


def query_model(prompt, model=JUDGE_MODEL, url=OLLAMA_URL, timeout=300):
    """Listing 7.9: ``prompt`` as one user message to the judge (seed 123, temperature 0, a 2048-token
    context: deterministic answers), its streamed JSON lines joined into one text. ``timeout``: seconds
    a silent server is waited for (the book waits for ever)."""
    # Create the data payload as a dictionary
    data = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},  # required for deterministic responses
    }
    # Convert the dictionary to JSON encoded as bytes, and POST it
    payload = json.dumps(data).encode("utf-8")
    request = urllib.request.Request(url, data=payload, method="POST")
    request.add_header("Content-Type", "application/json")

    # Send the request and read the response, one JSON object a line
    response_data = ""
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while True:
            line = response.readline().decode("utf-8")
            if not line:
                break
            response_json = json.loads(line)
            response_data += response_json["message"]["content"]
    return response_data


def score_prompt(entry, json_key, integer_only=False) -> str:
    """What the judge is asked about ``entry[json_key]`` (section 7.8); ``integer_only``: the prompt of
    ``generate_model_scores``, which asks for the number alone."""
    prompt = (
        f"Given the input `{format_input(entry)}` "
        f"and correct output `{entry['output']}`, "
        f"score the model response `{entry[json_key]}`"
        f" on a scale from 0 to 100, where 100 is the best score. "
    )
    return prompt + "Respond with the integer number only." if integer_only else prompt


def generate_model_scores(json_data, json_key, model=JUDGE_MODEL, url=OLLAMA_URL):
    """Listing 7.10: the judge's integer score of every entry's ``json_key``; an answer that is no integer is
    reported and left out."""
    from tqdm import tqdm

    scores = []
    for entry in tqdm(json_data, desc="Scoring entries"):
        score = query_model(score_prompt(entry, json_key, integer_only=True), model, url)
        try:
            scores.append(int(score))
        except ValueError:
            print(f"Could not convert score: {score}")
            continue
    return scores


@contextlib.contextmanager
def judge_errors(url, model):
    """A server that answers but cannot judge (no such model, not Ollama's API, too slow) as one error line."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        raise UserInputError(f"the server at {url} answered {exc.code} {exc.reason}: pull the judge "
                             f"(`ollama pull {model}`) or give --judge-model a model it has") from None
    except (urllib.error.URLError, OSError, json.JSONDecodeError, KeyError) as exc:
        raise UserInputError(f"the server at {url} did not answer as Ollama's /api/chat does "
                             f"({type(exc).__name__}: {exc}): {START_HINT}") from None
