"""LoRA adapters against Hugging Face PEFT (issue 34): tiny random models written by transformers, every
parameter randomised, adapters' B included (zeros would hide every mapping bug). Our adapters written as a PEFT
folder give PEFT's logits on transformers' model, and PEFT's adapters loaded here give ours."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the parity tests")
peft = pytest.importorskip("peft", reason="pip install -r requirements-dev.txt for the PEFT parity tests")

from ch02_text.errors import UserInputError  # noqa: E402
from ch04_gpt.lora import LoRAConfig, adapted_layers, add_lora, merge_and_unload  # noqa: E402
from ch05_pretraining.adapters import fingerprint, read_peft_folder, write_peft_folder  # noqa: E402
from ch05_pretraining.hf_weights import load_hf  # noqa: E402
from hf_tiny import IDS, randomise, tiny_hf  # noqa: E402

FAMILIES = ["gpt2", "llama", "qwen3", "qwen3_moe", "gemma3_text", "mistral", "olmo2"]
TARGETS = {"gpt2": ("all-linear", "head"), "qwen3_moe": ("attention",), "gemma3_text": ("all-linear",),
           "qwen3": ("all-linear",)}  # tied heads take no adapter; PEFT has no form for fused experts' adapters


def tiny(case):
    if case == "gpt2":
        torch.manual_seed(0)
        config = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                         tie_word_embeddings=False)
        return randomise(transformers.GPT2LMHeadModel(config))
    return tiny_hf(case)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folders = {}

    def save(case):
        if case not in folders:
            folders[case] = tmp_path_factory.mktemp(case)
            tiny(case).save_pretrained(folders[case])
        return folders[case]
    return save


def randomise_adapters(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapted_layers(model).values():
            for lora in layer.adapters.values():
                lora.A.copy_(torch.randn(lora.A.shape, generator=g) * 0.3)
                lora.B.copy_(torch.randn(lora.B.shape, generator=g) * 0.3)


@pytest.mark.parametrize("case", FAMILIES)
def test_our_adapters_read_by_peft_give_our_logits(case, saved, tmp_path):
    folder = saved(case)
    ours = load_hf(folder, dtype=torch.float32)
    config = LoRAConfig(rank=4, alpha=8 if case != "llama" else 3, targets=TARGETS.get(case, ("all-linear", "head")),
                        scale="rslora" if case == "mistral" else "peft")
    add_lora(ours, config)
    randomise_adapters(ours)
    write_peft_folder(ours, tmp_path / "adapter", str(folder))
    base = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        expected = theirs(IDS).logits
        got = ours(IDS)
        with theirs.disable_adapter():
            assert (got - theirs(IDS).logits).abs().max() > 1e-3  # the adapters change the logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", FAMILIES)
@pytest.mark.parametrize("setting", [dict(r=4, lora_alpha=8, target_modules="all-linear"),
                                     dict(r=2, lora_alpha=5, target_modules=["q_proj", "v_proj", "c_attn"],
                                          use_rslora=True)])
def test_peft_adapters_loaded_here_give_peft_logits(case, setting, saved, tmp_path):
    folder = saved(case)
    base = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if case == "qwen3_moe" and setting["target_modules"] == "all-linear":
        setting = {**setting, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    if case == "gpt2" and setting["target_modules"] != "all-linear":
        setting = {**setting, "target_modules": ["c_attn"]}
    model = peft.get_peft_model(base, peft.LoraConfig(**setting, init_lora_weights=False))  # random A and B
    model.save_pretrained(tmp_path / "adapter")
    ours = load_hf(folder, dtype=torch.float32)
    before = fingerprint(ours)
    read_peft_folder(ours, tmp_path / "adapter")
    assert fingerprint(ours) == before  # the base's fingerprint ignores the adapters
    with torch.no_grad():
        expected = model.eval()(IDS).logits
        torch.testing.assert_close(ours(IDS), expected, atol=1e-4, rtol=1e-4)
        merged = merge_and_unload(ours)(IDS)  # the merged model computes the same
    torch.testing.assert_close(merged, expected, atol=1e-4, rtol=1e-4)


def test_what_lora_cannot_mean_here_is_one_line_naming_the_key(saved, tmp_path):
    folder = saved("llama")
    base = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)).save_pretrained(
        tmp_path / "dora")
    with pytest.raises(UserInputError, match="use_dora"):
        read_peft_folder(load_hf(folder, dtype=torch.float32), tmp_path / "dora")
    for key, value in (("bias", "all"), ("modules_to_save", ["lm_head"]), ("peft_type", "IA3")):
        config = json.loads((tmp_path / "dora" / "adapter_config.json").read_text())
        config.update(use_dora=False, **{key: value})
        (tmp_path / "dora" / "adapter_config.json").write_text(json.dumps(config))
        with pytest.raises(UserInputError, match=key):
            read_peft_folder(load_hf(folder, dtype=torch.float32), tmp_path / "dora")


def test_an_adapter_of_another_base_names_the_shapes(saved, tmp_path):
    base = transformers.AutoModelForCausalLM.from_pretrained(saved("llama"), dtype=torch.float32)
    peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    with pytest.raises(UserInputError, match=r"q_proj.lora_B has shape \(32, 2\), the model needs \(64, 2\)"):
        read_peft_folder(load_hf(saved("qwen3"), dtype=torch.float32), tmp_path / "a")


def test_generate_hf_with_a_peft_adapter_writes_peft_s_greedy_text(tmp_path, capsys):
    """generate --hf BASE --adapter FOLDER: the text transformers + peft generate greedily."""
    from ch05_pretraining.generate import main as generate
    from hf_tiny import chat_folder

    folder = chat_folder(tmp_path / "base")
    base = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    randomise(base)
    base.save_pretrained(folder)  # every parameter random, as every parity test here
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                      init_lora_weights=False))
    model.save_pretrained(tmp_path / "adapter")
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok("It's a test", return_tensors="pt").input_ids
    out = model.eval().generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected = tok.decode(out[0])
    capsys.readouterr()
    generate(["--hf", str(folder), "--adapter", str(tmp_path / "adapter"), "--prompt", "It's a test",
              "--max-new-tokens", "8", "--dtype", "float32"])
    assert capsys.readouterr().out.strip() == expected.strip()
