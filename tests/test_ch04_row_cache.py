"""RowKVCache (continuous batching): rows that join and leave between steps, each at its own length, compute what
each computes alone, for every family (sliding windows past the window, grouped queries, MoE), in fp32 and bf16;
its bad uses are refused."""

import pytest
import torch

from ch04_gpt.families import FAMILIES
from ch04_gpt.kv_cache import KVCache
from ch04_gpt.model import GPTModel
from ch04_gpt.packed_linear import can_pack, pack_for_decoding
from ch04_gpt.row_cache import RowKVCache
from tiny_models import randomised, tiny

PROMPTS = {"a": [3, 14, 15, 9, 2], "b": [6, 5], "c": [35, 8, 9, 7, 9, 3, 2], "d": [38, 4, 6]}
NEW = {"a": 12, "b": 3, "c": 9, "d": 10}  # logits each row gives; b ends first, and d takes its row
JOINS = {0: "ab", 2: "c", 4: "d"}


def alone(model, ids, n):
    """Greedy logits of ``ids`` decoded alone with the model's own cache (rings on sliding layers)."""
    cache, out = model.new_kv_cache(1), []
    logits = model(torch.tensor([ids]), kv_cache=cache, last_only=True)[0, -1]
    for _ in range(n):
        out.append(logits.float())
        logits = model(logits.argmax().view(1, 1), kv_cache=cache, last_only=True)[0, -1]
    return torch.stack(out)


def encoded(model, ids, max_len):
    """A prompt encoded alone into a one-row cache without rings, as the server encodes it; its last logits."""
    cfg = model.cfg
    cache = KVCache(cfg.n_layers, 1, cfg.n_kv_heads, max_len, cfg.head_dim, dtype=model.tok_emb.weight.dtype)
    return cache, model(torch.tensor([ids]), kv_cache=cache, last_only=True)[0, -1].float()


def together(model, max_rows=3, max_len=24):
    """Every prompt decoded greedily in one RowKVCache, joining at JOINS' steps and leaving after NEW logits."""
    cache, rows, got = RowKVCache.of(model, max_rows, max_len), [], {k: [] for k in PROMPTS}
    for step in range(40):
        for key in JOINS.get(step, ""):
            one, logits = encoded(model, PROMPTS[key], max_len)
            got[key].append(logits)
            assert cache.add(one) == len(rows)
            rows.append(key)
        if not rows:
            break
        tokens = torch.tensor([[int(got[k][-1].argmax())] for k in rows])
        for key, logits in zip(rows, model(tokens, kv_cache=cache, last_only=True)[:, -1].float()):
            got[key].append(logits)
        for key in [k for k in rows if len(got[k]) == NEW[k]]:
            row = rows.index(key)
            cache.remove(row)
            rows[row] = rows[-1]
            rows.pop()
    assert cache.rows == 0
    return {k: torch.stack(v) for k, v in got.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rows_joining_and_leaving_compute_what_each_computes_alone(family):
    model = randomised(GPTModel(tiny(family)))
    with torch.inference_mode():
        got = together(model)
        for key, ids in PROMPTS.items():
            expected = alone(model, ids, NEW[key])
            torch.testing.assert_close(got[key], expected, atol=2e-5, rtol=1e-4)
            assert got[key].argmax(-1).tolist() == expected.argmax(-1).tolist()


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_in_bf16_with_packed_weights_too(family):
    if not can_pack(torch.bfloat16):
        pytest.skip("this CPU runs no packed bf16 weights")
    model = randomised(GPTModel(tiny(family))).to(torch.bfloat16)
    pack_for_decoding(model, rows=3)
    with torch.inference_mode():
        got = together(model)
        for key, ids in PROMPTS.items():  # bf16 rounding: close, not equal (a row is computed in another batch)
            torch.testing.assert_close(got[key], alone(model, ids, NEW[key]), atol=0.05, rtol=0.05)


def test_unused_columns_of_a_shorter_row_are_finite_before_they_are_read():
    model = randomised(GPTModel(tiny("llama")))
    cache = RowKVCache.of(model, 2, 24)
    for t in (*cache.keys, *cache.values):
        t.fill_(float("nan"))  # what reused memory may hold
    with torch.inference_mode():
        for ids in (PROMPTS["c"], PROMPTS["b"]):
            cache.add(encoded(model, ids, 24)[0])
        logits = model(torch.tensor([[1], [2]]), kv_cache=cache, last_only=True)
    assert torch.isfinite(logits).all()


def test_bad_uses_are_refused():
    model = randomised(GPTModel(tiny("mistral")))
    cache = RowKVCache.of(model, 1, 8)
    with pytest.raises(ValueError, match="without sliding windows"):
        cache.add(model.new_kv_cache(1))
    one, _ = encoded(model, [1, 2, 3], 8)
    cache.add(one)
    with pytest.raises(ValueError, match="all 1 rows are in use"):
        cache.add(one)
    with pytest.raises(ValueError, match="one token per row"):
        model(torch.tensor([[1, 2]]), kv_cache=cache)
