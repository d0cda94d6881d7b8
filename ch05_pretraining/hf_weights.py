"""Open-weight models from Hugging Face folders, and back: one registry of weight maps keyed by model_type.

Unlike ``gpt2_weights.py`` (GPT-2's own Conv1D layout, written out by hand): every family of
``ch04_gpt/families.py`` is the same ``GPTModel``, so one table of name rules per family translates
our parameter names to a checkpoint's (``trf_blocks.3.ff.fc1.weight`` <-> ``model.layers.3.mlp.gate_proj.weight``);
the only tensor that is not one-to-one is our fused ``att.qkv`` (Hugging Face's q_proj, k_proj and v_proj,
stacked). ``config_from_hf`` reads ``config.json`` in its older (``rope_theta``, ``rope_scaling``) and
current (``rope_parameters``, per layer type) forms and refuses what the model cannot represent, with one
line naming it. ``load_hf`` builds the model on the meta device and assigns the memory-mapped tensors, so
no random weights are ever allocated; ``export_hf`` writes a folder that ``transformers`` reads.

>>> hf_name("qwen3", "trf_blocks.2.att.k_norm.weight")
'model.layers.2.self_attn.k_norm.weight'
>>> hf_name("mixtral", "trf_blocks.0.ff.experts.5.fc2.weight")
'model.layers.0.block_sparse_moe.experts.5.w3.weight'
"""

from __future__ import annotations

import json
import mmap
import re
from pathlib import Path

import torch
from safetensors.torch import save

from ch02_text.common import UserInputError, atomic_write_bytes, bf16_supported

from .checkpoint import CheckpointError
from .gpt2_weights import export_gpt2_safetensors, load_gpt2_safetensors
from .previous_chapters import FAMILIES, GPTModel, read_json_file, validate_config

CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME = "config.json", "model.safetensors", "model.safetensors.index.json"
FAMILY_OF = {"llama": "llama", "qwen3": "qwen3", "qwen3_moe": "qwen3-moe", "gemma3_text": "gemma3",
             "gemma3": "gemma3", "mistral": "mistral", "mixtral": "mixtral", "olmo2": "olmo2", "olmo3": "olmo3"}
MODEL_TYPE = {"llama": "llama", "qwen3": "qwen3", "qwen3-moe": "qwen3_moe", "gemma3": "gemma3_text",
              "mistral": "mistral", "mixtral": "mixtral", "olmo2": "olmo2", "olmo3": "olmo3"}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen3-moe": "Qwen3MoeForCausalLM",
                 "gemma3": "Gemma3ForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM",
                 "olmo2": "Olmo2ForCausalLM", "olmo3": "Olmo3ForCausalLM"}
ACTIVATIONS = {"gemma3": "gelu_pytorch_tanh"}  # the others: silu

# -- names ----------------------------------------------------------------------------------------------
ATTENTION_RULES = [(r"att\.out_proj", "self_attn.o_proj"), (r"att\.q_norm", "self_attn.q_norm"),
                   (r"att\.k_norm", "self_attn.k_norm")]
MLP_RULES = [(r"ff\.fc1", "mlp.gate_proj"), (r"ff\.fc2", "mlp.up_proj"), (r"ff\.fc3", "mlp.down_proj")]
NORM_RULES = {
    "pre": [(r"norm1", "input_layernorm"), (r"norm2", "post_attention_layernorm")],
    "sandwich": [(r"norm1", "input_layernorm"), (r"post_att_norm", "post_attention_layernorm"),
                 (r"norm2", "pre_feedforward_layernorm"), (r"post_ff_norm", "post_feedforward_layernorm")],
    "post_branch": [(r"post_att_norm", "post_attention_layernorm"), (r"post_ff_norm", "post_feedforward_layernorm")],
}
MOE_RULES = {
    "qwen3-moe": [(r"ff\.gate", "mlp.gate"), (r"ff\.experts\.(\d+)\.fc1", r"mlp.experts.\1.gate_proj"),
                  (r"ff\.experts\.(\d+)\.fc2", r"mlp.experts.\1.up_proj"),
                  (r"ff\.experts\.(\d+)\.fc3", r"mlp.experts.\1.down_proj")],
    "mixtral": [(r"ff\.gate", "block_sparse_moe.gate"), (r"ff\.experts\.(\d+)\.fc1", r"block_sparse_moe.experts.\1.w1"),
                (r"ff\.experts\.(\d+)\.fc2", r"block_sparse_moe.experts.\1.w3"),
                (r"ff\.experts\.(\d+)\.fc3", r"block_sparse_moe.experts.\1.w2")],
}
BLOCK_OF = {"gemma3": "sandwich", "olmo2": "post_branch", "olmo3": "post_branch"}
TOP_NAMES = {"tok_emb.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight",
             "out_head.weight": "lm_head.weight"}
