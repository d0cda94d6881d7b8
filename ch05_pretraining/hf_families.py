"""The Hugging Face side of each family: how ``transformers`` names it, its weights and its ``config.json``.

Unlike ``ch04_gpt/families.py`` (the architecture, which knows nothing of Hugging Face): one ``HFFamily`` per
family, keyed by the same names, holds its model_type(s), its causal-LM class, the activation name its
``config.json`` carries, the rules that rename our parameters to its checkpoint's, the defaults its
``transformers`` config class assumes for keys a ``config.json`` leaves out, and its quirks as ``Quirk``
hooks that read and write its own keys (Gemma 3's ``query_pre_attn_scalar``, the experts of the MoE
families, which layers slide). ``hf_weights.py`` loops over these and has no branch per family: adding a
family is one ``FamilySpec`` in chapter 4 and one ``HFFamily`` here.

>>> HF_FAMILIES["gemma3"].model_types, HF_FAMILIES["gemma3"].activation
(('gemma3_text', 'gemma3'), 'gelu_pytorch_tanh')
>>> HF_FAMILIES["gemma3"].layers.read({"sliding_window": 512, "sliding_window_pattern": 3}, 6)["layer_types"]
['sliding', 'sliding', 'full', 'sliding', 'sliding', 'full']
>>> FAMILY_OF["qwen3_moe"], CONFIG_ACTIVATION["llama"]
('qwen3-moe', 'silu')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from ch02_text.errors import UserInputError

from .checkpoint import CheckpointError
from .previous_chapters import FAMILIES, GPT_CONFIG_124M, validate_config


@dataclass(frozen=True)
class Quirk:
    """A family's own keys of ``config.json``: ``read`` turns them into our config's values, ``write`` back.

    ``read(hf, n_layers)`` gets the ``config.json`` with the family's defaults filled in; ``write(cfg)`` gets
    our ``ModelConfig`` and returns the keys to add (or override)."""

    read: Callable[[dict, int], dict]
    write: Callable[[object], dict]


def _no_keys(*_) -> dict:
    return {}


# -- which layers slide: every family's config.json says it its own way --------------------------------
LAYER_NAMES = {"sliding_attention": "sliding", "full_attention": "full"}


def _listed_types(hf: dict) -> list[str]:
    unknown = [t for t in hf["layer_types"] if t not in LAYER_NAMES]
    if unknown:
        raise UserInputError(f"config.json: layer type {unknown[0]!r} is not implemented here")
    return [LAYER_NAMES[t] for t in hf["layer_types"]]


def _written_types(cfg) -> list[str]:
    return [f"{t}_attention" for t in cfg.layer_types]


def _window_if_sliding(cfg):
    return cfg.sliding_window if "sliding" in cfg.layer_types else None


ALL_FULL = Quirk(read=lambda hf, n: {"layer_types": ["full"] * n}, write=_no_keys)  # Llama, OLMo 2: no windows


def every_layer(gate: str | None = None) -> Quirk:
    """One window on every layer when ``sliding_window`` is set (Mistral, Mixtral), and ``gate`` is true
    where the family has one (Qwen3-MoE's ``use_sliding_window``)."""
    def read(hf, n):
        slides = bool(hf["sliding_window"]) and (gate is None or bool(hf[gate]))
        return {"layer_types": ["sliding" if slides else "full"] * n}

    def write(cfg):
        window = _window_if_sliding(cfg)
        return {"sliding_window": window, **({gate: window is not None} if gate else {})}
    return Quirk(read, write)


def listed(slides: Callable[[dict, int], bool], gate: str | None = None) -> Quirk:
    """``layer_types`` per layer, or, where a folder of an older ``transformers`` has none, the rule
    ``slides(hf, i)`` its config class derives them by (Gemma 3's ``sliding_window_pattern``). The window is
    written even when no layer slides: Gemma 3 and OLMo 3 build the sliding mask whatever the layers are."""
    def read(hf, n):
        if gate is not None and not (hf[gate] and hf["sliding_window"]):
            return {"layer_types": ["full"] * n}
        if hf.get("layer_types"):
            return {"layer_types": _listed_types(hf)}
        return {"layer_types": ["sliding" if slides(hf, i) else "full" for i in range(n)]}

    def write(cfg):
        out = {"layer_types": _written_types(cfg), "sliding_window": cfg.sliding_window or cfg.context_length}
        return {**out, gate: "sliding" in cfg.layer_types} if gate else out
    return Quirk(read, write)


# -- the family's own keys -----------------------------------------------------------------------------
GEMMA3_SCALE = Quirk(  # Gemma 3 scales the scores by query_pre_attn_scalar ** -0.5, not head_dim ** -0.5
    read=lambda hf, n: {"attn_scale": float(hf["query_pre_attn_scalar"]) ** -0.5},
    write=lambda cfg: {"query_pre_attn_scalar": round(cfg.attn_scale ** -2), "final_logit_softcapping": None,
                       "attn_logit_softcapping": None})
MLP_BIAS = Quirk(read=lambda hf, n: {"ff_bias": bool(hf["mlp_bias"])},  # Llama's feed forward may have biases
                 write=lambda cfg: {"mlp_bias": cfg.ff_bias})


def experts(hidden_key: str, sparse_layout: bool) -> Quirk:
    """The experts' keys: their count (``num_local_experts``, older Qwen3-MoE folders' ``num_experts`` being
    an alias of it), their hidden size under ``hidden_key``; Qwen3-MoE also says which layers keep a dense MLP
    and whether the top-k weights are renormalised (``sparse_layout``; Mixtral always renormalises)."""
    def read(hf, n):
        values = {"n_experts": hf["num_local_experts"], "n_experts_per_token": hf["num_experts_per_tok"],
                  "moe_hidden_dim": hf[hidden_key], "router_aux_loss_coef": float(hf["router_aux_loss_coef"])}
        if sparse_layout:
            step = hf["decoder_sparse_step"] or 1
            dense = set(hf["mlp_only_layers"] or []) | {i for i in range(n) if (i + 1) % step}
            values.update(moe_dense_layers=sorted(dense), norm_topk_prob=bool(hf["norm_topk_prob"]))
        return values

    def write(cfg):  # the count under both names: transformers 4.x's Qwen3-MoE reads num_experts
        out = {"num_local_experts": cfg.n_experts, "num_experts": cfg.n_experts,
               "num_experts_per_tok": cfg.n_experts_per_token, hidden_key: cfg.moe_hidden_dim,
               "router_aux_loss_coef": cfg.router_aux_loss_coef}
        if sparse_layout:
            out.update(mlp_only_layers=list(cfg.moe_dense_layers), decoder_sparse_step=1,
                       norm_topk_prob=cfg.norm_topk_prob)
        return out
    return Quirk(read, write)


EXPERT_ALIASES = {"num_experts": "num_local_experts"}  # both MoE config classes' attribute_map


# -- weight names ---------------------------------------------------------------------------------------
ATTENTION_RULES = ((r"att\.out_proj", "self_attn.o_proj"), (r"att\.q_norm", "self_attn.q_norm"),
                   (r"att\.k_norm", "self_attn.k_norm"))
MLP_RULES = ((r"ff\.fc1", "mlp.gate_proj"), (r"ff\.fc2", "mlp.up_proj"), (r"ff\.fc3", "mlp.down_proj"))
NORM_RULES = {  # by our block layout (ModelConfig.block)
    "pre": ((r"norm1", "input_layernorm"), (r"norm2", "post_attention_layernorm")),
    "sandwich": ((r"norm1", "input_layernorm"), (r"post_att_norm", "post_attention_layernorm"),
                 (r"norm2", "pre_feedforward_layernorm"), (r"post_ff_norm", "post_feedforward_layernorm")),
    "post_branch": ((r"post_att_norm", "post_attention_layernorm"), (r"post_ff_norm", "post_feedforward_layernorm")),
}
QWEN3_MOE_RULES = ((r"ff\.gate", "mlp.gate"), (r"ff\.experts\.(\d+)\.fc1", r"mlp.experts.\1.gate_proj"),
                   (r"ff\.experts\.(\d+)\.fc2", r"mlp.experts.\1.up_proj"),
                   (r"ff\.experts\.(\d+)\.fc3", r"mlp.experts.\1.down_proj"))
MIXTRAL_RULES = ((r"ff\.gate", "block_sparse_moe.gate"),
                 (r"ff\.experts\.(\d+)\.fc1", r"block_sparse_moe.experts.\1.w1"),
                 (r"ff\.experts\.(\d+)\.fc2", r"block_sparse_moe.experts.\1.w3"),
                 (r"ff\.experts\.(\d+)\.fc3", r"block_sparse_moe.experts.\1.w2"))
TOP_NAMES = MappingProxyType({"tok_emb.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight",
                              "out_head.weight": "lm_head.weight"})
QKV_PARTS = ("q_proj", "k_proj", "v_proj")
# GPT-2 (GPT2LMHeadModel): LayerNorm's scale/shift are weight/bias, the QKV is fused, Conv1D weights are (in, out)
GPT2_TOP_NAMES = MappingProxyType({
    "tok_emb.weight": "transformer.wte.weight", "pos_emb.weight": "transformer.wpe.weight",
    "final_norm.scale": "transformer.ln_f.weight", "final_norm.shift": "transformer.ln_f.bias",
    "out_head.weight": "lm_head.weight"})
GPT2_RULES = ((r"norm1", "ln_1"), (r"norm2", "ln_2"), (r"att\.qkv", "attn.c_attn"), (r"att\.out_proj", "attn.c_proj"),
              (r"ff\.layers\.0", "mlp.c_fc"), (r"ff\.layers\.2", "mlp.c_proj"))
GPT2_LEAVES = MappingProxyType({"scale": "weight", "shift": "bias"})
GPT2_TRANSPOSED = r"trf_blocks\.\d+\.(att\.(qkv|out_proj)|ff\.layers\.[02])\.weight"


# -- config.json defaults: what transformers' config class assumes for a key config.json leaves out ------
GENERIC_DEFAULTS = MappingProxyType({
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "attention_bias": False,
    "mlp_bias": False, "sliding_window": None, "rope_theta": 10000.0, "head_dim": None, "num_key_value_heads": None})
# Gemma 3's too: the text_config of its multimodal folders (4B and up) leaves out most of them
GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
    "tie_word_embeddings": True, "query_pre_attn_scalar": 256, "sliding_window": 4096, "sliding_window_pattern": 6,
    "rope_theta": 1e6, "rope_local_base_freq": 1e4}


