"""The model core from named parts (issue 20): each part against an independent oracle, the config's rules,
every preset's size counted on the meta device, and cached = uncached decoding for a tiny model of every family."""

import math

import pytest
import torch
import torch.nn as nn

from ch02_text.errors import UserInputError
from ch03_attention.fast_attention import causal_mask
from ch04_gpt.attention import GroupedQueryAttention
from ch04_gpt.config import ALL_PRESETS, GPT_CONFIG_124M, estimate, model_config, validate_config
from ch04_gpt.families import FAMILIES
from ch04_gpt.feed_forward import GatedFeedForward, MixtureOfExperts, load_balancing_loss
from ch04_gpt.generate import generate_batch, generate_text_cached, generate_text_simple
from ch04_gpt.initial_weights import init_gpt2_weights
from ch04_gpt.model import GPTModel
from ch04_gpt.norms import GemmaRMSNorm, OlmoRMSNorm, RMSNorm
from ch04_gpt.rope import RotaryEmbedding, apply_rope, rope_frequencies
from tiny_models import randomised, tiny


# -- norms ------------------------------------------------------------------------------------------------
def test_rmsnorm_equals_torch_rmsnorm():
    x, w = torch.randn(3, 5, 16), torch.randn(16)
    ours, theirs = RMSNorm(16, eps=1e-6), nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.copy_(w)
        theirs.weight.copy_(w)
    torch.testing.assert_close(ours(x), theirs(x))


def test_the_three_weight_placements_by_formula_in_bf16():
    x, w = torch.randn(4, 64).bfloat16(), torch.randn(64).bfloat16()
    norm = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
    expected = {RMSNorm: w * norm.bfloat16(), OlmoRMSNorm: (w * norm).bfloat16(),
                GemmaRMSNorm: (norm * (1 + w.float())).bfloat16()}
    outs = {}
    for cls, want in expected.items():
        module = cls(64).bfloat16()
        with torch.no_grad():
            module.weight.copy_(w)
        outs[cls] = module(x)
        assert outs[cls].dtype == torch.bfloat16 and torch.equal(outs[cls], want), cls
    assert not torch.equal(outs[RMSNorm], outs[OlmoRMSNorm])  # the cast's place shows in bf16
    assert torch.all(GemmaRMSNorm(8).weight == 0)  # stored zero-centred


# -- positions ------------------------------------------------------------------------------------------------
def test_rope_frequencies_by_formula_and_against_transformers():
    inv, factor = rope_frequencies(8, 10000.0)
    torch.testing.assert_close(inv, torch.tensor([10000.0 ** (-i / 8) for i in (0, 2, 4, 6)]))
    assert factor == 1.0
    linear, _ = rope_frequencies(8, 10000.0, {"rope_type": "linear", "factor": 4.0})
    torch.testing.assert_close(linear, inv / 4)
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for kind, params in (("llama3", {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64}),
                         ("yarn", {"factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 32.0,
                                   "beta_slow": 1.0}),
                         ("yarn", {"factor": 8.0, "original_max_position_embeddings": 64,
                                   "attention_factor": 1.3})):
        config = transformers.LlamaConfig(hidden_size=64, num_attention_heads=2, max_position_embeddings=512,
                                          rope_parameters={"rope_type": kind, "rope_theta": 5e5, **params})
        want, want_factor = ROPE_INIT_FUNCTIONS[kind](config, "cpu")
        got, got_factor = rope_frequencies(32, 5e5, {"rope_type": kind, **params})
        torch.testing.assert_close(got, want.float())
        assert got_factor == pytest.approx(want_factor)


