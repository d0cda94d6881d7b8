"""A byte-level BPE tokenizer you can train, save, and load GPT-2's merges into.

What this adds over ``tokenizers.py``: instead of a word vocabulary (where unseen
words become ``<|unk|>``) every string is first turned into UTF-8 bytes, so nothing is
ever unknown; training then merges the most frequent adjacent pair of tokens into a
new token, again and again. Loaded with GPT-2's ``vocab.bpe`` + ``encoder.json``
(``BPETokenizer.from_gpt2``) it produces exactly tiktoken's ids.

Vocabulary layout of a trained tokenizer::

    ids 0..255                      the 256 single bytes
    ids 256..256+n_merges-1         one new token per merge, in training order
    next len(special_tokens) ids    the special tokens
    vocab_size = 256 + n_merges + len(special_tokens)

Training counts pairs once over the unique pre-tokenized chunks (weighted by how often
each chunk occurs) and after each merge updates the counts only for the chunks that
contained the merged pair. Ties between equally frequent pairs go to the smallest pair
of ids, so training is deterministic.

>>> tok = BPETokenizer()
>>> tok.train("aaabdaaabac", vocab_size=256 + 3, special_tokens=(), pattern=None)
>>> tok.encode("aaabdaaabac")
[258, 100, 258, 97, 99]
>>> tok.tokenize("aaabdaaabac")
['aaab', 'd', 'aaab', 'a', 'c']
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from pathlib import Path

import regex

from .cli import CliParser, cli_errors
from .data_files import read_data_text, read_text_file
from .errors import UserInputError
from .option_types import nonneg_int, positive_int
from .safe_files import atomic_write_bytes, check_writable
from .tokenizers import GPT2_PATTERN, SPECIAL_TOKENS

FORMAT = "llms-from-scratch-bpe"
VERSION = 1


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable characters (for files and display)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def to_printable(token: bytes) -> str:
    return "".join(BYTE_TO_CHAR[b] for b in token)


def from_printable(text: str) -> bytes:
    return bytes(CHAR_TO_BYTE[c] for c in text)


def special_pattern(specials):
    """A regex matching any of ``specials`` (longest first), or None when there are none."""
    specials = sorted(specials, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(s) for s in specials)) if specials else None


def pair_counts(words) -> Counter:
    """Adjacent-pair counts over ``words``: a list of (ids, multiplicity)."""
    counts = Counter()
    for ids, n in words:
        for pair in zip(ids, ids[1:]):
            counts[pair] += n
    return counts


def merge_ids(ids, pair, new_id):
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_merges(chunks, n_merges) -> list[tuple[int, int]]:
    """Learn up to ``n_merges`` merges from pre-tokenized ``chunks`` (strings), incrementally."""
    uniq = Counter(chunks)
    words = [list(chunk.encode("utf-8")) for chunk in uniq]
    mult = list(uniq.values())
    counts = pair_counts(zip(words, mult))
    where = defaultdict(set)  # pair -> indices of words containing it
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale heap entry
        new_id = 256 + len(merges)
        merges.append(pair)
        changed = set()
        for w in where.pop(pair, ()):
            ids, n = words[w], mult[w]
            new = merge_ids(ids, pair, new_id)
            for p in zip(ids, ids[1:]):
                counts[p] -= n
                changed.add(p)
            for p in zip(new, new[1:]):
                counts[p] += n
                changed.add(p)
                where[p].add(w)
            words[w] = new
        for p in changed:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                counts.pop(p, None)
                where.pop(p, None)
    return merges


class BPETokenizer:
    """Byte-level BPE: ``train``/``encode``/``decode``/``tokenize``/``save``/``load``/``from_gpt2``; a
    ``tokenizer_protocol.StoredTokenizer``."""

    format = FORMAT

    def __init__(self):
        self.pattern: str | None = GPT2_PATTERN
        self.merges: list[tuple[int, int]] = []
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        self.special_tokens: dict[str, int] = {}
        self._rebuild()

    # -- construction -------------------------------------------------------------------
    def _rebuild(self):
        self.ranks = {}
        for i in sorted(self.vocab):
            if i not in self.special_tokens.values():
                self.ranks.setdefault(self.vocab[i], i)  # a byte string made twice keeps its first id
        self.inverse_special = {i: s for s, i in self.special_tokens.items()}
        self._compiled = regex.compile(self.pattern) if self.pattern else None
        self._cache = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    n_vocab = vocab_size  # tiktoken's name, so the trainer and the CLIs take either tokenizer

    @property
    def eot_token(self) -> int | None:
        """The id that ends a document: ``<|endoftext|>``, else ``<eos>``, else None."""
        return end_of_text_id(self.special_tokens)

    def chunks(self, text: str) -> list[str]:
        """Pre-tokenize: GPT-2's regex split (or the whole text when the pattern is off)."""
        if self._compiled is None:
            return [text] if text else []
        return self._compiled.findall(text)

    def train(self, text, vocab_size, special_tokens=SPECIAL_TOKENS["gpt2"], pattern=GPT2_PATTERN, verbose=False):
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``."""
        special_tokens = tuple(special_tokens)
        minimum = 256 + len(special_tokens)
        if vocab_size < minimum:
            raise UserInputError(f"vocab_size must be at least {minimum} (256 bytes + "
                             f"{len(special_tokens)} special tokens), got {vocab_size}")
        self.pattern = pattern
        self._compiled = regex.compile(pattern) if pattern else None
        specials = special_pattern(special_tokens)
        chunks = []
        for part in (specials.split(text) if specials else [text]):
            chunks.extend(self.chunks(part))
        self.merges = train_merges(chunks, vocab_size - minimum)
        self.vocab = {i: bytes([i]) for i in range(256)}
        for i, (a, b) in enumerate(self.merges):
            self.vocab[256 + i] = self.vocab[a] + self.vocab[b]
            if verbose:
                print(f"merge {i + 1}: {self.vocab[a]!r} + {self.vocab[b]!r} -> {256 + i}")
        start = 256 + len(self.merges)
        self.special_tokens = {s: start + i for i, s in enumerate(special_tokens)}
        self._rebuild()

    @classmethod
    def from_gpt2(cls, vocab_bpe, encoder_json) -> "BPETokenizer":
        """GPT-2's tokenizer from its released files: same ids as ``tiktoken.get_encoding("gpt2")``."""
        tok = cls()
        encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        merge_lines = [line for line in lines[1:] if line.strip()]
        specials = {s: i for s, i in encoder.items() if s.startswith("<|") and s.endswith("|>")}
        tok.vocab = {i: from_printable(s) for s, i in encoder.items() if s not in specials}
        by_bytes = {b: i for i, b in tok.vocab.items()}
        tok.merges = []
        for line in merge_lines:
            a, b = line.split()
            tok.merges.append((by_bytes[from_printable(a)], by_bytes[from_printable(b)]))
        tok.special_tokens = specials
        tok.pattern = GPT2_PATTERN
        tok._rebuild()
        return tok

    # -- encoding -----------------------------------------------------------------------
    def _encode_piece(self, piece: bytes) -> list[int]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        parts = [piece[i:i + 1] for i in range(len(piece))]
        ranks = self.ranks
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        ids = [ranks[p] for p in parts]
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode with special-token strings treated as plain text."""
        ids = []
        for chunk in self.chunks(text):
            ids.extend(self._encode_piece(chunk.encode("utf-8")))
        return ids

    def encode(self, text: str, allowed_special=frozenset(), disallowed_special="all") -> list[int]:
        """Text -> ids. Special tokens are encoded only if in ``allowed_special`` (or ``"all"``);
        one appearing in the text otherwise raises ValueError, as tiktoken does, unless
        ``disallowed_special=()``.
        """
        if allowed_special == "all":
            allowed_special = set(self.special_tokens)
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise UserInputError(f"not special tokens of this tokenizer: {sorted(unknown)}")
        if disallowed_special == "all":
            disallowed_special = set(self.special_tokens) - set(allowed_special)
        for special in disallowed_special:
            if special in text:
                raise UserInputError(
                    f"text contains the special token {special!r}: pass allowed_special={{{special!r}}} "
                    "to encode it as a special token, or disallowed_special=() to encode it as text")
        if not allowed_special:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for match in special_pattern(allowed_special).finditer(text):
            ids.extend(self.encode_ordinary(text[start:match.start()]))
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    def token_bytes(self, i: int) -> bytes:
        if i in self.inverse_special:
            return self.inverse_special[i].encode("utf-8")
        if i not in self.vocab:
            raise ValueError(f"token id {i} is not in the vocabulary (size {self.vocab_size})")
        return self.vocab[i]

    def decode(self, ids) -> str:
        """Ids -> text; byte sequences that are not valid UTF-8 become U+FFFD, like tiktoken."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def tokenize(self, text: str, allowed_special="all") -> list[str]:
        """The pieces ``encode`` produces, as readable strings (partial UTF-8 shown as \\x..)."""
        return [self.token_bytes(i).decode("utf-8", errors="backslashreplace")
                for i in self.encode(text, allowed_special=allowed_special)]

    def describe(self) -> str:
        return (f"own BPE: 256 bytes + {len(self.merges)} merges + {len(self.special_tokens)} special "
                f"= {self.n_vocab} ids")

    # -- files --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "merges": [f"{to_printable(self.vocab[a])} {to_printable(self.vocab[b])}" for a, b in self.merges],
            "vocab": [[to_printable(b), i] for i, b in sorted(self.vocab.items())],
        }

    def save(self, path) -> Path:
        """Write the tokenizer as human-readable JSON (GPT-2's printable byte alphabet), atomically."""
        payload = json.dumps(self.to_dict(), ensure_ascii=False, indent=1).encode("utf-8")
        path = Path(path)
        atomic_write_bytes(path, payload)
        return path

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        return cls.from_dict(read_json_file(path, "tokenizer file"), f"tokenizer file '{path}'")

    @classmethod
    def from_dict(cls, data, source="tokenizer") -> "BPETokenizer":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserInputError(f"{source} is not a {FORMAT} file: save one with BPETokenizer.save "
                                 "or python -m ch05_pretraining.prepare --train-tokenizer")
        if data.get("version") != VERSION:
            raise UserInputError(f"{source} has version {data.get('version')}; this code reads {VERSION}")
        try:
            tok = cls()
            tok.pattern = data["pattern"]
            tok.vocab = {int(i): from_printable(s) for s, i in data["vocab"]}
            by_bytes = {b: i for i, b in sorted(tok.vocab.items(), reverse=True)}
            tok.merges = [tuple(by_bytes[from_printable(p)] for p in m.split(" ")) for m in data["merges"]]
            tok.special_tokens = {s: int(i) for s, i in data["special_tokens"].items()}
            tok._rebuild()
        except (KeyError, ValueError, TypeError, AttributeError, regex.error) as exc:
            raise UserInputError(f"{source} is damaged ({type(exc).__name__}: {exc})") from None
        return tok