@dataclass(frozen=True)
class HFFamily:
    """One family as ``transformers`` has it (see the module docstring). ``read_config``/``write_config``
    replace the generic causal-LM ``config.json`` where a family has another layout altogether (GPT-2's)."""

    family: str                               # the key of ch04_gpt.families.FAMILY_SPECS
    model_types: tuple[str, ...]              # config.json's model_type; the first is written
    architecture: str                         # the causal-LM class (config.json's architectures)
    rules: tuple                              # (our module pattern, theirs) per block parameter
    activation: str = "silu"                  # config.json's activation name for this family ...
    activation_key: str = "hidden_act"        # ... under this key
    defaults: Mapping = field(default_factory=dict)  # the config class's defaults for keys left out
    layers: Quirk = ALL_FULL                  # which layers slide
    quirks: tuple[Quirk, ...] = ()            # the family's other keys
    local_theta_key: str | None = None        # sliding layers' own RoPE base in the older config.json
    aliases: Mapping = field(default_factory=dict)  # config.json key -> the one transformers stores it as
    fixed: Mapping = field(default_factory=dict)  # our fields Hugging Face's family cannot vary, with their values
    top_names: Mapping = field(default=None)  # parameters outside the blocks (None: TOP_NAMES)
    layer_prefix: str = "model.layers"        # block N's parameters are under f"{layer_prefix}.{N}."
    leaves: Mapping = field(default_factory=dict)  # our leaf names -> theirs (GPT-2's LayerNorm scale/shift)
    transposed: str | None = None             # our weights the checkpoint stores (in, out) (GPT-2's Conv1D)
    split_qkv: bool = True                    # q_proj, k_proj, v_proj apart (GPT-2: fused c_attn)
    ignored: str | None = None                # checkpoint tensors that are not parameters
    read_config: Callable | None = None       # (hf, source) -> ModelConfig, replacing the generic reading
    write_config: Callable | None = None      # cfg -> config.json, replacing the generic writing
    extra_tensors: Callable | None = None     # cfg -> tensors the checkpoint needs that the model lacks

    def __post_init__(self):
        object.__setattr__(self, "defaults", MappingProxyType({**GENERIC_DEFAULTS, **self.defaults}))
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))
        object.__setattr__(self, "top_names", self.top_names or TOP_NAMES)


