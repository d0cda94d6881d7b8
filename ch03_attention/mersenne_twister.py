"""PyTorch's CPU random generator as a Mersenne Twister: read its state, and jump it ahead.

What this adds over ``torch.Generator``: the state after a given number of draws, without drawing them.
PyTorch's CPU generator is an MT19937 (624 words of 32 bits and a position); its dropout masks take one
64-bit number, two 32-bit words, per element, one element after another. To draw one long run of masks
on two cores, the second core needs the state the first will leave behind. The Twister is linear over
GF(2): the word sequence obeys a recurrence whose characteristic polynomial ``phi`` has degree 19,937, so
word ``n + J`` is the sum (XOR) of words ``n + i`` over the ``i`` where ``X**J mod phi`` has a 1. That
polynomial is computed once per jump length (``JumpAhead``); each jump then XORs some 10,000 windows of
624 words of the sequence (Haramoto et al., "Efficient jump ahead for F2-linear random number
generators", 2008). ``phi`` itself comes from the sequence, by Berlekamp-Massey.

>>> g = torch.Generator().manual_seed(7)
>>> state = TwisterState.of(g)
>>> torch.empty(1000, dtype=torch.bool).bernoulli_(0.5, generator=g).shape  # 2,000 words
torch.Size([1000])
>>> jumped = JumpAhead(2000).apply(state)
>>> jumped.to_bytes() == g.get_state().numpy().tobytes()   # torch's own state after the draws
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

N, M = 624, 397  # words of state; the recurrence's middle tap
DEGREE = 19937  # degree of the characteristic polynomial: 624 * 32 - 31 bits of state
UPPER, LOWER, MATRIX_A = 0x80000000, 0x7FFFFFFF, 0x9908B0DF
STATE_BYTES = 5056  # torch's CPUGeneratorImplState: seed u64, left i32, seeded i32, next u64, 624 x u64, ...
WORDS_AT = slice(24, 24 + 8 * N)


@dataclass
class TwisterState:
    """An MT19937 state: ``words`` (624 untempered words) and ``pos``, the index of the next word out
    (624: the next draw first regenerates all the words). ``raw``: torch's state bytes it came from."""

    words: np.ndarray  # uint32, shape (624,)
    pos: int
    raw: bytes

    @classmethod
    def of(cls, generator: torch.Generator) -> "TwisterState":
        raw = generator.get_state().numpy().tobytes()
        if len(raw) != STATE_BYTES:
            raise ValueError(f"unknown CPU generator state layout ({len(raw)} bytes)")
        left, _seeded = np.frombuffer(raw[8:16], dtype="<i4")
        next_word = int(np.frombuffer(raw[16:24], dtype="<u8")[0])
        words = np.frombuffer(raw[WORDS_AT], dtype="<u8")
        if words.max() >= 1 << 32 or not 0 <= next_word <= N or not (left == 1 or left + next_word == N + 1):
            raise ValueError("unknown CPU generator state layout")
        return cls(words.astype(np.uint32), N if left == 1 else next_word, raw)

    def to_bytes(self) -> bytes:
        """Torch's state bytes for this state; every other field (seed, cached normal sample) from ``raw``.
        The position is written as torch keeps it: ``left`` + ``next`` = 625, or ``left`` = 1 at 624."""
        head = np.array([N + 1 - self.pos if self.pos < N else 1, 1], dtype="<i4").tobytes()
        return (self.raw[:8] + head + np.array([self.pos], dtype="<u8").tobytes()
                + self.words.astype("<u8").tobytes() + self.raw[WORDS_AT.stop:])

    def set_into(self, generator: torch.Generator) -> None:
        generator.set_state(torch.frombuffer(bytearray(self.to_bytes()), dtype=torch.uint8))


def extend(words: np.ndarray, count: int) -> np.ndarray:
    """``words`` (624) followed by the words the recurrence makes, ``count`` words in all.

    Word ``k + 624`` = word ``k + 397`` XOR twist(word ``k``'s top bit, word ``k + 1``'s other bits); a slice
    of 227 words at a time depends only on words already made, so each slice is one vector operation.

    >>> g = torch.Generator().manual_seed(1)
    >>> seq = extend(TwisterState.of(g).words, 1248)
    >>> _ = torch.empty(312, dtype=torch.bool).bernoulli_(0.5, generator=g)  # 624 words: torch makes the next block
    >>> bool(np.array_equal(seq[624:], TwisterState.of(g).words))
    True
    """
    seq = np.empty(max(count, N), dtype=np.uint32)
    seq[:N] = words
    k = 0
    while k + N < count:
        end = min(k + N - M, count - N)
        y = (seq[k:end] & UPPER) | (seq[k + 1:end + 1] & LOWER)
        seq[k + N:end + N] = seq[k + M:end + M] ^ (y >> 1) ^ ((y & 1) * np.uint32(MATRIX_A))
        k = end
    return seq[:count]


# -- polynomials over GF(2) as Python ints: bit i is the coefficient of X**i ------------------------
_SPREAD = np.array([int("".join(f"0{b}" for b in f"{i:08b}"), 2) for i in range(256)], dtype="<u2")