QKV_PARTS = ("q_proj", "k_proj", "v_proj")


def block_rules(family: str) -> list[tuple[str, str]]:
    return ATTENTION_RULES + MOE_RULES.get(family, []) + MLP_RULES + NORM_RULES[BLOCK_OF.get(family, "pre")]


def hf_name(family: str, ours: str) -> str:
    """The checkpoint's name of one of our parameters (the fused qkv: see ``qkv_names``)."""
    if ours in TOP_NAMES:
        return TOP_NAMES[ours]
    layer, rest = re.fullmatch(r"trf_blocks\.(\d+)\.(.+)", ours).groups()
    module, leaf = rest.rsplit(".", 1)
    for pattern, template in block_rules(family):
        if re.fullmatch(pattern, module):
            return f"model.layers.{layer}.{re.sub(pattern, template, module)}.{leaf}"
    raise KeyError(f"no Hugging Face name for {ours} in family {family}")


def qkv_names(ours: str) -> list[str] | None:
    """The three checkpoint tensors behind our fused ``trf_blocks.N.att.qkv.weight`` (None for other names)."""
    match = re.fullmatch(r"trf_blocks\.(\d+)\.att\.qkv\.(weight|bias)", ours)
    if match is None:
        return None
    layer, leaf = match.groups()
    return [f"model.layers.{layer}.self_attn.{part}.{leaf}" for part in QKV_PARTS]


# -- config.json ----------------------------------------------------------------------------------------
def _rope(hf: dict, family: str) -> dict:
    """rope_theta, rope_scaling and local_rope_theta from either form of config.json."""
    params = hf.get("rope_parameters")
    if params is None:  # the older form
        full = {"rope_theta": hf.get("rope_theta", 10000.0), **(hf.get("rope_scaling") or {})}
        local = {"rope_theta": hf.get("rope_local_base_freq", full["rope_theta"]), "rope_type": "default"}
    elif "full_attention" in params or "sliding_attention" in params:  # per layer type
        full = params.get("full_attention") or {}
        local = params.get("sliding_attention") or {"rope_type": "default", "rope_theta": full.get("rope_theta")}
    else:
        full, local = params, None
    scaling = {k: v for k, v in full.items() if k != "rope_theta"}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    out = {"rope_theta": float(full.get("rope_theta", 10000.0)), "rope_scaling": None if kind == "default" else scaling}
    if family in ("gemma3", "olmo3") and local is not None:
        if local.get("rope_type", "default") != "default":
            raise UserInputError(f"config.json: sliding layers with RoPE type {local['rope_type']!r} are not "
                                 "implemented here")
        out["local_rope_theta"] = float(local.get("rope_theta") or out["rope_theta"])
    return out


def _layer_types(hf: dict, family: str, n_layers: int):
    if hf.get("layer_types"):
        names = {"sliding_attention": "sliding", "full_attention": "full"}
        unknown = [t for t in hf["layer_types"] if t not in names]
        if unknown:
            raise UserInputError(f"config.json: layer type {unknown[0]!r} is not implemented here")
        return [names[t] for t in hf["layer_types"]]
    if family in ("mistral", "mixtral") and hf.get("sliding_window"):
        return ["sliding"] * n_layers
    return ["full"] * n_layers


def _refuse_unsupported(hf: dict, family: str) -> None:
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "silu"
    if act != ACTIVATIONS.get(family, "silu"):
        raise UserInputError(f"config.json: activation {act!r} is not implemented for {family}")
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if hf.get(key) is not None:
            raise UserInputError(f"config.json: {key}={hf[key]} is not implemented here")
    if hf.get("partial_rotary_factor", 1.0) != 1.0:
        raise UserInputError(f"config.json: partial_rotary_factor={hf['partial_rotary_factor']} is not implemented")
    if hf.get("use_bidirectional_attention"):
        raise UserInputError("config.json: use_bidirectional_attention is not implemented (causal models only)")


