"""What the project needs of a tokenizer, written down as ``typing.Protocol`` classes.

Unlike tokenizers.py, bpe.py, char_tokenizer.py and hf_tokenizer.py (four ways to turn text into ids): no
code, only the names the other modules call. ``Tokenizer`` is what data preparation, training, generation and
the explorer use: tiktoken's names, which its GPT-2 encoding has and this project's tokenizers copy.
``StoredTokenizer`` is what this project's own tokenizers (``BPETokenizer``, ``CharTokenizer``,
``HFTokenizer``) add, and what ``tokenizer_choice`` relies on: a stored form (``to_dict``, ``from_dict``, the
``format`` it is filed under), a line describing it, and each token's bytes. The book's ``SimpleTokenizerV1``
and ``V2`` (listings 2.3, 2.4) are neither: they show the idea and have no end-of-text id.

>>> from ch02_text.char_tokenizer import CharTokenizer
>>> tok = CharTokenizer.from_text("to be or not to be")
>>> isinstance(tok, Tokenizer), isinstance(tok, StoredTokenizer)
(True, True)
>>> from ch02_text.bpe import BPETokenizer
>>> isinstance(BPETokenizer(), StoredTokenizer)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    """Text to token ids and back, with tiktoken's names."""

    @property
    def n_vocab(self) -> int:
        """How many ids there are (the model's vocab_size must hold them)."""

    @property
    def eot_token(self) -> int | None:
        """The end-of-text id written between documents (None: the tokenizer has none)."""

    def encode(self, text: str, allowed_special=frozenset()) -> list[int]:
        """The ids of ``text``; a special token in it becomes its id if in ``allowed_special`` (or "all")."""

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of ``text``, special tokens taken as plain text."""

    def decode(self, ids) -> str:
        """The text of ``ids``."""


@runtime_checkable
class StoredTokenizer(Tokenizer, Protocol):
    """A tokenizer of this project: stored whole in token files and checkpoints, under its ``format``."""

    format: str  # the stored form's "format" value, one per class
    special_tokens: dict  # special token -> id

    def to_dict(self) -> dict:
        """The stored form: plain JSON values, with {"format": self.format}."""

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer") -> StoredTokenizer:
        """The tokenizer back from its stored form; damage is a UserInputError naming ``source``."""

    def describe(self) -> str:
        """One line for logs: which tokenizer, how many ids."""

    def token_bytes(self, i: int) -> bytes:
        """The bytes behind one id (a byte-level token may be part of a character)."""