def causal_lm(family: str, model_types, architecture: str, moe_rules=(), **options) -> HFFamily:
    """A family stored as ``transformers``' causal LMs are (``model.layers.N.self_attn.q_proj`` ...): its block
    rules follow from its parts (the norms' names from ``block``, the experts' from ``moe_rules``)."""
    block = FAMILIES[family].get("block", "pre")
    rules = (*ATTENTION_RULES, *moe_rules, *MLP_RULES, *NORM_RULES[block])
    types = (model_types,) if isinstance(model_types, str) else tuple(model_types)
    return HFFamily(family, types, architecture, rules, **options)


# -- GPT-2: its own config.json layout ---------------------------------------------------------------------
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


def gpt2_hf_config(cfg) -> dict:
    """The ``config.json`` keys that ``GPT2LMHeadModel.from_pretrained`` needs for a model of ``cfg``."""
    return {
        "vocab_size": cfg.vocab_size, "n_positions": cfg.context_length, "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim, "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_inner": None,
        "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.drop_rate, "embd_pdrop": cfg.drop_rate, "attn_pdrop": cfg.drop_rate,
        "tie_word_embeddings": bool(cfg.tie_weights), "bos_token_id": 50256, "eos_token_id": 50256,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    }


def gpt2_zero_qkv_bias(cfg) -> dict:
    """GPT-2's c_attn always has a bias: zeros for a model without one."""
    if cfg.qkv_bias:
        return {}
    return {f"transformer.h.{i}.attn.c_attn.bias": torch.zeros(cfg.n_heads * cfg.head_dim * 3)
            for i in range(cfg.n_layers)}


