"""GPT-2 pretrained weights from Hugging Face's ``model.safetensors`` (no TensorFlow, no pickle).

What this adds over the book's section 5.5 (which loads OpenAI's TensorFlow checkpoint): the book's
names over ``hf_weights.py``'s registry, whose GPT-2 rules read the safetensors file that Hugging
Face serves for ``gpt2``, ``gpt2-medium``, ``gpt2-large`` and ``gpt2-xl`` (or a folder written by
``save_pretrained``, whose ``config.json`` is honoured) straight into ``GPTModel``, and export a
``GPTModel`` back to a folder that ``GPT2LMHeadModel.from_pretrained`` loads. A bare file has no
``config.json``: its sizes are read off the tensors' shapes, the head count off the file's metadata,
``n_heads`` or the GPT-2 preset of that width.

>>> # model = load_gpt2_safetensors("data/gpt2-small-124M.safetensors")   # or a folder
>>> # export_gpt2_safetensors(model, "exported/")   # -> exported/model.safetensors + config.json
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .hf_weights import (
    CONFIG_NAME, WEIGHTS_NAME, TensorFolder, config_from_hf, export_hf, load_tensors, read_folder_config,
)
from .previous_chapters import GPTModel, preset_heads

DOWNLOAD_HINT = ("download model.safetensors from huggingface.co/openai-community/gpt2 "
                 "(or gpt2-medium, gpt2-large, gpt2-xl)")


def config_from_shapes(tensors: TensorFolder, n_heads=None) -> dict:
    """A GPT-2 ``config.json`` read off a bare file's tensors (the head count: ``n_heads``, the file's metadata,
    else the preset of that width)."""
    embedding = tensors.peek("transformer.wte.weight")
    vocab_size, emb_dim = embedding.shape
    n_heads = n_heads or int(tensors.metadata().get("n_heads", 0)) or preset_heads(emb_dim)
    if not n_heads:
        raise CheckpointError(f"cannot tell the head count of {tensors.source} (emb_dim {emb_dim}): pass n_heads")
    layers = {k.removeprefix("transformer.").split(".")[1] for k in tensors.where
              if k.removeprefix("transformer.").startswith("h.")}
    tied = not tensors.has("lm_head.weight") or torch.equal(tensors.peek("lm_head.weight"), embedding)
    return {"model_type": "gpt2", "vocab_size": vocab_size, "n_embd": emb_dim, "n_head": n_heads,
            "n_positions": tensors.peek("transformer.wpe.weight").shape[0], "n_layer": len(layers),
            "tie_word_embeddings": tied}


def load_gpt2_safetensors(path, impl="fast", n_heads=None, device="cpu", drop_rate=0.0) -> GPTModel:
    """Build a ``GPTModel`` (qkv_bias on) holding GPT-2's weights from a file or a folder, in fp32."""
    path = Path(path)
    if path.is_dir() and not (path / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"folder '{path}' holds no {WEIGHTS_NAME}: {DOWNLOAD_HINT}")
    folder, name = (path, WEIGHTS_NAME) if path.is_dir() else (path.parent, path.name)
    if not (folder / name).is_file():
        raise CheckpointError(f"GPT-2 weights '{path}' do not exist: {DOWNLOAD_HINT}")
    tensors = TensorFolder(folder, "transformer.wte.weight", files=[name])
    has_config = name == WEIGHTS_NAME and (folder / CONFIG_NAME).is_file()
    hf = read_folder_config(folder) if has_config else config_from_shapes(tensors, n_heads)
    if n_heads is not None:
        hf = {**hf, "n_head": n_heads}
    cfg = config_from_hf({**hf, "model_type": "gpt2"}, f"'{folder / CONFIG_NAME}'" if has_config else tensors.source)
    return load_tensors(tensors, cfg.replace(drop_rate=drop_rate), torch.float32, device, impl)


def export_gpt2_safetensors(model: GPTModel, folder) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder: ``model.safetensors`` + ``config.json`` (atomically).

    Zero QKV biases are written if the model has none. Returns the weights file's path.
    """
    return export_hf(model, folder) / WEIGHTS_NAME
