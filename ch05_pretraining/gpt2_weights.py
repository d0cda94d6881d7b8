"""GPT-2 pretrained weights from Hugging Face's ``model.safetensors`` (no TensorFlow, no pickle).

What this adds over the book's section 5.5 (which loads OpenAI's TensorFlow checkpoint):
reading the safetensors file that Hugging Face serves for ``gpt2``, ``gpt2-medium``,
``gpt2-large`` and ``gpt2-xl`` straight into ``GPTModel``, checking every name and shape,
and exporting a ``GPTModel`` back to that layout.

Layout: ``wte``, ``wpe``, ``h.{i}.ln_1``, ``h.{i}.attn.c_attn`` (fused QKV), ``h.{i}.attn.c_proj``,
``h.{i}.ln_2``, ``h.{i}.mlp.c_fc``, ``h.{i}.mlp.c_proj``, ``ln_f``; optional ``transformer.``
prefix and ``lm_head.weight``. GPT-2's ``Conv1D`` stores weights as (in, out), so they are
transposed for ``nn.Linear``.

>>> # model = load_gpt2_safetensors("data/gpt2-small-124M.safetensors")
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, check_state_dict_fits
from .previous_chapters import (
    GPT_CONFIG_124M, GPTModel, atomic_write_bytes, book_to_fast_state_dict, fast_to_book_state_dict,
)

HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 20, 1600: 25}
DOWNLOAD_HINT = ("download model.safetensors from huggingface.co/openai-community/gpt2 "
                 "(or gpt2-medium, gpt2-large, gpt2-xl)")

# (our name in the book layout, HF name, transpose?)
BLOCK_MAP = [
    ("norm1.scale", "ln_1.weight", False), ("norm1.shift", "ln_1.bias", False),
    ("att.out_proj.weight", "attn.c_proj.weight", True), ("att.out_proj.bias", "attn.c_proj.bias", False),
    ("norm2.scale", "ln_2.weight", False), ("norm2.shift", "ln_2.bias", False),
    ("ff.layers.0.weight", "mlp.c_fc.weight", True), ("ff.layers.0.bias", "mlp.c_fc.bias", False),
    ("ff.layers.2.weight", "mlp.c_proj.weight", True), ("ff.layers.2.bias", "mlp.c_proj.bias", False),
]
TOP_MAP = [("tok_emb.weight", "wte.weight"), ("pos_emb.weight", "wpe.weight"),
           ("final_norm.scale", "ln_f.weight"), ("final_norm.shift", "ln_f.bias")]


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


def config_from_gpt2(tensors: dict, metadata: dict, path: Path, n_heads=None) -> dict:
    vocab_size, emb_dim = _need(tensors, "wte.weight", path).shape
    context_length = _need(tensors, "wpe.weight", path).shape[0]
    n_layers = len({k.split(".")[1] for k in tensors if k.startswith("h.")})
    n_heads = n_heads or int(metadata.get("n_heads", 0)) or HEADS_BY_WIDTH.get(emb_dim)
    if not n_heads:
        raise CheckpointError(f"cannot tell the head count of '{path}' (emb_dim {emb_dim}): pass n_heads")
    tied = "lm_head.weight" not in tensors or torch.equal(tensors["lm_head.weight"], tensors["wte.weight"])
    return {**GPT_CONFIG_124M, "vocab_size": vocab_size, "context_length": context_length,
            "emb_dim": emb_dim, "n_heads": n_heads, "n_layers": n_layers, "qkv_bias": True,
            "tie_weights": tied}


def gpt2_to_state_dict(tensors: dict, cfg: dict, path: Path) -> dict:
    """HF GPT-2 tensors -> our state dict in the *book* layout (W_query/W_key/W_value)."""
    sd = {ours: _need(tensors, hf, path) for ours, hf in TOP_MAP}
    for i in range(cfg["n_layers"]):
        for ours, hf, transpose in BLOCK_MAP:
            t = _need(tensors, f"h.{i}.{hf}", path)
            sd[f"trf_blocks.{i}.{ours}"] = t.t().contiguous() if transpose else t
        w = _need(tensors, f"h.{i}.attn.c_attn.weight", path).t()  # (3*emb, emb)
        b = _need(tensors, f"h.{i}.attn.c_attn.bias", path)
        for name, wq, bq in zip(("W_query", "W_key", "W_value"), w.chunk(3, dim=0), b.chunk(3, dim=0)):
            sd[f"trf_blocks.{i}.att.{name}.weight"] = wq.contiguous()
            sd[f"trf_blocks.{i}.att.{name}.bias"] = bq
        sd[f"trf_blocks.{i}.att.mask"] = torch.triu(
            torch.ones(cfg["context_length"], cfg["context_length"]), diagonal=1)
    sd["out_head.weight"] = tensors.get("lm_head.weight", tensors["wte.weight"])
    return sd


def load_gpt2_safetensors(path, impl="fast", n_heads=None, device="cpu", drop_rate=0.0) -> GPTModel:
    """Build a ``GPTModel`` (qkv_bias on, context 1024, tied head) holding GPT-2's weights."""
    path = Path(path)
    tensors, metadata = _read_safetensors(path)
    cfg = {**config_from_gpt2(tensors, metadata, path, n_heads), "impl": impl, "drop_rate": drop_rate}
    sd = gpt2_to_state_dict(tensors, cfg, path)
    if impl == "fast":
        sd = book_to_fast_state_dict(sd)
    model = GPTModel(cfg)
    check_state_dict_fits(model, sd, f"GPT-2 weights '{path}'")
    model.load_state_dict(sd)
    return model.to(device).eval()


def export_gpt2_safetensors(model: GPTModel, path) -> Path:
    """Write ``model`` in Hugging Face's GPT-2 layout (atomically); zero QKV biases if it has none."""
    from safetensors.torch import save

    cfg = model.cfg
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if cfg["impl"] == "fast":
        sd = fast_to_book_state_dict(sd, cfg["context_length"])
    out = {hf: sd[ours] for ours, hf in TOP_MAP}
    emb = cfg["emb_dim"]
    for i in range(cfg["n_layers"]):
        p = f"trf_blocks.{i}."
        for ours, hf, transpose in BLOCK_MAP:
            t = sd[p + ours]
            out[f"h.{i}.{hf}"] = t.t() if transpose else t
        out[f"h.{i}.attn.c_attn.weight"] = torch.cat(
            [sd[f"{p}att.{n}.weight"] for n in ("W_query", "W_key", "W_value")], dim=0).t()
        out[f"h.{i}.attn.c_attn.bias"] = torch.cat(
            [sd.get(f"{p}att.{n}.bias", torch.zeros(emb)) for n in ("W_query", "W_key", "W_value")])
    if not cfg["tie_weights"]:
        out["lm_head.weight"] = sd["out_head.weight"]
    out = {k: v.contiguous().clone() for k, v in out.items()}
    payload = save(out, metadata={"format": "pt", "n_heads": str(cfg["n_heads"])})
    path = Path(path)
    atomic_write_bytes(path, payload)
    return path
