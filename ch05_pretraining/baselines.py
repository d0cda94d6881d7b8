"""The baseline ladder's models: exact counts, an n-gram MLP and the rungs LM1-LM4 below the book's GPT.

Unlike ``GPTModel``: each rung leaves out parts of the GPT (positions, heads, feed-forward, residuals,
norms), so ``python -m ch05_pretraining.ladder`` can measure what each part buys. A neural rung is built
from a ``ModelConfig`` (its width, heads, context) and a ``rung`` dict (``name``, the n-gram's ``n``,
``n_blocks``); checkpoints store both, and ``build_rung`` rebuilds the model.

>>> cfg = model_config("gpt2-small", vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
>>> build_rung(cfg, {"name": "LM2", "n": 3, "n_blocks": 1})(torch.tensor([[1, 2, 3]])).shape
torch.Size([1, 3, 10])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .previous_chapters import CausalAttention, FeedForward, GPTModel, MultiHeadAttention, validate_config
from .previous_chapters import model_config  # noqa: F401 (the doctest)


# -- count models -------------------------------------------------------------------------------
class CountModel:
    """Unigram (``order=1``) or bigram (``order=2``) probabilities with add-k smoothing, from exact counts.

    >>> bigram = CountModel(np.array([0, 1, 0, 1, 0, 2]), vocab_size=3, order=2, k=0.0)
    >>> round(float(bigram.prob(0, 1)), 4), round(float(bigram.prob(0, 2)), 4)
    (0.6667, 0.3333)
    """

    def __init__(self, train_ids: np.ndarray, vocab_size: int, order: int, k: float = 1.0):
        self.vocab_size, self.order, self.k = vocab_size, order, k
        ids = np.asarray(train_ids, dtype=np.int64)
        if order == 1:
            self.counts = np.bincount(ids, minlength=vocab_size)
            self.total = len(ids)
        else:  # counts of each (previous, next) pair, kept sparse: a dense table of GPT-2's ids would be 10 GB
            pairs = ids[:-1] * vocab_size + ids[1:]
            self.pair_keys, self.pair_counts = np.unique(pairs, return_counts=True)
            self.prev_counts = np.bincount(ids[:-1], minlength=vocab_size)

    @property
    def n_params(self) -> int:
        return self.vocab_size if self.order == 1 else len(self.pair_keys)  # the numbers it stores

    def _pair_count(self, prev, nxt):
        keys = np.asarray(prev) * self.vocab_size + np.asarray(nxt)
        at = np.clip(np.searchsorted(self.pair_keys, keys), 0, len(self.pair_keys) - 1)
        return np.where(self.pair_keys[at] == keys, self.pair_counts[at], 0)

    def prob(self, prev, nxt):
        """p(next | prev) (the unigram ignores ``prev``)."""
        k, v = self.k, self.vocab_size
        if self.order == 1:
            return (self.counts[nxt] + k) / (self.total + k * v)
        return (self._pair_count(prev, nxt) + k) / (self.prev_counts[prev] + k * v)

    def loss(self, loader, num_batches=None) -> float:
        """Mean cross-entropy over the loader's (input, target) pairs: the next token given the current one."""
        total, n = 0.0, 0
        for i, (x, y) in enumerate(loader):
            if num_batches is not None and i >= num_batches:
                break
            p = self.prob(x.numpy().ravel(), y.numpy().ravel())
            total, n = total - np.log(p).sum(), n + p.size
        return total / n


# -- neural models ----------------------------------------------------------------------------------
class LadderModel(nn.Module):
    """What every neural rung shares: a config, a context length, no KV cache (generate re-encodes)."""

    supports_kv_cache = False

    def __init__(self, cfg, rung: dict):
        super().__init__()
        self.cfg, self.rung = cfg, dict(rung)

    @property
    def context_length(self) -> int:
        return self.cfg.context_length

    def embed(self, idx):
        """Token + position embeddings, for the rungs that have positions."""
        return self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))


class NgramMLP(LadderModel):
    """Bengio et al. (2003): the embeddings of the previous ``n`` tokens, concatenated, through a tanh MLP.

    Position t sees tokens t-n+1 ... t (a padding id before the start), nothing earlier.
    """

    def __init__(self, cfg, rung):
        super().__init__(cfg, rung)
        n, d, v = rung["n"], cfg.emb_dim, cfg.vocab_size
        self.tok_emb = nn.Embedding(v + 1, d)  # id v: "before the start of the text"
        self.mlp = nn.Sequential(nn.Linear(n * d, 4 * d), nn.Tanh(), nn.Linear(4 * d, v))

    def forward(self, idx):
        n, v = self.rung["n"], self.cfg.vocab_size
        padded = torch.cat([torch.full_like(idx[:, :1], v).expand(-1, n - 1), idx], dim=1)
        windows = padded.unfold(1, n, 1)  # (b, num_tokens, n): the n tokens ending at each position
        return self.mlp(self.tok_emb(windows).flatten(2))  # (b, num_tokens, n * emb_dim) -> logits


class LM1(LadderModel):
    """Token embedding -> linear: each position sees only its own token (a neural bigram)."""

    def __init__(self, cfg, rung):
        super().__init__(cfg, rung)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size)

    def forward(self, idx):
        return self.out_head(self.tok_emb(idx))


class LM2(LadderModel):
    """+ position embedding + one causal self-attention head (chapter 3's ``CausalAttention``)."""

    def __init__(self, cfg, rung):
        super().__init__(cfg, rung)
        d = cfg.emb_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.pos_emb = nn.Embedding(cfg.context_length, d)
        self.att = CausalAttention(d, d, cfg.context_length, 0.0)
        self.out_head = nn.Linear(d, cfg.vocab_size)

    def forward(self, idx):
        return self.out_head(self.att(self.embed(idx)))


class LM3(LadderModel):
    """+ multi-head attention + feed-forward, in ``n_blocks`` blocks without shortcuts or LayerNorm (LM4: several)."""

    def __init__(self, cfg, rung):
        super().__init__(cfg, rung)
        d = cfg.emb_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.pos_emb = nn.Embedding(cfg.context_length, d)
        self.blocks = nn.Sequential(*[
            nn.Sequential(MultiHeadAttention(d, d, cfg.context_length, 0.0, cfg.n_heads), FeedForward(cfg))
            for _ in range(rung["n_blocks"])])
        self.out_head = nn.Linear(d, cfg.vocab_size)

    def forward(self, idx):
        return self.out_head(self.blocks(self.embed(idx)))


NEURAL = {"ngram-mlp": NgramMLP, "LM1": LM1, "LM2": LM2, "LM3": LM3, "LM4": LM3}


def build_rung(cfg, rung: dict | None = None) -> nn.Module:
    """A neural rung from its architecture ``cfg`` and ``rung`` ({"name", "n", "n_blocks"}; None: the
    GPTModel of LM5). Checkpoints of the ladder carry both."""
    if rung is None or rung["name"] == "LM5":
        return GPTModel(cfg)
    return NEURAL[rung["name"]](validate_config(cfg), rung)


def split_legacy_rung(config: dict) -> tuple[dict, dict | None]:
    """Checkpoints written before the rung was stored apart kept it inside the config: split it off."""
    if "ladder" not in config:
        return config, None
    config = dict(config)
    rung = {"name": config.pop("ladder"), "n": config.pop("n", 3), "n_blocks": config.pop("n_blocks", 1)}
    return config, rung
