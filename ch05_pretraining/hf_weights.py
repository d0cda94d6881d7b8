"""Open-weight models from Hugging Face folders, and back: one registry of weight maps keyed by model_type.

Unlike the book's section 5.5 (one hand-written loader per checkpoint): every family of
``ch04_gpt/families.py``, GPT-2 included, is the same ``GPTModel``, so one table of name rules per family
translates our parameter names to a checkpoint's (``trf_blocks.3.ff.fc1.weight`` <->
``model.layers.3.mlp.gate_proj.weight``). Two things are not one-to-one: our fused ``att.qkv`` (Hugging
Face's q_proj, k_proj and v_proj stacked; GPT-2's c_attn is fused already) and GPT-2's ``Conv1D`` weights,
stored (in, out) and transposed for ``nn.Linear``. ``config_from_hf`` reads ``config.json`` in its older
(``rope_theta``, ``rope_scaling``) and current (``rope_parameters``, per layer type) forms and refuses what
the model cannot represent, with one line naming it. ``load_hf`` builds the model on the meta device and assigns the memory-mapped tensors, so
no random weights are ever allocated; ``export_hf`` writes a folder that ``transformers`` reads.

>>> hf_name("qwen3", "trf_blocks.2.att.k_norm.weight")
'model.layers.2.self_attn.k_norm.weight'
>>> hf_name("mixtral", "trf_blocks.0.ff.experts.5.fc2.weight")
'model.layers.0.block_sparse_moe.experts.5.w3.weight'
>>> hf_name("gpt2", "trf_blocks.1.norm2.shift"), transposed("gpt2", "trf_blocks.1.ff.layers.0.weight")
('transformer.h.1.ln_2.bias', True)
"""

from __future__ import annotations

import json
import mmap
import re
from pathlib import Path

import torch
from safetensors.torch import save

from ch02_text.errors import UserInputError
from ch02_text.hardware import bf16_supported
from ch02_text.safe_files import atomic_write_bytes

from .checkpoint import CheckpointError
from .previous_chapters import FAMILIES, GPT_CONFIG_124M, GPTModel, read_json_file, validate_config

CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME = "config.json", "model.safetensors", "model.safetensors.index.json"
FAMILY_OF = {"gpt2": "gpt2", "llama": "llama", "qwen3": "qwen3", "qwen3_moe": "qwen3-moe", "gemma3_text": "gemma3",
             "gemma3": "gemma3", "mistral": "mistral", "mixtral": "mixtral", "olmo2": "olmo2", "olmo3": "olmo3"}
MODEL_TYPE = {"gpt2": "gpt2", "llama": "llama", "qwen3": "qwen3", "qwen3-moe": "qwen3_moe", "gemma3": "gemma3_text",
              "mistral": "mistral", "mixtral": "mixtral", "olmo2": "olmo2", "olmo3": "olmo3"}
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen3-moe": "Qwen3MoeForCausalLM",
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
# GPT-2 (GPT2LMHeadModel): LayerNorm's scale/shift are weight/bias, the QKV is fused, Conv1D weights are (in, out)
GPT2_TOP_NAMES = {"tok_emb.weight": "transformer.wte.weight", "pos_emb.weight": "transformer.wpe.weight",
                  "final_norm.scale": "transformer.ln_f.weight", "final_norm.shift": "transformer.ln_f.bias",
                  "out_head.weight": "lm_head.weight"}
GPT2_RULES = [(r"norm1", "ln_1"), (r"norm2", "ln_2"), (r"att\.qkv", "attn.c_attn"), (r"att\.out_proj", "attn.c_proj"),
              (r"ff\.layers\.0", "mlp.c_fc"), (r"ff\.layers\.2", "mlp.c_proj")]
