"""GPT-2 pretrained weights from Hugging Face's ``model.safetensors`` (no TensorFlow, no pickle).

What this adds over the book's section 5.5 (which loads OpenAI's TensorFlow checkpoint):
reading the safetensors file that Hugging Face serves for ``gpt2``, ``gpt2-medium``,
``gpt2-large`` and ``gpt2-xl`` (or a folder written by ``save_pretrained``, whose
``config.json`` is honoured) straight into ``GPTModel``, checking every name and shape,
and exporting a ``GPTModel`` back to a folder that ``GPT2LMHeadModel.from_pretrained`` loads.

Layout: ``wte``, ``wpe``, ``h.{i}.ln_1``, ``h.{i}.attn.c_attn`` (fused QKV), ``h.{i}.attn.c_proj``,
``h.{i}.ln_2``, ``h.{i}.mlp.c_fc``, ``h.{i}.mlp.c_proj``, ``ln_f``; optional ``transformer.``
prefix and ``lm_head.weight``. GPT-2's ``Conv1D`` stores weights as (in, out), so they are
transposed for ``nn.Linear``.

>>> # model = load_gpt2_safetensors("data/gpt2-small-124M.safetensors")   # or a folder
>>> # export_gpt2_safetensors(model, "exported/")   # -> exported/model.safetensors + config.json
"""

from __future__ import annotations

from pathlib import Path

import json

import torch

from ch02_text.common import UserInputError, atomic_write_bytes

