"""Greedy decoding that guesses ahead: drafts copied from text seen before, checked in one forward pass.

Unlike ``generate_text_cached`` (one forward pass per new token): when the last few tokens appeared before,
earlier in this text or in a reference text such as the training data, the tokens that followed them there
are a guess for what comes next. One forward pass through the KV cache checks the whole guess (a decoding
step reads every weight once, whether for one position or nine), keeps the guessed tokens up to the first
one that greedy decoding would not have picked, and adds greedy's own pick there. So the result is greedy
decoding's, token for token; only the number of passes changes (prompt-lookup decoding, a form of
speculative decoding with a draft that costs nothing). A model trained for a few epochs on a small text
repeats itself or its training text, and then most guesses are kept.

>>> drafts = Drafts([[5, 6, 7, 8, 9]])      # a reference text, as token ids
>>> drafts.guess([1, 2, 6, 7], 3)           # "6 7" was followed by "8 9" there
[8, 9]
>>> drafts.guess([1, 2, 1, 2], 3)           # the text itself: "1 2" was followed by "1 2"
[1, 2]
"""

from __future__ import annotations

import torch

from .generate import check_max_new_tokens, generate_loop

# Tokens guessed per pass. A pass over up to 3 positions costs about what one costs (GPT-124M in fp32 on a
# 2-core CPU), more positions cost more; over the book's ten per-epoch samples 2 guesses per pass take the
# least time (bench/README.md has the measurements).
DRAFT_TOKENS = 2
NGRAM = 3  # the longest run of last tokens looked up


class Drafts:
    """Where each run of 1 to ``NGRAM`` tokens was first seen in the reference texts (lists of ids), and
    the guess that follows a sequence's last tokens: from the sequence itself when they occurred in it
    before (the latest occurrence), else from the references."""

    def __init__(self, references=(), ngram: int = NGRAM):
        self.ngram, self.texts, self.seen = ngram, [list(t) for t in references], {}
        for doc, text in enumerate(self.texts):
            for end in range(1, len(text)):
                for n in range(1, min(ngram, end) + 1):
                    self.seen.setdefault(tuple(text[end - n:end]), (doc, end))

    def guess(self, tokens: list[int], count: int) -> list[int]:
        """Up to ``count`` ids that followed the longest possible run of ``tokens``' last ids."""
        for n in range(min(self.ngram, len(tokens) - 1), 0, -1):
            tail = tokens[-n:]
            for end in range(len(tokens) - 1, n - 1, -1):  # the latest earlier occurrence in the text itself
                if tokens[end - n:end] == tail:
                    return tokens[end:end + count]
            where = self.seen.get(tuple(tail))
            if where is not None:
                doc, end = where
                return self.texts[doc][end:end + count]
        return []


def can_look_ahead(model, idx, max_new_tokens, context_size) -> bool:
    """Whether ``generate_greedy_lookahead`` applies: one row of at least one token, an fp32 model (in bf16 a
    pass over several positions rounds otherwise than one-token steps, and near-ties then go another way) with
    a plain KV cache (no sliding-window ring), and prompt + new tokens within the context (no window to slide)."""
    if idx.shape[0] != 1 or idx.shape[1] == 0 or not getattr(model, "supports_kv_cache", False):
        return False
    if model.tok_emb.weight.dtype != torch.float32:
        return False
    cfg = model.cfg
    return (all(cfg.window(i) is None for i in range(cfg.n_layers))
            and idx.shape[1] + max_new_tokens <= min(context_size, model.context_length))


def generate_greedy_lookahead(model, idx, max_new_tokens, context_size, drafts: Drafts | None = None,
                              draft_tokens: int = DRAFT_TOKENS, stats: dict | None = None):
    """Greedy decoding of one row, ``idx`` (1, n), as ``generate_text_cached`` gives it, guessing ahead with
    ``drafts``; where ``can_look_ahead`` says no, it is ``generate_loop``'s greedy decoding. ``stats``, if
    given, gets the number of forward passes (``passes``)."""
    check_max_new_tokens(max_new_tokens)
    if max_new_tokens == 0 or not can_look_ahead(model, idx, max_new_tokens, context_size):
        return generate_loop(model, idx, max_new_tokens, context_size)
    drafts = drafts or Drafts()
    tokens = idx[0].tolist()
    target = len(tokens) + max_new_tokens
    passes = 1
    with torch.inference_mode():
        cache = model.new_kv_cache(1)
        logits = model(idx, kv_cache=cache, last_only=True)  # the prompt
        tokens.append(int(logits[0, -1].float().argmax()))
        while len(tokens) < target:
            guess = drafts.guess(tokens, min(draft_tokens, target - len(tokens) - 1))
            feed = torch.tensor([tokens[-1:] + guess], device=idx.device)  # the newest token is not cached yet
            picks = model(feed, kv_cache=cache)[0].float().argmax(dim=-1).tolist()  # greedy after each
            passes += 1
            kept = 0
            while kept < len(guess) and guess[kept] == picks[kept]:
                kept += 1
            cache.pos -= len(guess) - kept  # forget the keys of the guesses not kept
            tokens += guess[:kept] + [picks[kept]]
    if stats is not None:
        stats["passes"] = passes
    return torch.tensor([tokens[:target]], device=idx.device)
