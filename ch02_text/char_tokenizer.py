"""A character-level tokenizer: one id per distinct character of a text, then the special tokens.

What this adds over ``tokenizers.py`` and ``bpe.py``: the smallest vocabulary that can
spell a given text (65 characters for tiny Shakespeare), as in char-rnn and nanoGPT's
``shakespeare_char``. Ids ``0..n_chars-1`` are the sorted characters, the special tokens
follow. A character outside the vocabulary is an error that names it.

>>> tok = CharTokenizer.from_text("hello world")
>>> tok.encode("hold"), tok.n_vocab
([3, 5, 4, 1], 9)
>>> tok.decode(tok.encode("low <|endoftext|>", allowed_special="all"))
'low <|endoftext|>'
"""

from __future__ import annotations

from .bpe import end_of_text_id, special_pattern
from .errors import UserInputError
from .tokenizers import SPECIAL_TOKENS

FORMAT = "llms-from-scratch-char-tokenizer"
VERSION = 1


class CharTokenizer:
    """``encode``/``decode`` with tiktoken's names (``n_vocab``, ``eot_token``, ``allowed_special``); a
    ``tokenizer_protocol.StoredTokenizer``."""

    format = FORMAT

    def __init__(self, chars, special_tokens=SPECIAL_TOKENS["gpt2"]):
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.special_tokens = {s: len(self.chars) + i for i, s in enumerate(special_tokens)}
        self.itos = {**dict(enumerate(self.chars)), **{i: s for s, i in self.special_tokens.items()}}
        self._specials = special_pattern(self.special_tokens)

    @classmethod
    def from_text(cls, text: str, special_tokens=SPECIAL_TOKENS["gpt2"]) -> "CharTokenizer":
        specials = special_pattern(special_tokens)
        plain = specials.sub("", text) if specials else text  # special tokens are not characters
        if not plain:
            raise UserInputError("a character tokenizer needs text to read its characters from")
        return cls(plain, special_tokens)

    @property
    def n_vocab(self) -> int:
        return len(self.itos)

    @property
    def eot_token(self) -> int | None:
        return end_of_text_id(self.special_tokens)

    def encode_ordinary(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise UserInputError(f"character {exc.args[0]!r} is not in this character tokenizer's "
                                 f"{len(self.chars)} characters") from None

    def encode(self, text: str, allowed_special=frozenset()) -> list[int]:
        """Text -> ids; special tokens in ``allowed_special`` (or ``"all"``) become their ids."""
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        if not allowed or self._specials is None:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for match in self._specials.finditer(text):
            if match.group() in allowed:
                ids += self.encode_ordinary(text[start:match.start()]) + [self.special_tokens[match.group()]]
                start = match.end()
        return ids + self.encode_ordinary(text[start:])

    def token_bytes(self, i: int) -> bytes:
        return self.decode([i]).encode("utf-8")

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def describe(self) -> str:
        n = len(self.special_tokens)
        return f"char: {len(self.chars)} characters + {n} special token{'s' if n != 1 else ''} = {self.n_vocab} ids"

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "chars": "".join(self.chars),
                "special_tokens": list(self.special_tokens)}

    @classmethod
    def from_dict(cls, data, source="tokenizer") -> "CharTokenizer":
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise UserInputError(f"{source} is not a version-{VERSION} {FORMAT} file")
        try:
            return cls(str(data["chars"]), [str(s) for s in data["special_tokens"]])
        except (KeyError, TypeError) as exc:
            raise UserInputError(f"{source} is damaged ({type(exc).__name__}: {exc})") from None
