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

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
WINDOW = dict(sliding_window=4, layer_types=["sliding_attention", "sliding_attention", "full_attention"])
LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
YARN = {"rope_type": "yarn", "rope_theta": 500000.0, "factor": 4.0, "original_max_position_embeddings": 16,
        "beta_fast": 32.0, "beta_slow": 1.0}
CASES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(rope_parameters=LLAMA3, attention_bias=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=16, tie_word_embeddings=True,
                                                     rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(num_experts=4, num_experts_per_tok=2,
                                                                moe_intermediate_size=16, norm_topk_prob=True,
                                                                mlp_only_layers=[1])),
    "qwen3_moe_unnormalised": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                               dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                    norm_topk_prob=False)),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM",
                    dict(head_dim=16, query_pre_attn_scalar=24, num_key_value_heads=1, tie_word_embeddings=True,
                         rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
                         **WINDOW)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=4)),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(num_local_experts=4, num_experts_per_tok=2)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict()),
    "olmo3": ("Olmo3Config", "Olmo3ForCausalLM",
              dict(rope_parameters={"full_attention": YARN,
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 500000.0}},
                   **WINDOW)),
}


def tiny_hf(case, seed=0):
    config_cls, model_cls, extra = CASES[case]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**{**COMMON, **extra})
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # default inits hide bugs: norms at 1 (Gemma's at 0)
            p.normal_(0.0, 0.3 if "norm" in name else 0.15)
    return model


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


IDS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))


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
