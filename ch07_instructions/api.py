"""The OpenAI and Ollama APIs over one model: requests checked into ``serving.Request``, answers in each API's shape.

Unlike the explorer's API (query strings for its own page): JSON bodies as the ``openai`` and ``ollama`` clients,
LangChain and the book's ``query_model`` send them. ``OpenAIRoutes`` answers ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions`` (server-sent events ending in ``data: [DONE]`` when streamed),
``OllamaRoutes`` answers ``/api/chat``, ``/api/generate`` and ``/api/tags`` (JSON lines unless ``"stream":
false``). Every bad value is an ``ApiError`` naming it, in OpenAI's error shape ``{"error": {"message", "type",
"param", "code"}}`` or Ollama's ``{"error": message}``.

>>> check_number({"temperature": 3}, "temperature", float, 0, 2)
Traceback (most recent call last):
...
ch07_instructions.api.ApiError: temperature must be a number from 0 to 2, not 3
"""

from __future__ import annotations

import time
import uuid

from .serving import Request

ROLES = ("system", "user", "assistant")
UNSUPPORTED = ("tools", "functions", "tool_choice", "response_format", "audio", "modalities")


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` with a sentence naming ``param``."""

    def __init__(self, message, param=None, status=400, code=None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def openai(self) -> dict:
        kind = {401: "authentication_error", 404: "invalid_request_error", 503: "server_error"}.get(
            self.status, "invalid_request_error")
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


def check_number(body, name, kind, low, high, default=None):
    """``body[name]`` as ``kind`` within [low, high] (None/missing: ``default``); ApiError naming it otherwise."""
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value) \
            or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise ApiError(f"{name} must be {what} from {low} to {high}, not {value!r}", name)
    return kind(value)


def check_messages(messages, param="messages") -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(f"{param} must be a non-empty list of messages", param)
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(f"{param}[{i}].role must be one of {', '.join(ROLES)}", f"{param}[{i}].role")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI's parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise ApiError(f"{param}[{i}].content holds a part that is not text (images and audio are not "
                               "served here)", f"{param}[{i}].content")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str):
            raise ApiError(f"{param}[{i}].content must be a string", f"{param}[{i}].content")
        out.append({"role": message["role"], "content": content})
    return out


class Limits:
    """The server's bounds: new tokens, prompt tokens."""

    def __init__(self, max_new_tokens=512, max_prompt_tokens=2048):
        self.max_new_tokens, self.max_prompt_tokens = max_new_tokens, max_prompt_tokens


def _stops(value, param="stop") -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise ApiError(f"{param} must be a string or a list of up to 4 non-empty strings", param)
    return stops


class OpenAIRoutes:
    """Parsing and answers of the OpenAI API for one served model."""

    def __init__(self, name, encode, render, limits):
        self.name, self.encode, self.render, self.limits = name, encode, render, limits

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": 0,
                                            "owned_by": "llms-from-scratch"}]}

    def request(self, body, chat: bool) -> tuple[Request, dict]:
        """``(Request, options)`` of a body; options: stream, include_usage, logprobs wanted."""
        if not isinstance(body, dict):
            raise ApiError("the body must be a JSON object")
        if body.get("model") != self.name:
            raise ApiError(f"The model '{body.get('model')}' does not exist: this server serves '{self.name}'",
                           "model", 404, "model_not_found")
        for key in UNSUPPORTED:
            if body.get(key):
                raise ApiError(f"{key} is not supported by this server", key)
        if body.get("n", 1) not in (1, None):
            raise ApiError("n must be 1: this server makes one choice per request", "n")
        if chat:
            prompt = self.render(check_messages(body.get("messages")))
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str) or not prompt:
                raise ApiError("prompt must be a non-empty string", "prompt")
        max_tokens = check_number(body, "max_completion_tokens", int, 1, self.limits.max_new_tokens) or \
            check_number(body, "max_tokens", int, 1, self.limits.max_new_tokens, min(16 if not chat else 256,
                                                                                      self.limits.max_new_tokens))
        logprobs = body.get("logprobs")
        top = check_number(body, "top_logprobs", int, 0, 20, 0)
        if not chat and logprobs is not None:  # /v1/completions: logprobs is the count
            top, logprobs = check_number(body, "logprobs", int, 0, 5, 0), True
        ids = self.encode(prompt, "prompt" if not chat else "messages")
        request = Request(ids, max_tokens, check_number(body, "temperature", float, 0, 2, 1.0),
                          check_number(body, "top_p", float, 1e-9, 1, None),
                          None, check_number(body, "seed", int, -2 ** 63, 2 ** 63 - 1),
                          _stops(body.get("stop")), top if logprobs else None)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError("stream must be true or false", "stream")
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return request, {"stream": stream, "include_usage": usage}

    def answer(self, completion, chat: bool, rid: str) -> dict:
        choice = {"index": 0, "finish_reason": completion.finish_reason,
                  "logprobs": self.logprobs(completion.logprobs, chat)}
        if chat:
            choice["message"] = {"role": "assistant", "content": completion.text}
        else:
            choice["text"] = completion.text
        return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.name, "choices": [choice], "usage": usage(completion)}

    def chunk(self, rid, chat, text=None, finish=None, role=False) -> dict:
        choice = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["delta"] = ({"role": "assistant", "content": ""} if role else
                               {} if text is None else {"content": text})
        else:
            choice["text"] = text or ""
        return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": self.name, "choices": [choice]}

    @staticmethod
    def logprobs(values, chat):
        if values is None:
            return None
        if chat:
            return {"content": [{"token": v["token"], "logprob": v["logprob"], "bytes": list(v["token"].encode()),
                                 "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())}
                                                  for t, p in v["top"]]} for v in values]}
        return {"tokens": [v["token"] for v in values], "token_logprobs": [v["logprob"] for v in values],
                "top_logprobs": [dict(v["top"]) for v in values], "text_offset": []}


def usage(completion) -> dict:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def new_id(prefix) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class OllamaRoutes:
    """Parsing and answers of Ollama's API for one served model."""

    def __init__(self, name, encode, render, limits):
        self.name, self.encode, self.render, self.limits = name, encode, render, limits

    def tags(self) -> dict:
        return {"models": [{"name": self.name, "model": self.name, "modified_at": "2026-01-01T00:00:00Z",
                            "size": 0, "digest": "", "details": {"format": "pytorch", "family": "",
                                                                 "parameter_size": "", "quantization_level": ""}}]}

    def request(self, body, chat: bool) -> tuple[Request, dict]:
        if not isinstance(body, dict):
            raise ApiError("the body must be a JSON object")
        if body.get("model") not in (self.name, f"{self.name}:latest"):
            raise ApiError(f"model '{body.get('model')}' not found: this server serves '{self.name}'", "model", 404)
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ApiError("options must be an object", "options")
        if chat:
            prompt = self.render(check_messages(body.get("messages")))
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise ApiError("prompt must be a string", "prompt")
            prompt = prompt if body.get("raw") else self.render([{"role": "user", "content": prompt}], plain=True)
        limit = self.limits.max_new_tokens
        num_predict = options.get("num_predict")
        max_tokens = limit if num_predict in (None, -1, -2) else check_number(options, "num_predict", int, 1, limit)
        request = Request(self.encode(prompt, "prompt" if not chat else "messages"), max_tokens,
                          check_number(options, "temperature", float, 0, 2, 0.8),
                          check_number(options, "top_p", float, 1e-9, 1, None),
                          check_number(options, "top_k", int, 0, 10_000_000, None) or None,
                          check_number(options, "seed", int, -2 ** 63, 2 ** 63 - 1),
                          _stops(options.get("stop"), "options.stop"))
        check_number(options, "num_ctx", int, 1, 10_000_000)
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            raise ApiError("stream must be true or false", "stream")
        return request, {"stream": stream}

    def piece(self, chat, text) -> dict:
        out = {"model": self.name, "created_at": now(), "done": False}
        if chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        return out

    def final(self, chat, completion, text, seconds) -> dict:
        out = self.piece(chat, text)
        out.update(done=True, done_reason=completion.finish_reason, total_duration=int(seconds * 1e9),
                   prompt_eval_count=completion.prompt_tokens, eval_count=completion.completion_tokens)
        return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