def test_rope_scores_depend_only_on_the_distance():
    rope = RotaryEmbedding(16, 10000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        cq, sq = rope(torch.tensor([m]), torch.float32)
        ck, sk = rope(torch.tensor([n]), torch.float32)
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert score(7, 3) == pytest.approx(score(14, 10), abs=1e-4) and score(7, 3) != pytest.approx(score(7, 5))


def test_an_unimplemented_rope_type_is_one_line():
    with pytest.raises(UserInputError, match="RoPE type 'longrope' is not implemented here"):
        model_config("llama-3.2-1b", rope_scaling={"rope_type": "longrope", "factor": 2.0})


# -- attention ------------------------------------------------------------------------------------------------
def test_grouped_query_attention_equals_heads_with_shared_keys_and_values():
    torch.manual_seed(0)
    gqa = GroupedQueryAttention(16, 16, 8, 0.0, num_heads=4, num_kv_heads=2, head_dim=6).eval()
    mha = GroupedQueryAttention(16, 16, 8, 0.0, num_heads=4, head_dim=6).eval()
    q, k, v = gqa.qkv.weight.split((24, 12, 12))
    repeat = lambda w: w.view(2, 6, 16).repeat_interleave(2, dim=0).reshape(24, 16)  # noqa: E731
    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([q, repeat(k), repeat(v)]))
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(gqa(x), mha(x))


def test_sliding_window_sees_exactly_the_last_window_keys():
    torch.manual_seed(0)
    att = GroupedQueryAttention(8, 8, 16, 0.0, num_heads=2, window=3).eval()
    x = torch.randn(1, 10, 8)
    changed = x.clone()
    changed[:, :6] = torch.randn(1, 6, 8)  # position 8 sees 6, 7, 8 only
    assert torch.allclose(att(x)[:, 8:], att(changed)[:, 8:]) and not torch.allclose(att(x)[:, 7], att(changed)[:, 7])
    assert causal_mask(torch.arange(4)[:, None], torch.arange(4)[None, :]).sum() == 10


# -- feed-forward -------------------------------------------------------------------------------------------------
def test_gated_feed_forward_by_formula():
    ff, x = GatedFeedForward(8, 12, "gelu_tanh"), torch.randn(3, 8)
    want = ff.fc3(nn.functional.gelu(ff.fc1(x), approximate="tanh") * ff.fc2(x))
    torch.testing.assert_close(ff(x[None])[0], want)


@pytest.mark.parametrize("normalise", [True, False])
def test_mixture_of_experts_by_a_loop_over_tokens(normalise):
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 12, n_experts=4, top_k=2, norm_topk_prob=normalise).eval()
    x = torch.randn(1, 5, 8)
    rows = []
    for token in x[0]:
        p = torch.softmax(moe.gate(token), dim=-1)
        w, chosen = torch.topk(p, 2)
        w = w / w.sum() if normalise else w
        rows.append(sum(wi * moe.experts[int(e)](token[None, None])[0, 0] for wi, e in zip(w, chosen)))
    torch.testing.assert_close(moe(x)[0], torch.stack(rows))


def test_load_balancing_loss_equals_transformers():
    pytest.importorskip("transformers")
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    logits = (torch.randn(10, 6), torch.randn(10, 6))
    torch.testing.assert_close(load_balancing_loss(list(logits), 6, 2), load_balancing_loss_func(logits, 6, 2))


def test_moe_model_reports_its_router_loss_in_training_only():
    model = GPTModel(tiny("qwen3-moe", router_aux_loss_coef=0.01)).train()
    model(torch.randint(0, 61, (2, 8)))
    aux = model.router_aux_loss()
    assert aux is not None and aux.requires_grad and 0.01 < float(aux.detach()) < 0.01 * 4
    model.eval()(torch.randint(0, 61, (2, 8)))
    assert model.router_aux_loss() is None


