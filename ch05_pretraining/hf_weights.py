"""Open-weight models from Hugging Face folders, and back: one loop over the families' Hugging Face specs.

Unlike the book's section 5.5 (one hand-written loader per checkpoint): every family of
``ch04_gpt/families.py``, GPT-2 included, is the same ``GPTModel``, and its Hugging Face side is data
(``hf_families.HF_FAMILIES``): name rules translate our parameter names to a checkpoint's
(``trf_blocks.3.ff.fc1.weight`` <-> ``model.layers.3.mlp.gate_proj.weight``), and hooks read and write each
family's own ``config.json`` keys; nothing here branches on a family. Two things are not one-to-one: our fused
``att.qkv`` (Hugging Face's q_proj, k_proj and v_proj stacked; GPT-2's c_attn is fused already) and GPT-2's
``Conv1D`` weights, stored (in, out) and transposed for ``nn.Linear``. ``config_from_hf`` reads ``config.json``
as ``transformers`` 5 does, in its older form (``rope_theta`` + ``rope_scaling``, Gemma 3's
``rope_local_base_freq`` and ``sliding_window_pattern``) and its current one (``rope_parameters`` and
``layer_types``), keys left out taking the config class's defaults, and refuses what the model cannot
represent, with one line naming it. ``load_hf`` builds the model on the meta device and assigns the
memory-mapped tensors, so no random weights are ever allocated; ``export_hf`` writes a folder that
``transformers`` reads.

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
from .hf_families import FAMILY_OF, HF_FAMILIES, QKV_PARTS, TOP_NAMES, HFFamily
from .previous_chapters import FAMILIES, FAMILY_SPECS, GPTModel, read_json_file, validate_config

CONFIG_NAME, WEIGHTS_NAME, INDEX_NAME = "config.json", "model.safetensors", "model.safetensors.index.json"
# the choices of parts a Hugging Face family fixes (the sizes are free)
STRUCTURE = ("positions", "norm", "block", "ff", "qk_norm", "emb_scale")


def hf_family(family: str) -> HFFamily:
    """The Hugging Face side of one of our families (KeyError for one that has none, GPT-1)."""
    return HF_FAMILIES[family]


# -- names ----------------------------------------------------------------------------------------------
def block_rules(family: str) -> tuple[tuple[str, str], ...]:
    return hf_family(family).rules


def hf_name(family: str, ours: str) -> str:
    """The checkpoint's name of one of our parameters (the fused qkv of the split families: see ``qkv_names``)."""
    spec = hf_family(family)
    if ours in spec.top_names:
        return spec.top_names[ours]
    layer, rest = re.fullmatch(r"trf_blocks\.(\d+)\.(.+)", ours).groups()
    module, leaf = rest.rsplit(".", 1)
    leaf = spec.leaves.get(leaf, leaf)
    for pattern, template in spec.rules:
        if re.fullmatch(pattern, module):
            return f"{spec.layer_prefix}.{layer}.{re.sub(pattern, template, module)}.{leaf}"
    raise KeyError(f"no Hugging Face name for {ours} in family {family}")


def transposed(family: str, ours: str) -> bool:
    """Whether the checkpoint stores this weight as (in, out) (GPT-2's Conv1D) rather than nn.Linear's (out, in)."""
    pattern = hf_family(family).transposed
    return pattern is not None and re.fullmatch(pattern, ours) is not None


def qkv_names(family: str, ours: str) -> list[str] | None:
    """The three checkpoint tensors behind our fused ``trf_blocks.N.att.qkv.weight`` (None for other names, and
    for GPT-2, whose checkpoint holds the fused tensor)."""
    spec = hf_family(family)
    match = re.fullmatch(r"trf_blocks\.(\d+)\.att\.qkv\.(weight|bias)", ours)
    if match is None or not spec.split_qkv:
        return None
    layer, leaf = match.groups()
    return [f"{spec.layer_prefix}.{layer}.self_attn.{part}.{leaf}" for part in QKV_PARTS]


