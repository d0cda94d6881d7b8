"""Open-weight families against transformers (issues 20 and 21): tiny random models written by transformers,
every parameter randomised (norms and routers too), loaded into GPTModel: same logits, same greedy tokens past
the sliding window, and our export read back by transformers."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the parity tests")

from ch02_text.errors import UserInputError  # noqa: E402
from ch04_gpt.generate import generate_batch, generate_text_cached, generate_text_simple  # noqa: E402
from ch05_pretraining.checkpoint import CheckpointError  # noqa: E402
from ch05_pretraining.hf_weights import config_from_hf, export_hf, hf_config, load_hf  # noqa: E402
from hf_tiny import CASES, COMMON, IDS, tiny_hf  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folders = {}

    def save(case):
        if case not in folders:
            folder = tmp_path_factory.mktemp(case)
            tiny_hf(case).save_pretrained(folder)
            folders[case] = folder
        return folders[case]
    return save


@pytest.mark.parametrize("case", list(CASES))
def test_logits_equal_transformers(case, saved):
    folder = saved(case)
    ours = load_hf(folder, dtype=torch.float32)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = theirs(IDS).logits
        got = ours(IDS)
    assert expected.abs().max() > 0.5  # random weights: logits far from zero
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # the KV cache gives what the whole window gives, past the sliding window too
    torch.testing.assert_close(generate_text_cached(ours, IDS, 20, 64), generate_text_simple(ours, IDS, 20, 64),
                               atol=0, rtol=0)


@pytest.mark.parametrize("case", ["mistral", "gemma3_text", "olmo3", "qwen3_moe"])
def test_greedy_tokens_equal_transformers_generate_past_the_window(case, saved):
    folder = saved(case)
    ours = load_hf(folder, dtype=torch.float32)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = IDS[:1, :6]
    expected = theirs.generate(prompt, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate_text_cached(ours, prompt, 16, 64), expected)
    # a left-padded batch: each row gets what it gets alone
    rows = generate_batch(ours, [IDS[0, :3].tolist(), IDS[1, :7].tolist()], 10)
    alone = [generate_text_cached(ours, IDS[i:i + 1, :n], 10, 64)[0, n:].tolist() for i, n in ((0, 3), (1, 7))]
    assert rows == alone


@pytest.mark.parametrize("case", list(CASES))
def test_export_is_read_back_by_transformers(case, saved, tmp_path):
    ours = load_hf(saved(case), dtype=torch.float32)
    export_hf(ours, tmp_path / "out")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(IDS).logits, ours(IDS), atol=1e-4, rtol=1e-4)
    assert config_from_hf(hf_config(ours.cfg)) == ours.cfg  # the config round trip


def test_a_sharded_folder_loads(tmp_path):
    model = tiny_hf("llama")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    with torch.no_grad():
        torch.testing.assert_close(load_hf(tmp_path, dtype=torch.float32)(IDS), model(IDS).logits,
                                   atol=1e-4, rtol=1e-4)


def test_a_missing_tensor_and_an_unknown_model_type_are_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_hf("olmo2").save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lacks tensor 'model.layers.1.mlp.up_proj.weight'"):
        load_hf(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "falcon"}))
    with pytest.raises(UserInputError, match="model_type 'falcon' is not supported"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "rope_parameters": {"rope_type": "dynamic",
                                                                                     "factor": 2.0}}))
    with pytest.raises(UserInputError, match="RoPE type 'dynamic' is not implemented"):
        load_hf(tmp_path)


def test_a_bf16_folder_loads_in_either_dtype(tmp_path):
    from ch02_text.hardware import bf16_supported

    model = tiny_hf("qwen3").to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    as_fp32 = load_hf(tmp_path, dtype=torch.float32)
    want = model.model.layers[1].self_attn.q_proj.weight.float()
    assert as_fp32.trf_blocks[1].att.qkv.weight.dtype == torch.float32
    torch.testing.assert_close(as_fp32.trf_blocks[1].att.qkv.weight[: want.shape[0]], want, atol=0, rtol=0)
    kept = load_hf(tmp_path)  # the file's bf16 where the CPU computes in bf16, else fp32
    assert kept.tok_emb.weight.dtype == (torch.bfloat16 if bf16_supported(torch.device("cpu")) else torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(as_fp32(IDS), model.float()(IDS).logits, atol=1e-4, rtol=1e-4)


def test_the_text_model_of_a_multimodal_gemma3_folder_loads(tmp_path):
    """Gemma 3 4B and up ship as Gemma3ForConditionalGeneration: a vision tower beside the language model."""
    from safetensors.torch import load_file, save_file

    text = {k: v for k, v in {**COMMON, **CASES["gemma3_text"][2]}.items() if k != "tie_word_embeddings"}
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                       image_token_index=96, boi_token_index=94, eoi_token_index=95)
    torch.manual_seed(0)
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if "norm" in name else 0.15)
    model.save_pretrained(tmp_path / "mm")
    ids = IDS[:, :10] % 90  # text tokens only
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    ours = load_hf(tmp_path / "mm", dtype=torch.float32)
    assert ours.cfg.family == "gemma3" and expected.abs().max() > 0.5
    torch.testing.assert_close(ours(ids), expected, atol=1e-4, rtol=1e-4)
    # the current naming (model.language_model.*, model.vision_tower.*) loads too
    tensors = load_file(tmp_path / "mm" / "model.safetensors")
    renamed = {("model." + k.replace("language_model.model.", "language_model.", 1)
                if not k.startswith("lm_head") else k): v for k, v in tensors.items()}
    assert any(k.startswith("model.language_model.layers.") for k in renamed)
    (tmp_path / "new").mkdir()
    save_file(renamed, tmp_path / "new" / "model.safetensors")
    (tmp_path / "new" / "config.json").write_text((tmp_path / "mm" / "config.json").read_text())
    torch.testing.assert_close(load_hf(tmp_path / "new", dtype=torch.float32)(ids), expected, atol=1e-4, rtol=1e-4)


def test_each_family_has_one_hugging_face_spec_and_export_refuses_layers_it_cannot_write():
    from ch04_gpt.config import scaled_config
    from ch04_gpt.families import FAMILY_SPECS
    from ch05_pretraining.hf_families import FAMILY_OF, HF_FAMILIES

    assert set(HF_FAMILIES) == set(FAMILY_SPECS) - {"gpt1"}  # GPT-1 (post-LN) has no transformers class here
    assert {FAMILY_OF[spec.model_types[0]] for spec in HF_FAMILIES.values()} == set(HF_FAMILIES)
    sizes = dict(emb_dim=32, n_heads=4, n_layers=2, vocab_size=50, context_length=16)
    windowed = scaled_config("llama-3.2-1b", sliding_window=4, **sizes)  # Llama's config.json has no windows
    with pytest.raises(UserInputError, match="layer types .* cannot be written as Hugging Face's llama"):
        hf_config(windowed)
    mixed = scaled_config("mistral-7b", layer_types=("sliding", "full"), **sizes)  # Mistral: every layer alike
    with pytest.raises(UserInputError, match="cannot be written as Hugging Face's mistral"):
        hf_config(mixed)
    for preset in ("mistral-7b", "gemma3-270m", "olmo3-7b", "qwen3-0.6b"):  # what they can write reads back
        cfg = scaled_config(preset, sliding_window=4, **sizes)
        assert config_from_hf(hf_config(cfg)).layer_types == cfg.layer_types


@pytest.mark.parametrize("preset", ["llama-3.2-1b", "qwen3-0.6b", "qwen3-30b-a3b", "gemma3-270m", "mistral-7b",
                                    "mixtral-8x7b", "olmo2-1b", "olmo3-7b"])
def test_the_config_json_of_each_real_preset_reads_in_transformers_as_ours(preset):
    """No weights: transformers' config class reads our config.json of the published sizes as we mean it."""
    from ch04_gpt.config import model_config

    cfg = model_config(preset)
    theirs = transformers.AutoConfig.for_model(**hf_config(cfg))
    assert (theirs.head_dim, theirs.num_key_value_heads, theirs.tie_word_embeddings) == \
        (cfg.head_dim, cfg.n_kv_heads, cfg.tie_weights)
    rope = theirs.rope_parameters
    full, local = (rope["full_attention"], rope["sliding_attention"]) if "full_attention" in rope else (rope, None)
    assert full["rope_theta"] == cfg.rope_theta and full["rope_type"] == (cfg.rope_scaling or {}).get("rope_type",
                                                                                                      "default")
    assert (local or {}).get("rope_theta", cfg.local_rope_theta) == cfg.local_rope_theta
    if getattr(theirs, "layer_types", None):
        assert [t.removesuffix("_attention") for t in theirs.layer_types] == list(cfg.layer_types)
    if "sliding" in cfg.layer_types:
        assert theirs.sliding_window == cfg.sliding_window
    assert getattr(theirs, "num_local_experts", 0) == cfg.n_experts
