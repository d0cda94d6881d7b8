"""Pick a tokenizer by name (gpt2, char, or a saved JSON file) and store it whole, not by path.

What this adds over the three tokenizers: one way for every command to say which tokenizer
it uses (``--tokenizer gpt2|char|FILE.json``), and a plain-dict form of each that token
files and checkpoints carry, so text is never decoded with another vocabulary than the one
it was encoded with.

>>> tok = choose_tokenizer("char", text="to be or not to be")
>>> again = tokenizer_from_dict(tokenizer_to_dict(tok))
>>> again.encode("be or") == tok.encode("be or"), describe(again)
(True, 'char: 7 characters + 1 special token = 8 ids')
"""

from __future__ import annotations

from pathlib import Path

from .bpe import FORMAT as BPE_FORMAT
from .bpe import BPETokenizer, read_json_file
from .char_tokenizer import FORMAT as CHAR_FORMAT
from .char_tokenizer import CharTokenizer
from .errors import UserInputError
from .hf_tokenizer import FORMAT as HF_FORMAT
from .hf_tokenizer import HFTokenizer
from .tokenizers import SPECIAL_TOKENS, gpt2_tokenizer

GPT2 = {"format": "gpt2"}  # tiktoken's GPT-2 encoding, built from the released files: nothing more to store
CHOICES = ("gpt2, char, a tokenizer .json file (python -m ch02_text.bpe or prepare --train-tokenizer), or a model "
           "folder with a Hugging Face tokenizer.json")


def choose_tokenizer(name: str, text: str | None = None, specials: str = "gpt2"):
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


def tokenizer_to_dict(tok) -> dict:
    if isinstance(tok, (BPETokenizer, CharTokenizer, HFTokenizer)):
        return tok.to_dict()
    if getattr(tok, "name", None) == "gpt2":
        return dict(GPT2)
    raise TypeError(f"not a tokenizer of this project: {type(tok).__name__}")


def tokenizer_from_dict(data, source="tokenizer"):
    """The tokenizer a token file or checkpoint carries (``"gpt2"``: files written before tokenizers were stored)."""
    if data == "gpt2" or data == GPT2:
        return gpt2_tokenizer()
    kinds = {BPE_FORMAT: BPETokenizer, CHAR_FORMAT: CharTokenizer, HF_FORMAT: HFTokenizer}
    kind = kinds.get(data.get("format")) if isinstance(data, dict) else None
    if kind is None:
        raise UserInputError(f"{source} is not a tokenizer of this project: use {CHOICES}")
    return kind.from_dict(data, source)


def names_tokenizer(name: str, tok) -> bool:
    """Whether ``--tokenizer name`` names ``tok`` (the tokenizer a token file or checkpoint carries)."""
    kinds = {"gpt2": GPT2["format"], "char": CHAR_FORMAT}
    if name in kinds:
        return tokenizer_to_dict(tok)["format"] == kinds[name]
    return tokenizer_to_dict(tok) == tokenizer_to_dict(choose_tokenizer(name))


def token_bytes(tok, i: int) -> bytes:
    """The bytes behind one token id, whichever tokenizer (a byte-level token may be part of a character).

    >>> token_bytes(choose_tokenizer("char", text="né"), 1)
    b'\\xc3\\xa9'
    """
    if hasattr(tok, "decode_single_token_bytes"):  # tiktoken
        return tok.decode_single_token_bytes(i)
    return tok.token_bytes(i)


def describe(tok) -> str:
    """One line for logs: which tokenizer, how many ids."""
    if isinstance(tok, CharTokenizer):
        n = len(tok.special_tokens)
        return (f"char: {len(tok.chars)} characters + {n} special token{'s' if n != 1 else ''} "
                f"= {tok.n_vocab} ids")
    if isinstance(tok, HFTokenizer):
        return tok.describe()
    if isinstance(tok, BPETokenizer):
        return f"own BPE: 256 bytes + {len(tok.merges)} merges + {len(tok.special_tokens)} special = {tok.n_vocab} ids"
    return f"gpt2: {tok.n_vocab:,} ids"