# -- the config ---------------------------------------------------------------------------------------------------
def test_config_refuses_unknown_keys_and_derives_the_rest():
    with pytest.raises(UserInputError, match="unknown key 'n_kv_head' .did you mean n_kv_heads"):
        validate_config({**GPT_CONFIG_124M, "n_kv_head": 4})
    cfg = validate_config(GPT_CONFIG_124M)
    assert (cfg.head_dim, cfg.n_kv_heads, cfg.hidden_dim, cfg.layer_types) == (64, 12, 3072, ("full",) * 12)
    narrow = validate_config({**cfg, "emb_dim": 96})  # derived values are re-derived, not copied
    assert narrow.head_dim == 8 and narrow.hidden_dim == 384
    with pytest.raises(dataclasses_frozen()):
        cfg.emb_dim = 5
    with pytest.raises(UserInputError, match="n_heads .12. must be a multiple of n_kv_heads .5."):
        validate_config({**GPT_CONFIG_124M, "n_kv_heads": 5})


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_every_preset_round_trips_and_its_estimate_is_the_real_count(name):
    cfg = model_config(name)
    assert validate_config(cfg.to_dict()) == cfg
    with torch.device("meta"):
        model = GPTModel(cfg)
    real = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    est = estimate(cfg)
    assert est["params"] == real
    if cfg.ff == "moe":
        experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        assert est["active_params"] == real - experts + experts * cfg.n_experts_per_token // cfg.n_experts
    else:
        assert est["active_params"] == real


def test_published_parameter_counts():
    published = {"llama-3.2-1b": 1_235_814_400, "llama-3.1-8b": 8_030_261_248, "qwen3-0.6b": 596_049_920,
                 "qwen3-30b-a3b": 30_532_122_624, "gemma3-270m": 268_098_176, "mistral-7b": 7_241_732_096,
                 "mixtral-8x7b": 46_702_792_704, "olmo2-1b": 1_484_916_736, "olmo3-7b": 7_298_011_136}
    assert {name: estimate(model_config(name))["params"] for name in published} == published


def test_gpt1_estimate_has_no_final_norm():
    cfg = model_config("gpt2-small", block="post", n_layers=1)
    assert estimate(cfg)["params"] == sum(p.numel() for p in GPTModel(cfg).parameters())


def test_the_book_kernels_refuse_later_parts():
    with pytest.raises(UserInputError, match="impl='book' builds the book's GPT-2 classes.*positions"):
        GPTModel(tiny("llama"), impl="book")


# -- every family: cache, batches, init --------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cached_equals_uncached_for_every_family_past_the_window(family):
    model = randomised(GPTModel(tiny(family)))
    idx = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(generate_text_cached(model, idx, 20, 24), generate_text_simple(model, idx, 20, 24),
                               atol=0, rtol=0)  # 29 tokens: past the context too (the window slides)
    rows = generate_batch(model, [idx[0, :2].tolist(), idx[1].tolist()], 8)
    assert rows == [generate_text_cached(model, idx[i:i + 1, :n], 8, 24)[0, n:].tolist() for i, n in ((0, 2), (1, 9))]


def test_a_sliding_layer_caches_at_most_its_window():
    model = GPTModel(tiny("mistral"))
    cache = model.new_kv_cache(1)
    assert all(k.shape[2] == 4 for k in cache.keys)
    full = GPTModel(tiny("llama")).new_kv_cache(1)
    assert full.keys[0].shape[2] == 24 and full.keys[0].shape[1] == model.cfg.n_kv_heads


@pytest.mark.parametrize("family", ["gpt2", "gpt1", "olmo2", "gemma3"])  # the four norm layouts
def test_blocks_call_no_dropout_nor_identity_outside_training(family):
    """TransformerBlock.shortcut: outside training a block calls neither its shortcut dropout nor an Identity
    output norm (in training the dropout runs, with the book's numbers)."""
    model = randomised(GPTModel({**tiny(family), "drop_rate": 0.1})).eval()
    calls = []
    for block in model.trf_blocks:
        for module in (block.drop_shortcut, block.post_att_norm, block.post_ff_norm):
            if isinstance(module, (nn.Dropout, nn.Identity)):
                module.register_forward_hook(lambda *_: calls.append(1))
    model(torch.tensor([[1, 2, 3]]))
    assert calls == []
    model.train()(torch.tensor([[1, 2, 3]]))
    assert len(calls) >= 2 * len(model.trf_blocks)


