"""Text as it is generated, one token at a time, without half-characters.

Unlike ``tokenizer.decode(ids)`` at the end: a streamed reply shows each new piece as its token is made.
A byte-level token may end inside a UTF-8 character (an emoji, a CJK character takes 3-4 bytes, often
split over tokens); decoding it alone gives U+FFFD, so a piece is held back until its character is whole.

>>> class Bytes:  # a tokenizer with one token per byte
...     def decode(self, ids): return bytes(ids).decode("utf-8", errors="replace")
>>> pieces = []
>>> stream = TextStream(Bytes(), pieces.append)
>>> for i in "café 🙂".encode("utf-8"):  # one token per byte: é is 2 tokens, 🙂 is 4
...     stream.add_id(i)
>>> pieces[-2:], "".join(pieces)
([' ', '🙂'], 'café 🙂')
"""

from __future__ import annotations


class TextStream:
    """Turns new token ids into new text for ``write(piece)``, holding back a piece that ends inside a UTF-8
    character."""

    def __init__(self, tokenizer, write):
        self.tokenizer, self.write, self.ids, self.shown = tokenizer, write, [], 0

    def add_id(self, token_id: int) -> None:
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids)
        if not text.endswith("\ufffd"):
            self.write(text[self.shown:])
            self.shown = len(text)

    def add(self, idx_next) -> None:
        """``generate_loop``'s ``on_token``: the new (1, 1) column of ids."""
        self.add_id(idx_next[0, 0])
