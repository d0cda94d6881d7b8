"""LoRA adapters as files: the fingerprint of their base, and Hugging Face PEFT's adapter folders both ways.

Unlike ``hf_weights`` (whole models): an adapter is a few megabytes that mean nothing without the base they
were trained on. ``fingerprint`` names a base by its weights (names, shapes and a sample of values, the same
whatever dtype it was loaded in), so a LoRA checkpoint can say which base it needs. ``write_peft_folder``
writes what ``peft.PeftModel.from_pretrained(base, folder)`` reads (``adapter_config.json`` +
``adapter_model.safetensors``, Hugging Face's module names, ``fan_in_fan_out`` for GPT-2's Conv1D);
``read_peft_folder`` puts such a folder's adapters on our model of its base, refusing in one line what LoRA
cannot mean here.

>>> from ch04_gpt.config import scaled_config
>>> model = GPTModel(scaled_config("llama-3.2-1b", "llama", emb_dim=32, n_heads=4, n_layers=1, vocab_size=50,
...                                context_length=8))
>>> _ = add_lora(model, LoRAConfig(rank=2, alpha=4, targets=("q_proj", "v_proj")))
>>> sorted(peft_tensors(model))[:2]
['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight']
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ch02_text.errors import UserInputError
from ch02_text.safe_files import atomic_write_bytes, check_folder

from .hf_weights import hf_name, qkv_names, transposed
from .previous_chapters import (  # noqa: F401 (GPTModel: the docstring's)
    GPTModel, LoRAConfig, adaptable_linears, add_lora, adapted_layers, read_json_file,
)

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."  # PEFT's names: the PeftModel's base_model (LoraModel) holds the model
SAMPLES = 16  # values sampled from each tensor for the fingerprint


# -- the base's fingerprint ------------------------------------------------------------------------------
def fingerprint(model) -> str:
    """A hash of the base's weights (not the adapters): every name and shape, and ``SAMPLES`` values of each
    tensor rounded to bf16, so the same file loaded in fp32 or bf16 gives the same fingerprint.

    >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    >>> fingerprint(a) == fingerprint(a.to(torch.bfloat16)), fingerprint(a) == fingerprint(b)
    (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if ".adapters." in name:
            continue
        name = name.replace(".linear.", ".")  # an adapted layer's weight under its plain name
        flat = tensor.detach().reshape(-1)
        n = flat.numel()
        picks = flat[torch.arange(min(SAMPLES, n)) * (n - 1) // max(min(SAMPLES, n) - 1, 1)] if n else flat
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(picks.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


# -- PEFT's names -----------------------------------------------------------------------------------------
def hf_module(family: str, module: str, part: str) -> str:
    """Hugging Face's module name of one adapted part (``trf_blocks.0.att.qkv``'s ``k_proj`` ->
    ``model.layers.0.self_attn.k_proj``)."""
    if module == "out_head":
        return "lm_head"
    parts = qkv_names(family, f"{module}.weight")
    if parts is not None:
        return next(p for p in parts if p.split(".")[-2] == part).removesuffix(".weight")
    return hf_name(family, f"{module}.weight").removesuffix(".weight")


def peft_tensors(model) -> dict:
    """The adapters under PEFT's names and layout: ``lora_A.weight`` (rank, in), ``lora_B.weight`` (out, rank)."""
    out = {}
    for module, layer in adapted_layers(model).items():
        if ".experts." in module:
            raise UserInputError("the adapters on this model's experts have no PEFT form that transformers 5's fused "
                                 "experts read: export the merged model (leave --adapter-only out), or train with "
                                 "--lora-targets attention")
        for part, lora in layer.adapters.items():
            name = PREFIX + hf_module(model.cfg.family, module, part)
            out[f"{name}.lora_A.weight"] = lora.A.detach().float().t().contiguous()
            out[f"{name}.lora_B.weight"] = lora.B.detach().float().t().contiguous()
    return out


def _target_modules(model, names: list[str]) -> list[str]:
    """PEFT's ``target_modules``: the layers' short names where they pick exactly the adapted modules (a
    GPT-2 ``c_proj`` is in attention and MLP alike), else the modules' full names."""
    short = sorted({n.split(".")[-1] for n in names})
    every = [hf_module(model.cfg.family, module, part)
             for module, _, parts in adaptable_linears(model) for part in parts]
    picked = [n for n in every if n.split(".")[-1] in short]
    return short if sorted(picked) == sorted(names) else sorted(names)


def write_peft_folder(model, folder, base_name: str) -> list[str]:
    """``model``'s adapters as PEFT writes them (``adapter_config.json`` + ``adapter_model.safetensors``);
    returns the file names."""
    folder = Path(folder)
    layers = list(adapted_layers(model).values())
    if not layers:
        raise UserInputError("the model has no LoRA adapters to write: export the whole model (leave --adapter-only "
                             "out)")
    config = layers[0].config
    tensors = peft_tensors(model)
    check_folder(folder, "--out")
    names = sorted({k[len(PREFIX):].rsplit(".lora_", 1)[0] for k in tensors})
    family = model.cfg.family
    alpha = config.alpha * config.rank if config.scale == "book" else config.alpha  # PEFT scales by alpha / r
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
        "r": int(config.rank), "lora_alpha": alpha, "lora_dropout": config.dropout,
        "use_rslora": config.scale == "rslora", "target_modules": _target_modules(model, names),
        "fan_in_fan_out": transposed(family, "trf_blocks.0.att.qkv.weight") if family in ("gpt2", "gpt1") else False,
        "bias": "none", "use_dora": False, "modules_to_save": None, "init_lora_weights": True,
        "inference_mode": True, "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
        "alpha_pattern": {}, "revision": None,
    }
    atomic_write_bytes(folder / ADAPTER_CONFIG, json.dumps(adapter_config, indent=2).encode("utf-8"))
    atomic_write_bytes(folder / ADAPTER_WEIGHTS, save(tensors, metadata={"format": "pt"}))
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]


# -- reading a PEFT folder --------------------------------------------------------------------------------
REFUSED = {  # adapter_config.json key -> (the value LoRA here needs, why)
    "use_dora": (False, "DoRA is not LoRA: its magnitude vectors have no place here"),
    "modules_to_save": (None, "it saves whole layers beside the adapters"),
    "bias": ("none", "it trains biases too"),
    "lora_bias": (False, "it trains biases too"),
    "layers_to_transform": (None, "it adapts some layers only"),
    "rank_pattern": ({}, "it gives layers ranks of their own"),
    "alpha_pattern": ({}, "it gives layers alphas of their own"),
    "target_parameters": (None, "it adapts parameters (transformers 5's fused experts), not linear layers"),
    "trainable_token_indices": (None, "it trains token embeddings"),
}


def read_adapter_config(folder) -> dict:
    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise UserInputError(f"--adapter '{folder}' is not a PEFT adapter folder: it needs {ADAPTER_CONFIG} and "
                             f"{ADAPTER_WEIGHTS}")
    config = read_json_file(folder / ADAPTER_CONFIG, "adapter config")
    if config.get("peft_type") != "LORA":
        raise UserInputError(f"--adapter '{folder}': peft_type is {config.get('peft_type')!r}; only LoRA adapters "
                             "(peft_type LORA) load here")
    for key, (needed, why) in REFUSED.items():
        value = config.get(key, needed)
        if value != needed and (value or needed):  # None, [] and {} all mean "none" for a list or a map
            raise UserInputError(f"--adapter '{folder}': {key} is {config[key]!r}, which LoRA here cannot load "
                                 f"({why}); only {key} {needed!r} does")
    return config


def read_peft_folder(model, folder) -> LoRAConfig:
    """Put the folder's adapters on ``model`` (its base): every tensor placed and its shape checked."""
    folder = Path(folder)
    config = read_adapter_config(folder)
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    for key in tensors:
        if "lora_embedding" in key or ".lora_" not in key:
            raise UserInputError(f"--adapter '{folder}' holds '{key}', which is not a LoRA matrix of a linear layer "
                                 "(LoRA on embeddings is not loaded here)")
    modules = sorted({k.removeprefix(PREFIX).rsplit(".lora_", 1)[0] for k in tensors})
    shorts = {m.split(".")[-1] for m in modules}
    targets = tuple(sorted(shorts))
    rank, alpha = int(config["r"]), config["lora_alpha"]
    lora = LoRAConfig(rank=rank, alpha=alpha, dropout=float(config.get("lora_dropout") or 0.0), targets=targets,
                      scale="rslora" if config.get("use_rslora") else "peft")
    try:
        add_lora(model, lora)
    except ValueError as exc:
        raise UserInputError(f"--adapter '{folder}' does not fit this {model.cfg.family} model: {exc}") from None
    _place(model, tensors, modules, folder)
    return lora


def _place(model, tensors, modules, folder) -> None:
    """Copy each PEFT matrix into its adapter; adapters the file has no tensors for stay at B = 0 (no change)."""
    wanted = set(modules)
    for module, layer in adapted_layers(model).items():
        for part, lora in list(layer.adapters.items()):
            name = hf_module(model.cfg.family, module, part)
            if name not in wanted:
                lora.B.data.zero_()
                continue
            wanted.discard(name)
            for ours, theirs in ((lora.A, "lora_A"), (lora.B, "lora_B")):
                tensor = tensors[f"{PREFIX}{name}.{theirs}.weight"].t()
                if tuple(tensor.shape) != tuple(ours.shape):
                    raise UserInputError(f"--adapter '{folder}' does not fit this model: {name}.{theirs} has shape "
                                         f"{tuple(tensor.t().shape)}, the model needs {tuple(ours.t().shape)}")
                ours.data.copy_(tensor)
    if wanted:
        raise UserInputError(f"--adapter '{folder}' adapts '{sorted(wanted)[0]}', which this "
                             f"{model.cfg.family} model does not have: is it the adapter of another base?")

