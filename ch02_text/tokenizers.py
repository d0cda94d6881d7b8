"""Chapter 2 tokenizers: the book's regex tokenizers and GPT-2's BPE (offline).

What this adds: turning raw text into token ids and back. ``SimpleTokenizerV1``
maps words of a fixed vocabulary; ``SimpleTokenizerV2`` adds ``<|unk|>`` and
``<|endoftext|>``; ``gpt2_tokenizer()`` builds tiktoken's GPT-2 encoding from the
local ``gpt2/vocab.bpe`` + ``gpt2/encoder.json`` files.

>>> vocab = build_vocab(split_text("the cat sat."))
>>> SimpleTokenizerV1(vocab).encode("the cat")
[3, 1]
>>> SimpleTokenizerV2(build_vocab(split_text("the cat sat."), special_tokens=True)).encode("the dog")
[3, 5]
"""

from __future__ import annotations

import functools
import os
import re

import tiktoken
import tiktoken.load

from .data_files import NO_DOWNLOAD_ENV, find_local_data_file
from .errors import DataFileError
from .paths import DATA_DIR

# The book's pattern (listing 2.3/2.4): punctuation, double dash, whitespace.
SPLIT_PATTERN = r'([,.:;?_!"()\']|--|\s)'
# Decoding: remove the space the join puts before punctuation.
JOIN_PATTERN = r'\s+([,.:;?!"()\'])'
# Special tokens, one table: the set a tokenizer of this project can carry, by name. "gpt2" is GPT-2's
# end-of-text token (id 50256 in GPT-2's vocabulary); "classic" the four of many other tokenizers.
# SimpleTokenizerV2 (listing 2.4) appends the book's pair: end-of-text and "<|unk|>".
END_OF_TEXT = "<|endoftext|>"
SPECIAL_TOKENS = {"gpt2": (END_OF_TEXT,), "classic": ("<pad>", "<unk>", "<bos>", "<eos>")}


def split_text(text: str) -> list[str]:
    """Split text into words and punctuation the book's way, dropping whitespace.

    >>> split_text("Hello, world. Is this-- a test?")
    ['Hello', ',', 'world', '.', 'Is', 'this', '--', 'a', 'test', '?']
    """
    return [item.strip() for item in re.split(SPLIT_PATTERN, text) if item.strip()]


def build_vocab(tokens: list[str], special_tokens: bool = False) -> dict[str, int]:
    """Sorted unique tokens → ids; with ``special_tokens`` append ``<|endoftext|>``, ``<|unk|>``."""
    all_tokens = sorted(set(tokens))
    if special_tokens:
        all_tokens.extend([END_OF_TEXT, "<|unk|>"])
    return {token: integer for integer, token in enumerate(all_tokens)}


class UnknownTokenError(KeyError):
    """A word that SimpleTokenizerV1's vocabulary does not contain (``.word`` names it)."""

    def __init__(self, word: str, message: str):
        super().__init__(message)
        self.word = word

    def __str__(self) -> str:
        return self.args[0]


class SimpleTokenizerV1:
    """Listing 2.3: word-level tokenizer over a fixed vocabulary (no unknown words)."""

    def __init__(self, vocab: dict[str, int]):
        self.str_to_int = vocab
        self.int_to_str = {i: s for s, i in vocab.items()}

    def encode(self, text: str) -> list[int]:
        preprocessed = split_text(text)
        try:
            return [self.str_to_int[s] for s in preprocessed]
        except KeyError as exc:
            word = exc.args[0]
            raise UnknownTokenError(
                word,
                f"{word!r} is not in the vocabulary: SimpleTokenizerV1 knows only the "
                f"training words; use SimpleTokenizerV2, which maps unknown words to <|unk|>"
            ) from None

    def decode(self, ids: list[int]) -> str:
        text = " ".join([self.int_to_str[i] for i in ids])
        return re.sub(JOIN_PATTERN, r"\1", text)


class SimpleTokenizerV2(SimpleTokenizerV1):
    """Listing 2.4: like V1 but unknown words become ``<|unk|>``."""

    def encode(self, text: str) -> list[int]:
        preprocessed = [s if s in self.str_to_int else "<|unk|>" for s in split_text(text)]
        return [self.str_to_int[s] for s in preprocessed]


GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


@functools.lru_cache(maxsize=None)
def gpt2_tokenizer() -> tiktoken.Encoding:
    """GPT-2's BPE tokenizer, built offline from ``gpt2/vocab.bpe`` + ``gpt2/encoder.json``.

    The files are looked up in data/ then $LLMS_DATA_DIR; ``tiktoken.get_encoding("gpt2")``
    (which downloads) is only the last resort.

    >>> gpt2_tokenizer().encode("Hello, world")      # doctest: +SKIP
    [15496, 11, 995]
    """
    vocab_bpe = find_local_data_file("gpt2/vocab.bpe")
    encoder_json = find_local_data_file("gpt2/encoder.json")
    if vocab_bpe is not None and encoder_json is not None:
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))
        return tiktoken.Encoding(
            name="gpt2",
            pat_str=GPT2_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={END_OF_TEXT: 50256},
            explicit_n_vocab=50257,
        )
    where = f"place vocab.bpe and encoder.json in {DATA_DIR / 'gpt2'} or in $LLMS_DATA_DIR/gpt2/"
    if os.environ.get(NO_DOWNLOAD_ENV) == "1":  # the tests: never the network
        raise DataFileError(f"GPT-2 tokenizer files not found: {where} (downloads are off, {NO_DOWNLOAD_ENV}=1)")
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:
        raise DataFileError(
            f"GPT-2 tokenizer files not found: {where} (tiktoken download failed: {type(exc).__name__})"
        ) from None
