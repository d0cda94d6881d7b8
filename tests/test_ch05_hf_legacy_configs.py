"""Every family's config.json as transformers 4.x wrote it (the form most folders on the hub still carry), against
transformers 5 reading the same folder: tiny random models saved by transformers, their config.json rewritten into
the older spelling (``rope_theta`` + ``rope_scaling``, Gemma 3's ``rope_local_base_freq`` and
``sliding_window_pattern``, Qwen3's ``max_window_layers``), loaded by ``load_hf``: same logits, same greedy tokens
past the sliding window, and our export read back by transformers. Keys a config.json leaves out take the
defaults transformers gives them."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the parity tests")

from ch04_gpt.generate import generate_text_cached  # noqa: E402
from ch04_gpt.model import GPTModel  # noqa: E402
from ch05_pretraining.hf_weights import config_from_hf, export_hf, hf_config, load_hf  # noqa: E402
from hf_tiny import IDS, LLAMA3, YARN, tiny_model  # noqa: E402

SLIDE, FULL = "sliding_attention", "full_attention"
FOUR = dict(num_hidden_layers=4)  # four layers: a sliding_window_pattern of 2, OLMo 3's every 4th layer full
LEGACY = {  # case: (config class, causal-LM class, settings), saved by transformers 5, then rewritten
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(rope_parameters=LLAMA3, attention_bias=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",  # layers from max_window_layers on slide
              dict(head_dim=16, use_sliding_window=True, sliding_window=4, max_window_layers=2,
                   rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, norm_topk_prob=True,
                       mlp_only_layers=[1], rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "qwen3_moe_windowed": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",  # use_sliding_window: every layer slides
                           dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, norm_topk_prob=True,
                                use_sliding_window=True, sliding_window=4)),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM",  # linear x8 globally; thetas apart: mix-ups show
                    dict(head_dim=16, query_pre_attn_scalar=24, num_key_value_heads=1, tie_word_embeddings=True,
                         sliding_window=4, layer_types=[SLIDE, FULL, SLIDE, FULL],
                         rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})),
    "mistral": ("MistralConfig", "MistralForCausalLM",
                dict(sliding_window=4, rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(num_local_experts=4, num_experts_per_tok=2)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(rope_parameters={"rope_type": "default", "rope_theta": 5e5})),
    "olmo3": ("Olmo3Config", "Olmo3ForCausalLM",  # one rope_theta for both layer types, as OLMo 3 has it
              dict(sliding_window=4, layer_types=[SLIDE, SLIDE, SLIDE, FULL],
                   rope_parameters={"full_attention": YARN,
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 500000.0}})),
}
WINDOWED = ["qwen3", "qwen3_moe_windowed", "gemma3_text", "mistral", "olmo3"]
# keys a config.json may leave out, each then taking its config class's default (Gemma 3's text_config does)
DEFAULTED = ("rope_theta", "rope_scaling", "rope_local_base_freq", "sliding_window_pattern", "layer_types",
             "rms_norm_eps", "query_pre_attn_scalar", "norm_topk_prob", "hidden_act", "hidden_activation",
             "use_sliding_window", "router_aux_loss_coef")


def as_transformers_4(config: dict) -> dict:
    """The config.json transformers 4.x wrote for the model that transformers 5 wrote as ``config``."""
    out = {k: v for k, v in config.items() if k not in ("rope_parameters", "dtype", "_sliding_window_pattern")}
    out.update(torch_dtype=config.get("dtype", "float32"), transformers_version="4.56.2")
    rope = dict(config["rope_parameters"])
    if FULL in rope:  # per layer type -> one global RoPE (+ Gemma 3's local base)
        if config["model_type"] == "gemma3_text":
            out["rope_local_base_freq"] = rope[SLIDE]["rope_theta"]
        rope = dict(rope[FULL])
    out["rope_theta"] = rope.pop("rope_theta")
    out["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    if config["model_type"] == "gemma3_text":  # one int: every n-th layer full
        types = out.pop("layer_types")
        pattern = types.index(FULL) + 1
        assert types == [FULL if (i + 1) % pattern == 0 else SLIDE for i in range(len(types))]
        out.update(sliding_window_pattern=pattern, cache_implementation="hybrid")
    if config["model_type"] == "qwen3":  # before layer_types: max_window_layers says where sliding starts
        out.pop("layer_types")
    return out


def rewrite(folder, change) -> dict:
    path = folder / "config.json"
    config = change(json.loads(path.read_text()))
    path.write_text(json.dumps(config, indent=2))
    return config


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """case -> a folder whose config.json is in transformers 4.x's spelling."""
    folders = {}

    def save(case):
        if case not in folders:
            folder = tmp_path_factory.mktemp(case)
            tiny_model(*LEGACY[case][:2], {**FOUR, **LEGACY[case][2]}).save_pretrained(folder)
            config = rewrite(folder, as_transformers_4)
            assert "rope_parameters" not in config and "rope_theta" in config
            folders[case] = folder
        return folders[case]
    return save


def both(folder):
    ours = load_hf(folder, dtype=torch.float32)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return ours, theirs