GPT2 = HFFamily(
    "gpt2", ("gpt2",), "GPT2LMHeadModel", GPT2_RULES, activation="gelu_new", activation_key="activation_function",
    fixed={"attn_bias": True, "ff_bias": True}, top_names=GPT2_TOP_NAMES, layer_prefix="transformer.h",
    leaves=GPT2_LEAVES, transposed=GPT2_TRANSPOSED, split_qkv=False,
    ignored=r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias",  # the causal-mask buffers of older folders
    read_config=gpt2_config_from_hf, write_config=gpt2_hf_config, extra_tensors=gpt2_zero_qkv_bias)


# -- the registry -----------------------------------------------------------------------------------------
HF_FAMILIES = {spec.family: spec for spec in (
    GPT2,
    causal_lm("llama", "llama", "LlamaForCausalLM", quirks=(MLP_BIAS,)),
    causal_lm("qwen3", "qwen3", "Qwen3ForCausalLM",
              defaults={"max_position_embeddings": 32768, "head_dim": 128, "sliding_window": 4096,
                        "use_sliding_window": False, "max_window_layers": 28},
              layers=listed(lambda hf, i: i >= hf["max_window_layers"], gate="use_sliding_window")),
    causal_lm("qwen3-moe", "qwen3_moe", "Qwen3MoeForCausalLM", QWEN3_MOE_RULES,
              defaults={"max_position_embeddings": 32768, "sliding_window": 4096, "use_sliding_window": False,
                        "norm_topk_prob": False, "router_aux_loss_coef": 0.001, "decoder_sparse_step": 1,
                        "mlp_only_layers": [], "num_local_experts": 128, "num_experts_per_tok": 8,
                        "moe_intermediate_size": 768},
              layers=every_layer(gate="use_sliding_window"), aliases=EXPERT_ALIASES,
              quirks=(experts("moe_intermediate_size", sparse_layout=True),)),
    causal_lm("gemma3", ("gemma3_text", "gemma3"), "Gemma3ForCausalLM", activation="gelu_pytorch_tanh",
              activation_key="hidden_activation", defaults=GEMMA3_TEXT_DEFAULTS,
              layers=listed(lambda hf, i: (i + 1) % hf["sliding_window_pattern"] != 0), quirks=(GEMMA3_SCALE,),
              local_theta_key="rope_local_base_freq"),
    causal_lm("mistral", "mistral", "MistralForCausalLM",
              defaults={"max_position_embeddings": 131072, "sliding_window": 4096}, layers=every_layer()),
    causal_lm("mixtral", "mixtral", "MixtralForCausalLM", MIXTRAL_RULES,
              defaults={"max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
                        "router_aux_loss_coef": 0.001, "num_local_experts": 8, "num_experts_per_tok": 2},
              layers=every_layer(), aliases=EXPERT_ALIASES, quirks=(experts("intermediate_size", sparse_layout=False),),
              fixed={"norm_topk_prob": True, "moe_dense_layers": ()}),
    causal_lm("olmo2", "olmo2", "Olmo2ForCausalLM", defaults={"rms_norm_eps": 1e-5}),
    causal_lm("olmo3", "olmo3", "Olmo3ForCausalLM",
              defaults={"rms_norm_eps": 1e-5, "sliding_window": 4096, "rope_theta": 500000.0},
              layers=listed(lambda hf, i: (i + 1) % 4 != 0), local_theta_key="rope_theta"),
)}

# Views by the names messages and readers use.
FAMILY_OF = {model_type: spec.family for spec in HF_FAMILIES.values() for model_type in spec.model_types}
MODEL_TYPE = {family: spec.model_types[0] for family, spec in HF_FAMILIES.items()}
CONFIG_ACTIVATION = {family: spec.activation for family, spec in HF_FAMILIES.items()}  # config.json's name