def config_from_hf(hf: dict, source="config.json"):
    """Our ``ModelConfig`` from a Hugging Face ``config.json`` (a multimodal Gemma 3's text model too)."""
    if hf.get("model_type") == "gemma3" and "text_config" in hf:
        hf = {**hf["text_config"], "model_type": "gemma3_text"}
    model_type = hf.get("model_type")
    if model_type not in FAMILY_OF:
        raise UserInputError(f"{source}: model_type {model_type!r} is not supported here (supported: "
                             f"gpt2, {', '.join(FAMILY_OF)})")
    family = FAMILY_OF[model_type]
    _refuse_unsupported(hf, family)
    n_layers = hf["num_hidden_layers"]
    bias = bool(hf.get("attention_bias", False))
    values = {
        "family": family, "vocab_size": hf["vocab_size"], "context_length": hf.get("max_position_embeddings", 2048),
        "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"], "n_layers": n_layers,
        "n_kv_heads": hf.get("num_key_value_heads") or hf["num_attention_heads"], "head_dim": hf.get("head_dim"),
        "hidden_dim": hf["intermediate_size"], "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "tie_weights": bool(hf.get("tie_word_embeddings", family == "gemma3")), "drop_rate": 0.0,
        "qkv_bias": bias, "attn_bias": bias, "ff_bias": bool(hf.get("mlp_bias", False)),
        "sliding_window": hf.get("sliding_window"), "layer_types": _layer_types(hf, family, n_layers),
        **_rope(hf, family),
    }
    if family == "gemma3":
        values["attn_scale"] = float(hf.get("query_pre_attn_scalar", 256)) ** -0.5
    if family in ("qwen3-moe", "mixtral"):
        step = hf.get("decoder_sparse_step", 1) or 1
        dense = set(hf.get("mlp_only_layers") or []) | {i for i in range(n_layers) if (i + 1) % step}
        values.update(n_experts=hf.get("num_experts") or hf.get("num_local_experts"),
                      n_experts_per_token=hf["num_experts_per_tok"], moe_dense_layers=sorted(dense),
                      moe_hidden_dim=hf.get("moe_intermediate_size") or hf["intermediate_size"],
                      norm_topk_prob=bool(hf.get("norm_topk_prob", True)),
                      router_aux_loss_coef=float(hf.get("router_aux_loss_coef", 0.0)))
    if "sliding" not in values["layer_types"]:
        values["sliding_window"] = None
    return validate_config({**FAMILIES[family], **values})


def hf_config(cfg) -> dict:
    """The ``config.json`` of a model of ``cfg`` for ``transformers`` (current form, per-layer RoPE where used)."""
    cfg = validate_config(cfg)
    family = cfg.family
    if family not in MODEL_TYPE:
        raise UserInputError(f"a {family} model has no Hugging Face family here (exportable: "
                             f"gpt2, {', '.join(MODEL_TYPE)})")
    full = {"rope_type": "default", "rope_theta": cfg.rope_theta, **(cfg.rope_scaling or {})}
    out = {
        "architectures": [ARCHITECTURES[family]], "model_type": MODEL_TYPE[family], "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.context_length, "hidden_size": cfg.emb_dim,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "num_hidden_layers": cfg.n_layers, "intermediate_size": cfg.hidden_dim, "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_weights, "attention_bias": cfg.qkv_bias, "hidden_act": "silu",
        "sliding_window": cfg.sliding_window, "dtype": "float32", "rope_parameters": full,
        "layer_types": [f"{t}_attention" for t in cfg.layer_types],
    }
    if family in ("gemma3", "olmo3"):
        local = {"rope_type": "default", "rope_theta": cfg.local_rope_theta or cfg.rope_theta}
        out["rope_parameters"] = {"full_attention": full, "sliding_attention": local}
    if family == "gemma3":
        out.update(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=round(cfg.attn_scale ** -2),
                   final_logit_softcapping=None, attn_logit_softcapping=None)
    if family in ("qwen3-moe", "mixtral"):
        out.update(num_experts=cfg.n_experts, num_local_experts=cfg.n_experts,
                   num_experts_per_tok=cfg.n_experts_per_token, moe_intermediate_size=cfg.moe_hidden_dim,
                   norm_topk_prob=cfg.norm_topk_prob, mlp_only_layers=list(cfg.moe_dense_layers),
                   decoder_sparse_step=1, router_aux_loss_coef=cfg.router_aux_loss_coef)
    if family == "qwen3":
        out["use_sliding_window"] = "sliding" in cfg.layer_types
    return out