from .checkpoint import CheckpointError, check_state_dict_fits
from .previous_chapters import GPT_CONFIG_124M, GPTModel, preset_heads

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"
# config.json settings GPTModel cannot represent, with the value it needs
UNSUPPORTED = {"scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
DOWNLOAD_HINT = ("download model.safetensors from huggingface.co/openai-community/gpt2 "
                 "(or gpt2-medium, gpt2-large, gpt2-xl)")

# (our name, HF name, transpose?); the fused qkv is GPT-2's c_attn, transposed
BLOCK_MAP = [
    ("norm1.scale", "ln_1.weight", False), ("norm1.shift", "ln_1.bias", False),
    ("att.out_proj.weight", "attn.c_proj.weight", True), ("att.out_proj.bias", "attn.c_proj.bias", False),
    ("norm2.scale", "ln_2.weight", False), ("norm2.shift", "ln_2.bias", False),
    ("ff.layers.0.weight", "mlp.c_fc.weight", True), ("ff.layers.0.bias", "mlp.c_fc.bias", False),
    ("ff.layers.2.weight", "mlp.c_proj.weight", True), ("ff.layers.2.bias", "mlp.c_proj.bias", False),
]
TOP_MAP = [("tok_emb.weight", "wte.weight"), ("pos_emb.weight", "wpe.weight"),
           ("final_norm.scale", "ln_f.weight"), ("final_norm.shift", "ln_f.bias")]


def locate(path) -> tuple[Path, Path | None]:
    """(weights file, config.json or None) for a model.safetensors file or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"folder '{path}' holds no {WEIGHTS_NAME}: {DOWNLOAD_HINT}")
        path = weights
    config = path.parent / CONFIG_NAME
    return path, config if config.is_file() and path.name == WEIGHTS_NAME else None


def read_hf_config(path: Path) -> dict:
    """The settings of a Hugging Face ``config.json`` that change the model, checked."""
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not a readable config.json ({type(exc).__name__})") from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"'{path}' is not a config.json object")
    for key, needed in UNSUPPORTED.items():
        if hf.get(key, needed) != needed:
            raise CheckpointError(f"'{path}' sets {key}={hf[key]}, which GPTModel cannot represent")
    act = hf.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise CheckpointError(f"'{path}' uses activation_function={act!r}; GPTModel has GELU's tanh "
                              f"approximation only ({', '.join(TANH_GELUS)})")
    return hf


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"GPT-2 weights '{path}' do not exist: {DOWNLOAD_HINT}")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"GPT-2 weights '{path}' are damaged or not safetensors ({exc})") from None
    prefix = "transformer."
    tensors = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in tensors.items()}
    return tensors, metadata


def _need(tensors: dict, name: str, path: Path) -> torch.Tensor:
    if name not in tensors:
        raise CheckpointError(f"GPT-2 weights '{path}' lack tensor '{name}': not a GPT-2 checkpoint?")
    return tensors[name]


def config_from_gpt2(tensors: dict, metadata: dict, path: Path, n_heads=None, hf_config=None) -> dict:
    """Our config from the tensors' shapes plus ``config.json`` (head count, epsilon) when there is one."""
    hf = hf_config or {}
    vocab_size, emb_dim = _need(tensors, "wte.weight", path).shape
    context_length = _need(tensors, "wpe.weight", path).shape[0]
    n_layers = len({k.split(".")[1] for k in tensors if k.startswith("h.")})
    n_heads = n_heads or hf.get("n_head") or int(metadata.get("n_heads", 0)) or preset_heads(emb_dim)
    if not n_heads:
        raise CheckpointError(f"cannot tell the head count of '{path}' (emb_dim {emb_dim}): pass n_heads")
    if hf.get("n_positions", context_length) != context_length:
        raise CheckpointError(f"config.json says n_positions={hf['n_positions']} but '{path}' has "
                              f"{context_length} position embeddings")
    if "lm_head.weight" in tensors:
        tied = torch.equal(tensors["lm_head.weight"], tensors["wte.weight"])
    else:
        tied = hf.get("tie_word_embeddings", True)
        if not tied:
            raise CheckpointError(f"config.json says tie_word_embeddings=false but '{path}' has no lm_head.weight")
    return {**GPT_CONFIG_124M, "vocab_size": vocab_size, "context_length": context_length,
            "emb_dim": emb_dim, "n_heads": n_heads, "n_layers": n_layers, "qkv_bias": True,
            "tie_weights": tied, "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5))}


def gpt2_to_state_dict(tensors: dict, cfg: dict, path: Path) -> dict:
    """HF GPT-2 tensors -> our state dict (one layout, whatever kernels the model runs)."""
    sd = {ours: _need(tensors, hf, path) for ours, hf in TOP_MAP}
    for i in range(cfg["n_layers"]):
        for ours, hf, transpose in BLOCK_MAP:
            t = _need(tensors, f"h.{i}.{hf}", path)
            sd[f"trf_blocks.{i}.{ours}"] = t.t().contiguous() if transpose else t
        sd[f"trf_blocks.{i}.att.qkv.weight"] = _need(tensors, f"h.{i}.attn.c_attn.weight", path).t().contiguous()
        sd[f"trf_blocks.{i}.att.qkv.bias"] = _need(tensors, f"h.{i}.attn.c_attn.bias", path)
    sd["out_head.weight"] = tensors.get("lm_head.weight", tensors["wte.weight"])
    return sd


def load_gpt2_safetensors(path, impl="fast", n_heads=None, device="cpu", drop_rate=0.0) -> GPTModel:
    """Build a ``GPTModel`` (qkv_bias on) holding GPT-2's weights from a file or a folder."""
    path, config_path = locate(path)
    hf_config = read_hf_config(config_path) if config_path is not None else None
    tensors, metadata = _read_safetensors(path)
    cfg = {**config_from_gpt2(tensors, metadata, path, n_heads, hf_config), "drop_rate": drop_rate}
    sd = gpt2_to_state_dict(tensors, cfg, path)
    model = GPTModel(cfg, impl=impl)
    check_state_dict_fits(model, sd, f"GPT-2 weights '{path}'")
    model.load_state_dict(sd)
    return model.to(device).eval()


def hf_config(cfg: dict) -> dict:
    """The ``config.json`` that ``GPT2LMHeadModel.from_pretrained`` needs for a model of ``cfg``."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg["vocab_size"], "n_positions": cfg["context_length"], "n_ctx": cfg["context_length"],
        "n_embd": cfg["emb_dim"], "n_layer": cfg["n_layers"], "n_head": cfg["n_heads"], "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": cfg["norm_eps"],
        "resid_pdrop": cfg["drop_rate"], "embd_pdrop": cfg["drop_rate"], "attn_pdrop": cfg["drop_rate"],
        "tie_word_embeddings": bool(cfg["tie_weights"]), "bos_token_id": 50256, "eos_token_id": 50256,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    }


def export_gpt2_safetensors(model: GPTModel, folder) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder: ``model.safetensors`` + ``config.json`` (atomically).

    Zero QKV biases are written if the model has none. Returns the weights file's path.
    """
    from safetensors.torch import save

    cfg = model.cfg
    if cfg.block != "pre" or cfg.family != "gpt2":
        what = "post-LayerNorm (GPT-1)" if cfg.block == "post" else cfg.family
        raise UserInputError(f"only GPT-2 models (pre-LayerNorm, learned positions) can be exported to GPT-2's "
                             f"layout; this one is {what}")
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {hf: sd[ours] for ours, hf in TOP_MAP}
    emb = cfg["emb_dim"]
    for i in range(cfg["n_layers"]):
        p = f"trf_blocks.{i}."
        for ours, hf, transpose in BLOCK_MAP:
            t = sd[p + ours]
            out[f"h.{i}.{hf}"] = t.t() if transpose else t
        out[f"h.{i}.attn.c_attn.weight"] = sd[f"{p}att.qkv.weight"].t()
        out[f"h.{i}.attn.c_attn.bias"] = sd.get(f"{p}att.qkv.bias", torch.zeros(3 * emb))
    if not cfg["tie_weights"]:
        out["lm_head.weight"] = sd["out_head.weight"]
    out = {k: v.contiguous().clone() for k, v in out.items()}
    folder = Path(folder)
    if folder.is_file():
        raise UserInputError(f"'{folder}' is a file: export writes a folder (model.safetensors + config.json)")
    payload = save(out, metadata={"format": "pt", "n_heads": str(cfg["n_heads"])})
    atomic_write_bytes(folder / CONFIG_NAME, json.dumps(hf_config(cfg), indent=2).encode("utf-8"))
    return atomic_write_bytes(folder / WEIGHTS_NAME, payload)
