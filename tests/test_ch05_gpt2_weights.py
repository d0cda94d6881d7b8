import json

import pytest
import torch
from safetensors.torch import save_file

from ch04_gpt.config import GPT_CONFIG_124M
from ch04_gpt.model import GPTModel
from ch05_pretraining.checkpoint import CheckpointError
from ch05_pretraining.gpt2_weights import export_gpt2_safetensors, load_gpt2_safetensors

D, L, V, T, H = 32, 2, 97, 16, 4


def hf_tensors(prefix="", seed=0):
    """A tiny GPT-2 in Hugging Face's exact layout (Conv1D weights are (in, out))."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    t = {"wte.weight": r(V, D), "wpe.weight": r(T, D), "ln_f.weight": 1 + r(D), "ln_f.bias": r(D)}
    for i in range(L):
        t.update({
            f"h.{i}.ln_1.weight": 1 + r(D), f"h.{i}.ln_1.bias": r(D),
            f"h.{i}.attn.c_attn.weight": r(D, 3 * D), f"h.{i}.attn.c_attn.bias": r(3 * D),
            f"h.{i}.attn.c_proj.weight": r(D, D), f"h.{i}.attn.c_proj.bias": r(D),
            f"h.{i}.ln_2.weight": 1 + r(D), f"h.{i}.ln_2.bias": r(D),
            f"h.{i}.mlp.c_fc.weight": r(D, 4 * D), f"h.{i}.mlp.c_fc.bias": r(4 * D),
            f"h.{i}.mlp.c_proj.weight": r(4 * D, D), f"h.{i}.mlp.c_proj.bias": r(D),
            f"h.{i}.attn.bias": torch.tril(torch.ones(T, T)).view(1, 1, T, T),  # HF's mask buffer
        })
    return {prefix + k: v for k, v in t.items()}


def reference_logits(t, idx):
    """GPT-2's forward written directly on the HF tensors (independent of GPTModel)."""
    x = t["wte.weight"][idx] + t["wpe.weight"][: idx.shape[1]]
    n = idx.shape[1]
    mask = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
    for i in range(L):
        h = torch.nn.functional.layer_norm(x, (D,), t[f"h.{i}.ln_1.weight"], t[f"h.{i}.ln_1.bias"], 1e-5)
        q, k, v = (h @ t[f"h.{i}.attn.c_attn.weight"] + t[f"h.{i}.attn.c_attn.bias"]).split(D, dim=-1)
        q, k, v = (z.view(1, n, H, D // H).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2) / (D // H) ** 0.5).masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(1, n, D)
        x = x + y @ t[f"h.{i}.attn.c_proj.weight"] + t[f"h.{i}.attn.c_proj.bias"]
        h = torch.nn.functional.layer_norm(x, (D,), t[f"h.{i}.ln_2.weight"], t[f"h.{i}.ln_2.bias"], 1e-5)
        h = torch.nn.functional.gelu(h @ t[f"h.{i}.mlp.c_fc.weight"] + t[f"h.{i}.mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ t[f"h.{i}.mlp.c_proj.weight"] + t[f"h.{i}.mlp.c_proj.bias"]
    x = torch.nn.functional.layer_norm(x, (D,), t["ln_f.weight"], t["ln_f.bias"], 1e-5)
    return x @ t["wte.weight"].T


@pytest.mark.parametrize("prefix", ["", "transformer."])
@pytest.mark.parametrize("impl", ["fast", "book"])
def test_loads_hf_layout_and_matches_reference(tmp_path, prefix, impl):
    t = hf_tensors(prefix)
    path = tmp_path / "model.safetensors"
    save_file(t, str(path))
    model = load_gpt2_safetensors(path, impl=impl, n_heads=H)
    assert model.cfg["qkv_bias"] and model.cfg["tie_weights"] and model.cfg["context_length"] == T
    assert model.out_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    idx = torch.tensor([[3, 14, 15, 92, 65, 35]])
    plain = {k[len(prefix):]: v for k, v in t.items()}
    torch.testing.assert_close(model(idx), reference_logits(plain, idx), atol=1e-4, rtol=1e-4)


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = {**GPT_CONFIG_124M, "vocab_size": V, "context_length": T, "emb_dim": D, "n_heads": H,
           "n_layers": L, "drop_rate": 0.0, "qkv_bias": True, "tie_weights": True}
    model = GPTModel(cfg).eval()
    path = export_gpt2_safetensors(model, tmp_path / "out")
    assert path == tmp_path / "out" / "model.safetensors" and (tmp_path / "out" / "config.json").is_file()
    again = load_gpt2_safetensors(tmp_path / "out")  # a folder, as from_pretrained takes
    assert again.cfg["n_heads"] == H
    idx = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(again(idx), model(idx))
    # untied head and no qkv bias survive too
    cfg2 = {**cfg, "qkv_bias": False, "tie_weights": False}
    model2 = GPTModel(cfg2).eval()
    again2 = load_gpt2_safetensors(export_gpt2_safetensors(model2, tmp_path / "o2"))
    assert not again2.cfg["tie_weights"]
    torch.testing.assert_close(again2(idx), model2(idx))


def test_missing_tensor_and_bad_file_errors(tmp_path):
    t = hf_tensors()
    del t["h.1.mlp.c_fc.bias"]
    save_file(t, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match="lacks tensor 'h.1.mlp.c_fc.bias'"):
        load_gpt2_safetensors(tmp_path / "m.safetensors", n_heads=H)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_gpt2_safetensors(tmp_path / "junk.safetensors", n_heads=H)
    with pytest.raises(CheckpointError, match="do not exist.*huggingface"):
        load_gpt2_safetensors(tmp_path / "none.safetensors")
    t = hf_tensors()
    t["h.0.mlp.c_fc.weight"] = torch.zeros(D, 3 * D)
    save_file(t, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match=r"ff.layers.0.weight \(h.0.mlp.c_fc.weight\) has shape \(96, 32\) in the file but \(128, 32\)"):
        load_gpt2_safetensors(tmp_path / "shape.safetensors", n_heads=H)


def test_matches_transformers_gpt2_when_installed(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=D, n_layer=L, n_head=H,
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    tensors = {k: v.contiguous() for k, v in hf.transformer.state_dict().items()}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ours = load_gpt2_safetensors(tmp_path / "model.safetensors", n_heads=H)
    idx = torch.tensor([[5, 6, 7, 8, 9]])
    torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)


def hf_folder(tmp_path, n_head, **config):
    """A save_pretrained-style folder: model.safetensors + config.json."""
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(hf_tensors(), str(folder / "model.safetensors"))
    cfg = {"model_type": "gpt2", "vocab_size": V, "n_positions": T, "n_embd": D, "n_layer": L, "n_head": n_head,
           **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_config_json_decides_the_head_count(tmp_path):
    """Issue 11: a valid folder with 2 heads at width 32 used to load with the width's default head count."""
    folder = hf_folder(tmp_path, n_head=2, layer_norm_epsilon=1e-6)
    model = load_gpt2_safetensors(folder / "model.safetensors")
    assert model.cfg["n_heads"] == 2 and model.cfg["norm_eps"] == 1e-6
    assert load_gpt2_safetensors(folder).cfg["n_heads"] == 2  # the folder works as well as the file


@pytest.mark.parametrize("config,match", [
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
    ({"activation_function": "relu"}, "activation_function='relu'"),
    ({"n_positions": 1024}, r"pos_emb.weight \(wpe.weight\) has shape \(16, 32\) in the file but \(1024, 32\)"),
])
def test_config_json_settings_the_model_cannot_represent_are_refused(tmp_path, config, match):
    folder = hf_folder(tmp_path, n_head=H, **config)
    with pytest.raises(CheckpointError, match=match):
        load_gpt2_safetensors(folder)


def test_post_layernorm_models_are_not_exported(tmp_path):
    from ch02_text.errors import UserInputError

    cfg = {**GPT_CONFIG_124M, "vocab_size": V, "context_length": T, "emb_dim": D, "n_heads": H, "n_layers": L,
           "norm_position": "post"}
    with pytest.raises(UserInputError, match="post-LayerNorm"):
        export_gpt2_safetensors(GPTModel(cfg), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("tied", [True, False])
def test_exported_folder_loads_in_transformers_when_installed(tmp_path, tied):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = {**GPT_CONFIG_124M, "vocab_size": V, "context_length": T, "emb_dim": D, "n_heads": 2, "n_layers": L,
           "drop_rate": 0.0, "qkv_bias": True, "tie_weights": tied}
    ours = GPTModel(cfg).eval()
    export_gpt2_safetensors(ours, tmp_path / "export")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "export").eval()
    idx = torch.tensor([[5, 6, 7, 8, 9]])
    torch.testing.assert_close(hf(idx).logits, ours(idx), atol=1e-4, rtol=1e-4)
    hf.save_pretrained(tmp_path / "saved")  # and back: transformers' own folder, config.json included
    torch.testing.assert_close(load_gpt2_safetensors(tmp_path / "saved")(idx), ours(idx), atol=1e-4, rtol=1e-4)


def test_a_truncated_file_is_one_line_before_any_tensor_is_read(tmp_path, capsys):
    """An interrupted download: generate --gpt2 says the file is cut short (no buffer-length traceback)."""
    from ch05_pretraining.generate import main as generate

    save_file(hf_tensors(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"is truncated \([\d,]+ of [\d,]+ bytes\): download it again"):
        load_gpt2_safetensors(tmp_path / "cut.safetensors", n_heads=H)
    with pytest.raises(SystemExit) as info:
        generate(["--gpt2", str(tmp_path / "cut.safetensors"), "--n-heads", str(H), "--prompt", "hi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and len(err) == 1 and "is truncated" in err[0], err