# -- tensors --------------------------------------------------------------------------------------------
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


class MappedSafetensors:
    """One ``.safetensors`` file, memory-mapped copy-on-write: tensors are views of the file's pages.

    Unlike ``safetensors.safe_open``: ``release(name)`` hands a tensor's pages back to the kernel once a
    converted copy exists, so loading bf16 weights into fp32 does not hold the whole file resident on top
    of the copies (the format: 8 bytes of header length, a JSON header of names, dtypes, shapes and byte
    offsets, then the data).
    """

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            try:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            except (ValueError, UnicodeDecodeError, MemoryError):
                raise CheckpointError(f"'{path}' is not a safetensors file: download it again") from None
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.path, self.base = path, 8 + n
        self.header = {k: v for k, v in header.items() if k != "__metadata__"}

    def keys(self):
        return self.header.keys()

    def dtype(self, name) -> torch.dtype:
        return SAFETENSORS_DTYPES[self.header[name]["dtype"]]

    def get_tensor(self, name) -> torch.Tensor:
        info = self.header[name]
        begin, end = info["data_offsets"]
        dtype = self.dtype(name)
        if end == begin:
            return torch.empty(info["shape"], dtype=dtype)
        count = (end - begin) // torch.empty((), dtype=dtype).element_size()
        return torch.frombuffer(self.mm, dtype=dtype, count=count, offset=self.base + begin).view(info["shape"])

    def release(self, name) -> None:
        """Drop the resident pages that lie wholly inside the tensor's bytes (they are read again if touched)."""
        begin, end = (self.base + o for o in self.header[name]["data_offsets"])
        start = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = end // mmap.PAGESIZE * mmap.PAGESIZE
        if stop > start:
            self.mm.madvise(mmap.MADV_DONTNEED, start, stop - start)


class TensorFolder:
    """The safetensors of a folder (one file or shards), memory-mapped; names checked as they are taken."""

    def __init__(self, folder: Path):
        index = folder / INDEX_NAME
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        elif (folder / WEIGHTS_NAME).is_file():
            files = [WEIGHTS_NAME]
        else:
            raise CheckpointError(f"folder '{folder}' holds neither {WEIGHTS_NAME} nor {INDEX_NAME}: download the "
                                  "whole model folder")
        self.folder, self.where, self.handles = folder, {}, []
        for name in files:
            if not (folder / name).is_file():
                raise CheckpointError(f"folder '{folder}' lacks the shard {name} that {INDEX_NAME} names")
            handle = MappedSafetensors(folder / name)
            self.handles.append(handle)
            for key in handle.keys():
                self.where[key] = handle
        self.prefix = self._text_model_prefix()
        self.taken = set()

    def _text_model_prefix(self) -> str:
        """'' for a causal LM; the language model's prefix inside a multimodal folder (Gemma 3)."""
        for prefix in ("", "language_model.", "model.language_model.", "model.text_model."):
            probe = f"{prefix}model.embed_tokens.weight" if prefix != "model.language_model." else \
                "model.language_model.embed_tokens.weight"
            if probe in self.where:
                return prefix
        return ""

    def _key(self, name: str) -> str:
        if self.prefix == "model.language_model.":
            return name.replace("model.", "model.language_model.", 1) if name.startswith("model.") else name
        return self.prefix + name

    def has(self, name: str) -> bool:
        return self._key(name) in self.where

    def get(self, name: str, dtype=None) -> torch.Tensor:
        """The tensor, in ``dtype``: a view of the file where it has that dtype, else a copy (the file's
        pages of it then released)."""
        key = self._key(name)
        if key not in self.where:
            raise CheckpointError(f"folder '{self.folder}' lacks tensor '{key}': not this model's weights?")
        self.taken.add(key)
        handle = self.where[key]
        tensor = handle.get_tensor(key)
        if dtype is None or tensor.dtype == dtype:
            return tensor
        converted = tensor.to(dtype)
        handle.release(key)
        return converted

    def release(self, names) -> None:
        for name in names:
            key = self._key(name)
            self.where[key].release(key)

    def untaken(self) -> list[str]:
        text = self._key("")
        return [k for k in self.where if k not in self.taken and k.startswith(text)]


