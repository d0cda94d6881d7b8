"""Tokenizers of open-weight model folders: ``tokenizer.json`` through Hugging Face's ``tokenizers``, and chat templates.

Unlike tiktoken's GPT-2 encoding and this project's own BPE: Llama 3, Qwen3, Gemma 3, Mistral and OLMo
ship their tokenizer as a ``tokenizer.json`` (a pre-tokenizer regex, a BPE or Unigram model, added
special tokens) that the ``tokenizers`` library (Rust, the reference implementation) runs exactly, and a
``tokenizer_config.json`` with the special tokens and, for chat models, a Jinja ``chat_template`` that
turns a conversation into the text the model was trained on. ``HFTokenizer`` gives them tiktoken's
names (``encode(text, allowed_special=...)``, ``decode``, ``n_vocab``, ``eot_token``), so every command
of the project uses them as it uses its own; ``render_chat`` renders a template as transformers does.

>>> render_chat("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
...             "{% if add_generation_prompt %}<assistant>{% endif %}", [{"role": "user", "content": "hi"}])
'<user>hi<assistant>'
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from .bpe import CHAR_TO_BYTE, read_json_file
from .errors import UserInputError

FORMAT = "hf-tokenizers"  # the stored form: tokenizer.json and tokenizer_config.json, whole


def _token_text(value) -> str | None:
    """A special token of tokenizer_config.json: a string or ``{"content": ...}``."""
    return value.get("content") if isinstance(value, dict) else value


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` plus the special tokens and chat template of its folder; a
    ``tokenizer_protocol.StoredTokenizer``."""

    format = FORMAT

    def __init__(self, tokenizer_json: str, config: dict | None = None, generation: dict | None = None):
        from tokenizers import Tokenizer

        self.tokenizer_json, self.config, self.generation = tokenizer_json, dict(config or {}), dict(generation or {})
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        added = self.tokenizer.get_added_tokens_decoder()
        self.special_tokens = {t.content: i for i, t in added.items() if t.special}
        self.chat_template = self.config.get("chat_template")
        self.bos_token, self.eos_token = (_token_text(self.config.get(k)) for k in ("bos_token", "eos_token"))
        decoder = json.loads(tokenizer_json).get("decoder") or {}
        self.byte_level = "ByteLevel" in [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders", [])]

    @classmethod
    def from_folder(cls, folder) -> "HFTokenizer":
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise UserInputError(f"folder '{folder}' holds no tokenizer.json: download the model's whole folder")
        config = read_json_file(folder / "tokenizer_config.json", "tokenizer config") \
            if (folder / "tokenizer_config.json").is_file() else {}
        if "chat_template" not in config and (folder / "chat_template.jinja").is_file():
            config["chat_template"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        generation = read_json_file(folder / "generation_config.json", "generation config") \
            if (folder / "generation_config.json").is_file() else {}
        return cls(path.read_text(encoding="utf-8"), config, generation)

    @property
    def n_vocab(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, text: str | None) -> int | None:
        return None if text is None else self.tokenizer.token_to_id(text)

    @property
    def eot_token(self) -> int | None:
        """The end-of-text (eos) id, as tiktoken names it."""
        return self.token_id(self.eos_token)

    def stop_ids(self) -> list[int]:
        """The ids that end a reply: generation_config.json's eos_token_id (one or several) and the eos token."""
        ids = self.generation.get("eos_token_id")
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        if self.eot_token is not None and self.eot_token not in ids:
            ids.append(self.eot_token)
        return ids

    def encode(self, text: str, allowed_special=frozenset()) -> list[int]:
        """The ids of ``text`` as written (no BOS added); a special token in it must be allowed, as in tiktoken."""
        if allowed_special != "all":
            found = [s for s in self.special_tokens if s in text and s not in allowed_special]
            if found:
                raise UserInputError(f"the text contains the special token {found[0]!r}: allow it "
                                     "(allowed_special) or remove it")
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_ordinary(self, text: str) -> list[int]:
        """tiktoken's name for encoding a document (prepare): its special tokens are taken as written."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def token_bytes(self, i: int) -> bytes:
        """The bytes of one token: a byte-level vocabulary's piece (Llama 3, Qwen3) through GPT-2's byte map, else
        its decoded text (a SentencePiece vocabulary's, Gemma's)."""
        piece = self.tokenizer.id_to_token(i)
        if piece is None:
            raise ValueError(f"token id {i} is not in the vocabulary (size {self.n_vocab})")
        if i not in self.special_tokens.values() and self.byte_level and all(c in CHAR_TO_BYTE for c in piece):
            return bytes(CHAR_TO_BYTE[c] for c in piece)
        return self.decode([i]).encode("utf-8")

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tokenizer_json": self.tokenizer_json, "config": self.config,
                "generation": self.generation}

    @classmethod
    def from_dict(cls, data: dict, source="tokenizer") -> "HFTokenizer":
        try:
            return cls(data["tokenizer_json"], data.get("config"), data.get("generation"))
        except Exception as exc:  # noqa: BLE001 - any damage: one line
            raise UserInputError(f"{source}: the stored tokenizer.json cannot be read ({type(exc).__name__})") from None

    def describe(self) -> str:
        return f"tokenizer.json: {self.n_vocab:,} ids, {len(self.special_tokens)} special"


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = True, **special) -> str:
    """A conversation through a Jinja chat template, in a sandbox, with the names transformers provides
    (``messages``, ``add_generation_prompt``, the special tokens, ``raise_exception``, ``strftime_now``)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False, **_: json.dumps(
        x, indent=indent, ensure_ascii=ensure_ascii)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                **special)
    except TemplateError as exc:
        raise UserInputError(f"the chat template cannot render this conversation: {exc}") from None