def end_of_text_id(special_tokens: dict) -> int | None:
    """The id of ``<|endoftext|>``, else of ``<eos>``: the separator written between documents."""
    for name in ("<|endoftext|>", "<eos>"):
        if name in special_tokens:
            return special_tokens[name]
    return None


def read_json_file(path, what="file"):
    """A JSON file's contents; a missing, unreadable or non-JSON file is one UserInputError."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UserInputError(f"{what} '{path}' does not exist or is a directory: check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{what} '{path}' is damaged or not JSON ({type(exc).__name__})") from None


def main(argv=None):
    from .tokenizers import SimpleTokenizerV2, build_vocab, split_text

    p = CliParser(
        prog="python -m ch02_text.bpe",
        description="Train a byte-level BPE tokenizer on the-verdict, print its first merges, "
                    "compare it with the word-level tokenizer on unseen words, and save it.")
    p.add_argument("--vocab-size", type=positive_int, default=1000, help="256 bytes + merges + specials")
    p.add_argument("--data", default=None, help="UTF-8 text file (None: the-verdict.txt)")
    p.add_argument("--specials", choices=sorted(SPECIAL_TOKENS), default="gpt2",
                   help="gpt2: <|endoftext|>; classic: <pad> <unk> <bos> <eos>")
    p.add_argument("--no-pretokenize", action="store_true", help="let merges cross word boundaries")
    p.add_argument("--show-merges", type=nonneg_int, default=20, help="how many first merges to print")
    p.add_argument("--out", default="checkpoints/bpe-the-verdict.json", help="where to save the tokenizer")
    args = p.parse_args(argv)
    with cli_errors():
        check_writable(args.out, "--out")
        text = read_text_file(args.data) if args.data else read_data_text("the-verdict.txt")
        tok = BPETokenizer()
        tok.train(text, args.vocab_size, special_tokens=SPECIAL_TOKENS[args.specials],
                  pattern=None if args.no_pretokenize else GPT2_PATTERN)
        print(f"trained {len(tok.merges)} merges: vocab_size {tok.vocab_size} "
              f"(256 bytes + {len(tok.merges)} merges + {len(tok.special_tokens)} special tokens)")
        print(f"first {min(args.show_merges, len(tok.merges))} merges:")
        for i, (a, b) in enumerate(tok.merges[: args.show_merges]):
            print(f"  {256 + i:5d}: {tok.vocab[a].decode('utf-8', 'backslashreplace')!r} + "
                  f"{tok.vocab[b].decode('utf-8', 'backslashreplace')!r} -> "
                  f"{tok.vocab[256 + i].decode('utf-8', 'backslashreplace')!r}")
        words = SimpleTokenizerV2(build_vocab(split_text(text), special_tokens=True))
        print("\nunseen words: word-level tokenizer (chapter 2) vs BPE pieces")
        for word in ["cats", "playing", "unbelievable", "someunknownPlace"]:
            print(f"  {word:18s} {words.decode(words.encode(word)):10s} {tok.tokenize(word)}")
        sample = "Hello, café 🙂 — naïve façade"
        assert tok.decode(tok.encode(sample)) == sample
        print(f"\nround trip of {sample!r}: {tok.tokenize(sample)}")
        path = tok.save(args.out)
        print(f"saved tokenizer to {path}")
        return tok


if __name__ == "__main__":
    main()