def target_dtype(file_dtype: torch.dtype, dtype, device) -> torch.dtype:
    """``dtype`` if given; else the file's bf16 where the device computes in bf16, else fp32."""
    if dtype is not None:
        return dtype
    if file_dtype == torch.bfloat16 and bf16_supported(torch.device(device)):
        return torch.bfloat16
    return torch.float32


def state_dict_from_folder(tensors: TensorFolder, model: GPTModel, dtype) -> dict:
    """Our state dict, tensor by tensor from the folder, every name and shape checked."""
    family, out = model.cfg.family, {}
    for ours, meta in model.state_dict().items():
        if ours == "out_head.weight" and model.cfg.tie_weights:
            continue
        parts = qkv_names(ours)
        if parts is not None:
            tensor = torch.cat([tensors.get(p, dtype) for p in parts], dim=0)
            tensors.release(parts)  # the fused copy is what the model keeps
        else:
            tensor = tensors.get(hf_name(family, ours), dtype)
        if tuple(tensor.shape) != tuple(meta.shape):
            raise CheckpointError(f"folder '{tensors.folder}': {ours} has shape {tuple(tensor.shape)} in the file "
                                  f"but {tuple(meta.shape)} in the model config.json describes")
        out[ours] = tensor
    if model.cfg.tie_weights and tensors.has("lm_head.weight"):
        tensors.get("lm_head.weight")  # a copy of the embedding, as transformers may write it
    extra = tensors.untaken()
    if extra:
        raise CheckpointError(f"folder '{tensors.folder}' holds tensor '{extra[0]}' that this model has no place for")
    return out


def read_folder_config(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"'{folder}' is not a folder: give the model folder (config.json + model.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"folder '{folder}' holds no {CONFIG_NAME}: download the whole model folder")
    return read_json_file(path, "model config")


def load_hf(path, dtype=None, device="cpu") -> GPTModel:
    """A Hugging Face folder (``save_pretrained``'s layout) as our ``GPTModel``, in eval mode.

    The model is built on the meta device and the memory-mapped tensors are assigned to it (cast to
    ``dtype`` where needed): the weights are read once and never allocated twice.
    """
    folder = Path(path)
    hf = read_folder_config(folder)
    if hf.get("model_type") == "gpt2":
        return load_gpt2_safetensors(folder, device=device)
    cfg = config_from_hf(hf, f"'{folder / CONFIG_NAME}'")
    tensors = TensorFolder(folder)
    with torch.device("meta"):
        model = GPTModel(cfg)
    first = next(iter(tensors.where))
    dtype = target_dtype(tensors.where[first].dtype(first), dtype, device)
    state = state_dict_from_folder(tensors, model, dtype)
    model.load_state_dict(state, strict=not cfg.tie_weights, assign=True)
    if cfg.tie_weights:
        model.out_head.weight = model.tok_emb.weight
    for rope in getattr(model, "rope", {}).values():
        rope.reset_buffers("cpu")  # non-persistent buffers: computed, not read
    return model.to(device).eval()


def export_hf(model: GPTModel, folder) -> Path:
    """Write ``model`` as a folder ``transformers.AutoModelForCausalLM.from_pretrained`` reads: config.json +
    model.safetensors (atomically). Returns the folder."""
    if model.cfg.family == "gpt2":
        return export_gpt2_safetensors(model, folder).parent
    config = hf_config(model.cfg)
    folder = Path(folder)
    if folder.is_file():
        raise UserInputError(f"'{folder}' is a file: export writes a folder (config.json + model.safetensors)")
    out = {}
    for ours, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().float().contiguous()
        if ours == "out_head.weight" and model.cfg.tie_weights:
            continue
        parts = qkv_names(ours)
        if parts is None:
            out[hf_name(model.cfg.family, ours)] = tensor.clone()
            continue
        cfg = model.cfg
        sizes = (cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim)
        for name, part in zip(parts, tensor.split(sizes, dim=0)):
            out[name] = part.contiguous().clone()
    payload = save(out, metadata={"format": "pt"})
    atomic_write_bytes(folder / CONFIG_NAME, json.dumps(config, indent=2).encode("utf-8"))
    atomic_write_bytes(folder / WEIGHTS_NAME, payload)
    return folder