@pytest.mark.parametrize("family", ["llama", "olmo2", "qwen3-moe"])
def test_gpt2_init_finds_the_residual_projections_by_role(family):
    model = init_gpt2_weights(GPTModel(tiny(family, n_layers=8)))
    blocks = model.trf_blocks
    assert blocks[0].att.out_proj.weight.std() < 0.01 and blocks[0].att.qkv.weight.std() > 0.015
    down = blocks[0].ff.experts[0].fc3 if family == "qwen3-moe" else blocks[0].ff.fc3
    assert float(down.weight.detach().std()) == pytest.approx(0.02 / math.sqrt(16), rel=0.2)


def test_the_presets_table_lists_every_preset(capsys):
    from ch04_gpt.presets import main

    main([])
    out = capsys.readouterr().out
    assert all(f"| {name} |" in out for name in ALL_PRESETS) and "| qwen3-30b-a3b | Qwen3-MoE | 30,532.1M | 3,353.0M |" in out


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_the_cache_never_reads_a_position_it_did_not_write(family, monkeypatch):
    """Plain layers' caches are allocated without zeroing: fill them with NaN and decoding is unchanged."""
    import ch04_gpt.kv_cache as kv_cache

    model = randomised(GPTModel(tiny(family, n_layers=6)))  # Gemma 3: five sliding layers, then a global one
    idx = torch.tensor([[5, 7, 11, 2]])
    expected = generate_text_simple(model, idx, 30, 24)  # past the context and the windows
    real = kv_cache.unzeroed
    monkeypatch.setattr(kv_cache, "unzeroed", lambda *a, **k: real(*a, **k).fill_(float("nan")))
    cache = model.new_kv_cache(1)
    assert any(torch.isnan(k).all() for k in cache.keys)
    assert not any(torch.isnan(k).any() for k, w in zip(cache.keys, cache.windows) if w is not None)
    assert torch.equal(generate_text_cached(model, idx, 30, 24), expected)
    assert generate_batch(model, [[5, 7, 11, 2], [3]], 12) == [expected[0, 4:16].tolist(),
                                                               generate_text_simple(model, torch.tensor([[3]]), 12,
                                                                                    24)[0, 1:].tolist()]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_at_kept_positions_equal_the_whole_batchs_with_their_gradients(family, monkeypatch):
    """``kept`` (training on some targets of padded rows): the logits at the kept positions and the gradients of
    a loss over them are the whole forward pass's, in eval and in training; the pads after each row's last kept
    position are packed away (the blocks see fewer tokens) unless dropout is on (its masks are the whole batch's)."""
    monkeypatch.setattr("ch04_gpt.model.LIVE_MULTIPLE", 8)  # 21 live tokens and 3 pads
    model = randomised(GPTModel(tiny(family, drop_rate=0.0)))
    idx = torch.randint(0, 61, (3, 10), generator=torch.Generator().manual_seed(4))
    kept = torch.zeros(3, 10, dtype=torch.bool)
    kept[0, 2:6], kept[1, :10], kept[2, 4] = True, True, True  # rows of 6, 10 and 5 live tokens
    seen = []
    model.trf_blocks[0].ff.register_forward_hook(lambda module, inputs, out: seen.append(inputs[0].shape[:2]))
    for training in (False, True):
        model.train(training)
        grads = []
        for way in ("whole", "kept"):
            model.zero_grad()
            logits = model(idx)[kept] if way == "whole" else model(idx, kept=kept)
            logits.square().mean().backward()
            grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
            if way == "whole":
                expected = logits.detach()
        torch.testing.assert_close(logits.detach(), expected, atol=1e-5, rtol=1e-4)
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)
    assert seen[1] == (1, 6 + 10 + 5 + 3) and seen[0] == (3, 10)  # the kept way's blocks: the live tokens alone
    dropping = GPTModel(tiny(family, drop_rate=0.1)).train()
    assert dropping.packing(kept) is None and dropping.eval().packing(kept) is not None