def assert_same_logits(ours, theirs, ids=IDS):
    with torch.no_grad():
        expected = theirs(ids).logits
        got = ours(ids)
    assert expected.abs().max() > 0.5  # random weights: logits far from zero
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", list(LEGACY))
def test_an_older_config_loads_as_transformers_reads_it(case, legacy):
    ours, theirs = both(legacy(case))
    assert_same_logits(ours, theirs)
    if getattr(theirs.config, "layer_types", None):  # the families that list them (Mistral's slide all alike)
        assert list(ours.cfg.layer_types) == [t.removesuffix("_attention") for t in theirs.config.layer_types]


@pytest.mark.parametrize("case", WINDOWED)
def test_greedy_tokens_past_the_window_equal_transformers(case, legacy):
    ours, theirs = both(legacy(case))
    assert "sliding" in ours.cfg.layer_types
    prompt = IDS[:1, :6]
    expected = theirs.generate(prompt, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate_text_cached(ours, prompt, 16, 64), expected)


@pytest.mark.parametrize("case", list(LEGACY))
def test_the_export_of_an_older_folder_is_read_back_by_transformers(case, legacy, tmp_path):
    ours = load_hf(legacy(case), dtype=torch.float32)
    export_hf(ours, tmp_path / "out")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    assert_same_logits(ours, theirs)
    assert config_from_hf(hf_config(ours.cfg)) == ours.cfg


@pytest.mark.parametrize("case", list(LEGACY))
def test_keys_left_out_take_the_defaults_transformers_gives_them(case, legacy, tmp_path):
    folder = tmp_path / case
    ours = load_hf(legacy(case), dtype=torch.float32)
    export_hf(ours, folder)  # the same weights, a config.json we then strip
    config = rewrite(folder, lambda c: {k: v for k, v in as_transformers_4(c).items() if k not in DEFAULTED})
    assert "rope_theta" not in config
    assert_same_logits(*both(folder))


def test_gemma3_reads_the_pattern_and_each_rope_where_it_belongs(legacy):
    """The tiny Gemma 3 tells the mix-ups apart: every layer full (sliding_window_pattern ignored), the global
    scaling or base on the sliding layers, or no scaling at all each gives other logits than transformers'."""
    ours, theirs = both(legacy("gemma3_text"))
    cfg = ours.cfg
    assert cfg.layer_types == ("sliding", "full", "sliding", "full") and cfg.sliding_window == 4
    assert (cfg.rope_theta, cfg.local_rope_theta, cfg.rope_scaling) == (1e6, 1e4, {"rope_type": "linear",
                                                                                    "factor": 8.0})
    with torch.no_grad():
        expected = theirs(IDS).logits
        torch.testing.assert_close(ours(IDS), expected, atol=1e-4, rtol=1e-4)
        for wrong in (dict(layer_types=("full",) * 4), dict(local_rope_theta=1e6), dict(local_rope_theta=None),
                      dict(rope_scaling=None), dict(rope_theta=1e4)):
            model = GPTModel(cfg.replace(**wrong)).eval()
            model.load_state_dict(ours.state_dict())
            assert (model(IDS) - expected).abs().max() > 1e-2, wrong


def test_the_sparse_text_config_of_a_multimodal_gemma3_folder(tmp_path):
    """Gemma 3 4B's config.json: model_type gemma3, a text_config that leaves out what Gemma3TextConfig
    defaults (the thetas, the pattern: every 6th layer full, query_pre_attn_scalar 256 ...)."""
    text = {k: v for k, v in {**FOUR, **LEGACY["gemma3_text"][2]}.items()
            if k not in ("rope_parameters", "layer_types", "query_pre_attn_scalar")}  # tied, as by default
    rope = {"full_attention": {"rope_type": "linear", "factor": 8.0}, "sliding_attention": {"rope_type": "default"}}
    text = {**text, "num_hidden_layers": 7, "rope_parameters": rope}  # the thetas: Gemma3TextConfig's defaults
    model = tiny_model("Gemma3TextConfig", "Gemma3ForCausalLM", text)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    sizes = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window")
    text_config = {"model_type": "gemma3_text", "rope_scaling": {"rope_type": "linear", "factor": 8.0},
                   **{k: saved[k] for k in sizes}}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "architectures": ["Gemma3ForCausalLM"],
                                                      "text_config": text_config}))
    ours = load_hf(tmp_path, dtype=torch.float32)
    assert ours.cfg.layer_types == ("sliding",) * 5 + ("full", "sliding")
    assert (ours.cfg.rope_theta, ours.cfg.local_rope_theta, ours.cfg.attn_scale) == (1e6, 1e4, 256 ** -0.5)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS), model(IDS).logits, atol=1e-4, rtol=1e-4)


def test_a_config_json_without_a_size_or_with_a_zero_pattern_is_one_line():
    from ch02_text.errors import UserInputError

    with pytest.raises(UserInputError, match="lacks 'hidden_size', which a llama config.json needs"):
        config_from_hf({"model_type": "llama", "vocab_size": 50, "num_hidden_layers": 2})
    sizes = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4)
    with pytest.raises(UserInputError, match="a value this reader cannot use"):
        config_from_hf({"model_type": "gemma3_text", "sliding_window_pattern": 0, **sizes})
    assert config_from_hf({"model_type": "gemma3_text", "sliding_window_pattern": 2, **sizes}).layer_types == \
        ("sliding", "full", "sliding", "full")
