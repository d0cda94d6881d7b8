"""Pick a tokenizer by name (gpt2, char, or a saved JSON file) and store it whole, not by path.

What this adds over the three tokenizers: one way for every command to say which tokenizer
it uses (``--tokenizer gpt2|char|FILE.json``), and a plain-dict form of each that token
files and checkpoints carry, so text is never decoded with another vocabulary than the one
it was encoded with. It asks a tokenizer only what ``tokenizer_protocol`` declares: this
project's own ones (``StoredTokenizer``) store and describe themselves, found again by their
``format``; tiktoken's GPT-2 encoding, which cannot, is stored by name.

>>> tok = choose_tokenizer("char", text="to be or not to be")
>>> again = tokenizer_from_dict(tokenizer_to_dict(tok))
>>> again.encode("be or") == tok.encode("be or"), describe(again)
(True, 'char: 7 characters + 1 special token = 8 ids')
"""

from __future__ import annotations

from pathlib import Path

from .bpe import BPETokenizer, read_json_file
from .char_tokenizer import CharTokenizer
from .errors import UserInputError
from .hf_tokenizer import HFTokenizer
from .tokenizer_protocol import StoredTokenizer, Tokenizer
from .tokenizers import SPECIAL_TOKENS, gpt2_tokenizer

GPT2 = {"format": "gpt2"}  # tiktoken's GPT-2 encoding, built from the released files: nothing more to store
STORED_FORMATS = {cls.format: cls for cls in (BPETokenizer, CharTokenizer, HFTokenizer)}  # stored form -> class
CHOICES = ("gpt2, char, a tokenizer .json file (python -m ch02_text.bpe or prepare --train-tokenizer), or a model "
           "folder with a Hugging Face tokenizer.json")


def choose_tokenizer(name: str, text: str | None = None, specials: str = "gpt2") -> Tokenizer:
    """``gpt2`` (tiktoken), ``char`` (the characters of ``text``), or a saved tokenizer's JSON file."""
    if name == "gpt2":
        return gpt2_tokenizer()
    if name == "char":
        if text is None:
            raise UserInputError("--tokenizer char reads its characters from a text file: give --data a .txt file")
        return CharTokenizer.from_text(text, SPECIAL_TOKENS[specials])
    if Path(name).is_dir():
        return HFTokenizer.from_folder(name)
    if Path(name).suffix == ".json":
        data = read_json_file(name, "tokenizer file")
        if isinstance(data, dict) and "model" in data and "added_tokens" in data:  # Hugging Face's tokenizer.json
            return HFTokenizer.from_folder(Path(name).parent)
        return tokenizer_from_dict(data, f"tokenizer file '{name}'")
    raise UserInputError(f"--tokenizer {name!r} is not known: use {CHOICES}")


def tokenizer_to_dict(tok: Tokenizer) -> dict:
    if isinstance(tok, StoredTokenizer):
        return tok.to_dict()
    if getattr(tok, "name", None) == "gpt2":  # tiktoken's GPT-2 encoding
        return dict(GPT2)
    raise TypeError(f"not a tokenizer of this project: {type(tok).__name__}")


def tokenizer_from_dict(data, source="tokenizer") -> Tokenizer:
    """The tokenizer a token file or checkpoint carries (``"gpt2"``: files written before tokenizers were stored)."""
    if data == "gpt2" or data == GPT2:
        return gpt2_tokenizer()
    kind = STORED_FORMATS.get(data.get("format")) if isinstance(data, dict) else None
    if kind is None:
        raise UserInputError(f"{source} is not a tokenizer of this project: use {CHOICES}")
    return kind.from_dict(data, source)


def names_tokenizer(name: str, tok) -> bool:
    """Whether ``--tokenizer name`` names ``tok`` (the tokenizer a token file or checkpoint carries)."""
    kinds = {"gpt2": GPT2["format"], "char": CharTokenizer.format}
    if name in kinds:
        return tokenizer_to_dict(tok)["format"] == kinds[name]
    return tokenizer_to_dict(tok) == tokenizer_to_dict(choose_tokenizer(name))


def token_bytes(tok: Tokenizer, i: int) -> bytes:
    """The bytes behind one token id, whichever tokenizer (a byte-level token may be part of a character).

    >>> token_bytes(choose_tokenizer("char", text="né"), 1)
    b'\\xc3\\xa9'
    """
    if isinstance(tok, StoredTokenizer):
        return tok.token_bytes(i)
    return tok.decode_single_token_bytes(i)  # tiktoken


def describe(tok: Tokenizer) -> str:
    """One line for logs: which tokenizer, how many ids."""
    if isinstance(tok, StoredTokenizer):
        return tok.describe()
    return f"gpt2: {tok.n_vocab:,} ids"  # tiktoken's GPT-2 encoding