def poly_square(a: int) -> int:
    """a(X)**2: over GF(2) the square spreads the bits apart (bit i goes to bit 2i)."""
    if a == 0:
        return 0
    data = np.frombuffer(a.to_bytes((a.bit_length() + 7) // 8, "little"), dtype=np.uint8)
    return int.from_bytes(_SPREAD[data].tobytes(), "little")


@lru_cache(maxsize=1)
def characteristic_polynomial() -> int:
    """The degree-19,937 polynomial that every bit of the Twister's word sequence obeys (Berlekamp-Massey on
    the top bits of 2 x 19,937 words; any bit would do, the polynomial is irreducible)."""
    seq = extend(TwisterState.of(torch.Generator().manual_seed(5489)).words, 2 * DEGREE + N + 1)
    bits = (seq[1:2 * DEGREE + 1] >> 31).tolist()  # from word 1 on: word 0's low bits are not in the state
    conn, prev, length, gap, window = 1, 1, 0, 1, 0
    for n, bit in enumerate(bits):
        window = (window << 1) | bit  # bit i: the sequence's bit n - i
        if (conn & window).bit_count() & 1:  # discrepancy
            old = conn
            conn ^= prev << gap
            if 2 * length <= n:
                length, prev, gap = n + 1 - length, old, 1
                continue
        gap += 1
    if length != DEGREE:
        raise ValueError(f"Berlekamp-Massey found degree {length}, not {DEGREE}")
    return int(f"{conn:0{DEGREE + 1}b}"[::-1], 2)  # reversed: X**19937 + ... , the recurrence's polynomial


class _Reducer:
    """``a mod phi`` eight bits at a time, with a table of ``t(X) * X**19937 mod phi`` for each byte ``t``."""

    def __init__(self, phi: int):
        self.phi, self.low = phi, (1 << DEGREE) - 1
        tops = [phi & self.low]  # X**19937 = the rest of phi, mod phi
        for _ in range(7):
            nxt = tops[-1] << 1
            tops.append(nxt ^ phi if nxt >> DEGREE else nxt)
        self.table = [0] * 256
        for t in range(1, 256):
            low_bit = t & -t
            self.table[t] = self.table[t ^ low_bit] ^ tops[low_bit.bit_length() - 1]

    def __call__(self, a: int) -> int:
        shift = max(0, (a.bit_length() - DEGREE + 7) // 8 * 8 - 8)
        while a >> DEGREE:
            top = a >> (DEGREE + shift)
            a = (a ^ (top << (DEGREE + shift))) ^ (self.table[top] << shift)
            shift = max(0, shift - 8)
        return a

    def times_x(self, a: int, times: int = 1) -> int:
        for _ in range(times):
            a <<= 1
            if a >> DEGREE:
                a ^= self.phi
        return a


@lru_cache(maxsize=1)
def _reducer() -> _Reducer:
    return _Reducer(characteristic_polynomial())


class JumpAhead:
    """Jump a ``TwisterState`` ahead by ``draws`` words: the state it would have after drawing them.

    Built once per jump length (``X**J mod phi``); ``apply`` is then much cheaper, for any state. The jumped state is the one PyTorch would hold, byte for byte: the same 624-word block
    (blocks start every 624 words of the sequence) and the same position in it.
    """

    def __init__(self, draws: int):
        if draws < 2 * N:
            raise ValueError(f"jump of {draws} words: too short to be worth it (draw them)")
        self.draws = draws
        self.base_exponent = draws - N - 1  # the least exponent a jump of this length needs
        self.base = self._power(self.base_exponent, _reducer())
        self.taps = {}  # exponent -> the i where X**exponent mod phi has a 1

    @staticmethod
    def _power(exponent: int, reduce: _Reducer) -> int:
        """X**exponent mod phi, square and multiply from the top bit."""
        result = 1
        for bit in f"{exponent:b}":
            result = reduce(poly_square(result))
            if bit == "1":
                result = reduce.times_x(result)
        return result

    def _taps(self, exponent: int) -> np.ndarray:
        if exponent not in self.taps:
            poly = _reducer().times_x(self.base, exponent - self.base_exponent)
            bits = np.unpackbits(np.frombuffer(poly.to_bytes(DEGREE // 8 + 1, "little"), dtype=np.uint8),
                                 bitorder="little")
            self.taps[exponent] = np.flatnonzero(bits)
        return self.taps[exponent]

    def apply(self, state: TwisterState) -> TwisterState:
        """The state after ``self.draws`` more words. Its next word is word ``q = pos + draws`` of ``state``'s
        sequence, in the block of words ``m .. m + 623`` (``m`` a multiple of 624, ``q - m`` in 1..624); word
        ``m + j`` = XOR over the taps ``i`` of X**(m - 1) mod phi of word ``1 + j + i``."""
        q = state.pos + self.draws
        m = -(-q // N) * N - N
        taps = self._taps(m - 1)
        seq = extend(state.words, DEGREE + 2 * N)[1:]
        windows = np.lib.stride_tricks.sliding_window_view(seq, N)  # row i: words 1 + i .. 624 + i
        out = np.zeros(N, dtype=np.uint32)
        for start in range(0, len(taps), 512):  # in blocks, so no 25 MB gather
            out ^= np.bitwise_xor.reduce(windows[taps[start:start + 512]], axis=0)
        return TwisterState(out, q - m, state.raw)