GPT2_LEAVES = {"scale": "weight", "shift": "bias"}
GPT2_TRANSPOSED = r"trf_blocks\.\d+\.(att\.(qkv|out_proj)|ff\.layers\.[02])\.weight"
# tensors a checkpoint may hold that are not parameters (GPT-2's causal-mask buffers)
IGNORED = {"gpt2": r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias"}


def block_rules(family: str) -> list[tuple[str, str]]:
    if family == "gpt2":
        return GPT2_RULES
    return ATTENTION_RULES + MOE_RULES.get(family, []) + MLP_RULES + NORM_RULES[BLOCK_OF.get(family, "pre")]


def hf_name(family: str, ours: str) -> str:
    """The checkpoint's name of one of our parameters (the fused qkv of the split families: see ``qkv_names``)."""
    top = GPT2_TOP_NAMES if family == "gpt2" else TOP_NAMES
    if ours in top:
        return top[ours]
    layer, rest = re.fullmatch(r"trf_blocks\.(\d+)\.(.+)", ours).groups()
    module, leaf = rest.rsplit(".", 1)
    prefix = f"transformer.h.{layer}" if family == "gpt2" else f"model.layers.{layer}"
    leaf = GPT2_LEAVES.get(leaf, leaf) if family == "gpt2" else leaf
    for pattern, template in block_rules(family):
        if re.fullmatch(pattern, module):
            return f"{prefix}.{re.sub(pattern, template, module)}.{leaf}"
    raise KeyError(f"no Hugging Face name for {ours} in family {family}")


def transposed(family: str, ours: str) -> bool:
    """Whether the checkpoint stores this weight as (in, out) (GPT-2's Conv1D) rather than nn.Linear's (out, in)."""
    return family == "gpt2" and re.fullmatch(GPT2_TRANSPOSED, ours) is not None


def qkv_names(family: str, ours: str) -> list[str] | None:
    """The three checkpoint tensors behind our fused ``trf_blocks.N.att.qkv.weight`` (None for other names, and
    for GPT-2, whose checkpoint holds the fused tensor)."""
    match = re.fullmatch(r"trf_blocks\.(\d+)\.att\.qkv\.(weight|bias)", ours)
    if match is None or family == "gpt2":
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


# the choices of parts a Hugging Face family fixes (the sizes are free)
STRUCTURE = ("positions", "norm", "block", "ff", "qk_norm", "emb_scale")
# config.json settings of GPT-2 that GPTModel cannot represent, with the value it needs
GPT2_UNSUPPORTED = {"scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def gpt2_config_from_hf(hf: dict, source="config.json"):
    """GPT-2's ``config.json`` (``n_embd``, ``n_head``, ...) as our config, refusing what GPTModel cannot run."""
    for key, needed in GPT2_UNSUPPORTED.items():
        if hf.get(key, needed) != needed:
            raise CheckpointError(f"{source} sets {key}={hf[key]}, which GPTModel cannot represent")
    act = hf.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise CheckpointError(f"{source} uses activation_function={act!r}; GPTModel has GELU's tanh "
                              f"approximation only ({', '.join(TANH_GELUS)})")
    if hf.get("n_inner") not in (None, 4 * hf["n_embd"]):
        raise CheckpointError(f"{source} sets n_inner={hf['n_inner']}; GPTModel's feed forward is 4 x n_embd wide")
    return validate_config({
        **GPT_CONFIG_124M, "vocab_size": hf["vocab_size"], "context_length": hf.get("n_positions", 1024),
        "emb_dim": hf["n_embd"], "n_heads": hf["n_head"], "n_layers": hf["n_layer"], "qkv_bias": True,
        "tie_weights": bool(hf.get("tie_word_embeddings", True)), "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
        "drop_rate": 0.0})


def config_from_hf(hf: dict, source="config.json"):
    """Our ``ModelConfig`` from a Hugging Face ``config.json`` (a multimodal Gemma 3's text model too)."""
    if hf.get("model_type") == "gemma3" and "text_config" in hf:
        hf = {**hf["text_config"], "model_type": "gemma3_text"}
    model_type = hf.get("model_type")
    if model_type not in FAMILY_OF:
        raise UserInputError(f"{source}: model_type {model_type!r} is not supported here (supported: "
                             f"{', '.join(FAMILY_OF)})")
    family = FAMILY_OF[model_type]
    if family == "gpt2":
        return gpt2_config_from_hf(hf, source)
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
    if family not in MODEL_TYPE or cfg.block == "post":
        what = "post-LayerNorm (GPT-1)" if cfg.block == "post" else family
        raise UserInputError(f"a {what} model has no Hugging Face family here (exportable: "
                             f"{', '.join(MODEL_TYPE)})")
    published = validate_config({**cfg.to_dict(), **FAMILIES[family]})
    changed = [k for k in STRUCTURE if getattr(cfg, k) != getattr(published, k)]
    if family == "gpt2" and not (cfg.attn_bias and cfg.ff_bias):
        changed.append("attn_bias" if not cfg.attn_bias else "ff_bias")
    if changed:
        raise UserInputError(f"this {family} model sets {changed[0]}={getattr(cfg, changed[0])!r} where "
                             f"{family} has {getattr(published, changed[0])!r}: Hugging Face's {MODEL_TYPE[family]} "
                             "cannot hold it (a ladder rung between families is not exportable)")
    if family == "gpt2":
        return gpt2_hf_config(cfg)
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


def gpt2_hf_config(cfg) -> dict:
    """The ``config.json`` that ``GPT2LMHeadModel.from_pretrained`` needs for a model of ``cfg``."""
    return {
        "architectures": [ARCHITECTURES["gpt2"]], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.context_length, "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim, "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.drop_rate, "embd_pdrop": cfg.drop_rate, "attn_pdrop": cfg.drop_rate,
        "tie_word_embeddings": bool(cfg.tie_weights), "bos_token_id": 50256, "eos_token_id": 50256,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    }


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
                if not isinstance(header, dict):
                    raise ValueError("the header is not a JSON object")
            except (ValueError, UnicodeDecodeError, MemoryError):
                raise CheckpointError(f"'{path}' is not a safetensors file: download it again") from None
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.path, self.base = path, 8 + n
        self.metadata = header.get("__metadata__") or {}
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


# where the text model's tensors are in a file, given their names in a causal LM's own folder
NAME_FORMS = {
    "causal LM": lambda name: name,
    "bare GPT-2": lambda name: name.removeprefix("transformer."),  # the book's gpt2-small-124M.safetensors
    "multimodal": lambda name: name.replace("model.", "model.language_model.", 1),  # Gemma3ForConditionalGeneration
    "multimodal, older": lambda name: "language_model." + name,
}


class TensorFolder:
    """The safetensors of a folder (one file or shards, or one given file), memory-mapped; names checked as
    they are taken. Names are asked for as a causal LM's folder has them; ``NAME_FORMS`` finds the file's."""

    def __init__(self, folder: Path, embedding: str = TOP_NAMES["tok_emb.weight"], files=None):
        self.folder, self.where, self.handles = folder, {}, []
        for name in files or self._files(folder):
            if not (folder / name).is_file():
                raise CheckpointError(f"folder '{folder}' lacks the shard {name} that {INDEX_NAME} names")
            handle = MappedSafetensors(folder / name)
            self.handles.append(handle)
            for key in handle.keys():
                self.where[key] = handle
        self.source = f"'{folder / files[0]}'" if files else f"folder '{folder}'"
        forms = [f for f in NAME_FORMS.values() if f(embedding) in self.where]
        self.form = forms[0] if forms else NAME_FORMS["causal LM"]
        self.taken = set()

    @staticmethod
    def _files(folder: Path) -> list[str]:
        index = folder / INDEX_NAME
        if index.is_file():
            return sorted(set(read_json_file(index, "shard index")["weight_map"].values()))
        if (folder / WEIGHTS_NAME).is_file():
            return [WEIGHTS_NAME]
        raise CheckpointError(f"folder '{folder}' holds neither {WEIGHTS_NAME} nor {INDEX_NAME}: download the "
                              "whole model folder")

    def metadata(self) -> dict:
        return self.handles[0].metadata

    def has(self, name: str) -> bool:
        return self.form(name) in self.where

    def peek(self, name: str) -> torch.Tensor:
        """The tensor as the file holds it (a view), without counting it as taken."""
        key = self.form(name)
        if key not in self.where:
            raise CheckpointError(f"{self.source} lacks tensor '{key}': not this model's weights?")
        return self.where[key].get_tensor(key)

    def get(self, name: str, dtype=None, transpose=False) -> torch.Tensor:
        """The tensor, in ``dtype`` (transposed if asked): a view of the file where nothing changes, else a
        copy (the file's pages of it then released)."""
        tensor = self.peek(name)
        key = self.form(name)
        self.taken.add(key)
        handle = self.where[key]
        if (dtype is None or tensor.dtype == dtype) and not transpose:
            return tensor
        converted = (tensor.t() if transpose else tensor).to(dtype or tensor.dtype).contiguous()
        handle.release(key)
        return converted

    def release(self, names) -> None:
        for name in names:
            key = self.form(name)
            self.where[key].release(key)

    def untaken(self, ignored: str | None = None) -> list[str]:
        """Tensors of the text model left over (a multimodal folder's vision tower is not the text model's)."""
        text = [self.form("model."), self.form("lm_head.")] if self.form("model.") != "model." else [""]
        return [k for k in self.where if k not in self.taken and k.startswith(tuple(text))
                and not (ignored and re.fullmatch(ignored, k))]


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
        parts = qkv_names(family, ours)
        if parts is not None:
            tensor = torch.cat([tensors.get(p, dtype) for p in parts], dim=0)
            tensors.release(parts)  # the fused copy is what the model keeps
        else:
            tensor = tensors.get(hf_name(family, ours), dtype, transpose=transposed(family, ours))
        if tuple(tensor.shape) != tuple(meta.shape):
            theirs = ", ".join(tensors.form(n) for n in parts or [hf_name(family, ours)])
            raise CheckpointError(f"{tensors.source}: {ours} ({theirs}) has shape {tuple(tensor.shape)} in the "
                                  f"file but {tuple(meta.shape)} in the model config.json describes")
        out[ours] = tensor
    if model.cfg.tie_weights and tensors.has("lm_head.weight"):
        tensors.get("lm_head.weight")  # a copy of the embedding, as transformers may write it
    extra = tensors.untaken(IGNORED.get(family))
    if extra:
        raise CheckpointError(f"{tensors.source} holds tensor '{extra[0]}' that this model has no place for")
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
    cfg = config_from_hf(read_folder_config(folder), f"'{folder / CONFIG_NAME}'")
    return load_tensors(TensorFolder(folder, hf_name(cfg.family, "tok_emb.weight")), cfg, dtype, device)


def load_tensors(tensors: TensorFolder, cfg, dtype=None, device="cpu", impl="fast") -> GPTModel:
    """Our model of ``cfg`` holding the folder's tensors (see ``load_hf``); ``impl="book"`` builds the book's
    attention classes (their causal-mask buffers are made, not read, so that model is built for real)."""
    with torch.device("meta" if impl == "fast" else "cpu"):
        model = GPTModel(cfg, impl=impl)
    first = next(iter(tensors.where))
    dtype = target_dtype(tensors.where[first].dtype(first), dtype, device)
    state = state_dict_from_folder(tensors, model, dtype)
    model.load_state_dict(state, strict=not cfg.tie_weights, assign=impl == "fast")
    if cfg.tie_weights:
        model.out_head.weight = model.tok_emb.weight
    for rope in getattr(model, "rope", {}).values():
        rope.reset_buffers("cpu")  # non-persistent buffers: computed, not read
    return model.to(device).eval()


def hf_state_dict(model: GPTModel) -> dict:
    """``model``'s tensors under the checkpoint's names, in its layout (split QKV, GPT-2's transposes), fp32."""
    cfg, out = model.cfg, {}
    for ours, tensor in model.state_dict().items():
        if ours == "out_head.weight" and cfg.tie_weights:
            continue
        tensor = tensor.detach().cpu().float()
        parts = qkv_names(cfg.family, ours)
        if parts is None:
            out[hf_name(cfg.family, ours)] = (tensor.t() if transposed(cfg.family, ours) else tensor).contiguous().clone()
            continue
        sizes = (cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim)
        for name, part in zip(parts, tensor.split(sizes, dim=0)):
            out[name] = part.contiguous().clone()
    if cfg.family == "gpt2" and not cfg.qkv_bias:  # GPT-2's c_attn always has a bias
        for i in range(cfg.n_layers):
            out[f"transformer.h.{i}.attn.c_attn.bias"] = torch.zeros(cfg.n_heads * cfg.head_dim * 3)
    return out


def export_hf(model: GPTModel, folder) -> Path:
    """Write ``model`` as a folder ``transformers.AutoModelForCausalLM.from_pretrained`` reads: config.json +
    model.safetensors (atomically). Returns the folder."""
    config = hf_config(model.cfg)
    folder = Path(folder)
    if folder.is_file():
        raise UserInputError(f"'{folder}' is a file: export writes a folder (config.json + model.safetensors)")
    payload = save(hf_state_dict(model), metadata={"format": "pt"})
    atomic_write_bytes(folder / CONFIG_NAME, json.dumps(config, indent=2).encode("utf-8"))
    atomic_write_bytes(folder / WEIGHTS_NAME, payload)
    return folder