# -- config.json ----------------------------------------------------------------------------------------
def _rope(hf: dict, spec: HFFamily) -> dict:
    """rope_theta, rope_scaling and local_rope_theta from either form of config.json, as transformers reads
    them: ``rope_parameters`` (flat, or per layer type) or the older ``rope_theta`` + ``rope_scaling`` (on the
    full layers) + the sliding layers' own base (Gemma 3's ``rope_local_base_freq``)."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:  # per layer type
        full, local = dict(params.get("full_attention") or {}), dict(params.get("sliding_attention") or {})
    else:
        full, local = dict(hf.get("rope_scaling") or params), {}
    full.setdefault("rope_theta", hf["rope_theta"])
    scaling = {k: v for k, v in full.items() if k != "rope_theta"}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    out = {"rope_theta": float(full["rope_theta"]), "rope_scaling": None if kind == "default" else scaling}
    if spec.local_theta_key is not None:
        kind = local.get("rope_type", local.get("type", "default"))
        if kind != "default":
            raise UserInputError(f"config.json: sliding layers with RoPE type {kind!r} are not implemented here")
        out["local_rope_theta"] = float(local.get("rope_theta") or hf[spec.local_theta_key])
    return out


def _refuse_unsupported(hf: dict, spec: HFFamily) -> None:
    act = hf.get(spec.activation_key) or spec.activation
    if act != spec.activation:
        raise UserInputError(f"config.json: activation {act!r} is not implemented for {spec.family}")
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if hf.get(key) is not None:
            raise UserInputError(f"config.json: {key}={hf[key]} is not implemented here")
    if hf.get("partial_rotary_factor", 1.0) != 1.0:
        raise UserInputError(f"config.json: partial_rotary_factor={hf['partial_rotary_factor']} is not implemented")
    if hf.get("use_bidirectional_attention"):
        raise UserInputError("config.json: use_bidirectional_attention is not implemented (causal models only)")


def _family_of(hf: dict, source) -> tuple[HFFamily, dict]:
    """The family of a ``config.json``, and the config of its text model (a multimodal Gemma 3's text_config)."""
    model_type = hf.get("model_type")
    if model_type not in FAMILY_OF:
        raise UserInputError(f"{source}: model_type {model_type!r} is not supported here (supported: "
                             f"{', '.join(FAMILY_OF)})")
    spec = hf_family(FAMILY_OF[model_type])
    if isinstance(hf.get("text_config"), dict):
        hf = {**hf["text_config"], "model_type": spec.model_types[0]}
    return spec, hf


def config_from_hf(hf: dict, source="config.json"):
    """Our ``ModelConfig`` from a Hugging Face ``config.json`` (a multimodal Gemma 3's text model too); keys it
    leaves out take the values ``transformers`` gives them."""
    spec, hf = _family_of(hf, source)
    if spec.read_config is not None:
        return spec.read_config(hf, source)
    hf = {**spec.defaults, **{spec.aliases.get(key, key): value for key, value in hf.items()}}
    _refuse_unsupported(hf, spec)
    try:
        values = _causal_lm_values(hf, spec)
    except KeyError as missing:
        raise UserInputError(f"{source} lacks {missing}, which a {hf['model_type']} config.json needs") from None
    except (TypeError, ZeroDivisionError) as error:  # a value of the wrong kind (null, a string, 0)
        raise UserInputError(f"{source} holds a value this reader cannot use ({error}): is it a "
                             f"{hf['model_type']} config.json?") from None
    if "sliding" not in values["layer_types"]:
        values["sliding_window"] = None
    return validate_config({**FAMILIES[spec.family], **values})


def _causal_lm_values(hf: dict, spec: HFFamily) -> dict:
    n_layers = hf["num_hidden_layers"]
    bias = bool(hf["attention_bias"])
    values = {
        "family": spec.family, "vocab_size": hf["vocab_size"], "context_length": hf["max_position_embeddings"],
        "emb_dim": hf["hidden_size"], "n_heads": hf["num_attention_heads"], "n_layers": n_layers,
        "n_kv_heads": hf["num_key_value_heads"] or hf["num_attention_heads"], "head_dim": hf["head_dim"],
        "hidden_dim": hf["intermediate_size"], "norm_eps": float(hf["rms_norm_eps"]),
        "tie_weights": bool(hf["tie_word_embeddings"]), "drop_rate": 0.0, "qkv_bias": bias, "attn_bias": bias,
        "sliding_window": hf["sliding_window"], **_rope(hf, spec),
    }
    for quirk in (spec.layers, *spec.quirks):
        values.update(quirk.read(hf, n_layers))
    return values


def hf_config(cfg) -> dict:
    """The ``config.json`` of a model of ``cfg`` for ``transformers`` (current form, per-layer RoPE where used)."""
    cfg = validate_config(cfg)
    spec = HF_FAMILIES.get(cfg.family)
    if spec is None or cfg.block == "post":
        what = "post-LayerNorm (GPT-1)" if cfg.block == "post" else cfg.family
        raise UserInputError(f"a {what} model has no Hugging Face family here (exportable: "
                             f"{', '.join(HF_FAMILIES)})")
    _refuse_other_parts(cfg, spec)
    body = spec.write_config(cfg) if spec.write_config is not None else _causal_lm_config(cfg, spec)
    out = {"architectures": [spec.architecture], "model_type": spec.model_types[0], **body,
           spec.activation_key: spec.activation, "initializer_range": FAMILY_SPECS[cfg.family].initializer_range}
    if spec.write_config is None:
        _refuse_unheld_layer_types(cfg, spec, out)
    return out


def _refuse_other_parts(cfg, spec: HFFamily) -> None:
    """A ladder rung between families (parts of one on another) has no Hugging Face class that holds it."""
    family = cfg.family
    published = validate_config({**cfg.to_dict(), **FAMILIES[family], **spec.fixed})
    changed = [k for k in (*STRUCTURE, *spec.fixed) if getattr(cfg, k) != getattr(published, k)]
    if changed:
        raise UserInputError(f"this {family} model sets {changed[0]}={getattr(cfg, changed[0])!r} where "
                             f"{family} has {getattr(published, changed[0])!r}: Hugging Face's {spec.model_types[0]} "
                             "cannot hold it (a ladder rung between families is not exportable)")


def _refuse_unheld_layer_types(cfg, spec: HFFamily, out: dict) -> None:
    """The sliding layers as written must read back as ours (Llama has none; Mistral slides on every layer)."""
    written = spec.layers.read({**spec.defaults, **out}, cfg.n_layers)["layer_types"]
    if written != list(cfg.layer_types):
        raise UserInputError(f"this {cfg.family} model's layer types ({', '.join(cfg.layer_types)}) cannot be "
                             f"written as Hugging Face's {spec.model_types[0]} config.json (it reads them as "
                             f"{', '.join(written)})")


def _causal_lm_config(cfg, spec: HFFamily) -> dict:
    """The keys every causal LM's config.json has, then the family's own (its quirks)."""
    scaling = dict(cfg.rope_scaling or {})
    full = {"rope_type": scaling.pop("rope_type", scaling.pop("type", "default")), "rope_theta": cfg.rope_theta,
            **scaling}
    rope = full
    if spec.local_theta_key is not None:
        local = {"rope_type": "default", "rope_theta": cfg.local_rope_theta or cfg.rope_theta}
        rope = {"full_attention": full, "sliding_attention": local}
    out = {
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.context_length, "hidden_size": cfg.emb_dim,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "num_hidden_layers": cfg.n_layers, "intermediate_size": cfg.hidden_dim, "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_weights, "attention_bias": cfg.qkv_bias, "dtype": "float32",
        "rope_parameters": rope,
    }
    for quirk in (spec.layers, *spec.quirks):
        out.update(quirk.write(cfg))
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
                if not isinstance(header, dict):
                    raise ValueError("the header is not a JSON object")
            except (ValueError, UnicodeDecodeError, MemoryError):
                raise CheckpointError(f"'{path}' is not a safetensors file: download it again") from None
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self.path, self.base = path, 8 + n
        _check_complete(path, header, self.base, len(self.mm))
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


def _check_complete(path, header: dict, base: int, size: int) -> None:
    """Refuse a file cut short (an interrupted download) or a header whose entries are not tensors, before any
    tensor is read: one line, not a buffer error halfway through loading."""
    ends = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and info.get("dtype") in SAFETENSORS_DTYPES):
            raise CheckpointError(f"'{path}' has a damaged header (tensor '{name}'): download it again")
        ends.append(offsets[1])
    needed = base + max(ends, default=0)
    if size < needed:
        raise CheckpointError(f"'{path}' is truncated ({size:,} of {needed:,} bytes): download it again")


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
    extra = tensors.untaken(hf_family(family).ignored)
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
    extra = hf_family(cfg.family).extra_tensors
    return {**out, **(extra(cfg) if extra else {})}


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
