"""Architecture families and real-size presets, as data: one ``FamilySpec`` per family, and each model's sizes.

Unlike the book, which has one GPT: every model here is the same ``GPTModel`` built from named parts
(see ``config.ModelConfig``). A family states only what differs from GPT-2 (its ``parts``), with its title,
one line on what it changes, its smallest preset and the ``initializer_range`` its reference code draws
initial weights with; a preset adds the sizes of one published ``config.json``. Adding a family is one
``FamilySpec`` here (plus its presets), and one ``HFFamily`` in ``ch05_pretraining/hf_families.py`` for its
Hugging Face side (chapter 4 knows nothing of Hugging Face).

>>> FAMILY_SPECS["qwen3"].parts["qk_norm"], PRESETS["qwen3-0.6b"]["head_dim"], FAMILY_SPECS["qwen3"].initializer_range
('head', 128, 0.02)
>>> FAMILIES["gemma3"]["block"], TITLES["gemma3"], SMALLEST["gemma3"]   # the views the rest of the code reads
('sandwich', 'Gemma 3', 'gemma3-270m')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class FamilySpec:
    """One architecture family: its parts (the ``ModelConfig`` keys it sets) and what the book's tables say of it."""

    key: str                        # the name ``--arch`` and ``ModelConfig.family`` use
    title: str                      # as printed ("Qwen3-MoE")
    changes: str                    # one line: what it changes relative to GPT-2
    parts: Mapping                  # ModelConfig keys -> values ("family" included), read-only
    smallest: str                   # its smallest preset: what ``train --arch`` starts from
    initializer_range: float = 0.02  # std of the initial weights in its reference code (transformers' configs)
    lora_names: Mapping = None      # LoRA's names of a block's linear layers (None: CAUSAL_LM_LORA_NAMES)

    def __post_init__(self):
        if self.parts.get("family") != self.key:
            raise ValueError(f"family {self.key}: its parts name family {self.parts.get('family')!r}")
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))
        object.__setattr__(self, "lora_names", MappingProxyType(dict(self.lora_names or CAUSAL_LM_LORA_NAMES)))


GPT2 = {"family": "gpt2"}  # the book's defaults (see ModelConfig): learned positions, LayerNorm, GELU MLP, biases
LLAMA = {"family": "llama", "positions": "rope", "norm": "rmsnorm", "ff": "swiglu", "ff_bias": False,
         "attn_bias": False, "qkv_bias": False, "norm_eps": 1e-5, "drop_rate": 0.0}
QWEN3 = {**LLAMA, "family": "qwen3", "qk_norm": "head", "norm_eps": 1e-6}
OLMO2 = {**LLAMA, "family": "olmo2", "norm": "rmsnorm_olmo", "block": "post_branch", "qk_norm": "proj",
         "norm_eps": 1e-6}
QWEN3_MOE = {**QWEN3, "family": "qwen3-moe", "ff": "moe", "norm_topk_prob": True}
GEMMA3 = {**LLAMA, "family": "gemma3", "norm": "rmsnorm_gemma", "block": "sandwich", "ff": "geglu", "qk_norm": "head",
          "emb_scale": True, "norm_eps": 1e-6}
MISTRAL = {**LLAMA, "family": "mistral"}
MIXTRAL = {**LLAMA, "family": "mixtral", "ff": "moe", "norm_topk_prob": True}
OLMO3 = {**OLMO2, "family": "olmo3"}

# LoRA's names of each block's linear layers: those of the family's Hugging Face checkpoints, which PEFT's
# ``target_modules`` use. Our module (a pattern, relative to the block) -> its name, or its parts' names (our
# fused QKV holds Hugging Face's q_proj, k_proj and v_proj; GPT-2's c_attn is fused there too).
CAUSAL_LM_LORA_NAMES = {r"att\.qkv": ("q_proj", "k_proj", "v_proj"), r"att\.out_proj": "o_proj",
                        r"ff\.fc1": "gate_proj", r"ff\.fc2": "up_proj", r"ff\.fc3": "down_proj", r"ff\.gate": "gate",
                        r"ff\.experts\.\d+\.fc1": "gate_proj", r"ff\.experts\.\d+\.fc2": "up_proj",
                        r"ff\.experts\.\d+\.fc3": "down_proj"}
MIXTRAL_LORA_NAMES = {**CAUSAL_LM_LORA_NAMES, r"ff\.experts\.\d+\.fc1": "w1", r"ff\.experts\.\d+\.fc2": "w3",
                      r"ff\.experts\.\d+\.fc3": "w2"}
GPT2_LORA_NAMES = {r"att\.qkv": "c_attn", r"att\.out_proj": "c_proj", r"ff\.layers\.0": "c_fc",
                   r"ff\.layers\.2": "c_proj"}

FAMILY_SPECS = {spec.key: spec for spec in (
    FamilySpec("gpt2", "GPT-2 (pre-LN)", "learned positions, LayerNorm before each branch, GELU MLP, biases", GPT2,
               "gpt2-small", lora_names=GPT2_LORA_NAMES),
    FamilySpec("gpt1", "GPT-1 (post-LN)", "LayerNorm after each residual addition (post-norm)",
               {"family": "gpt1", "block": "post"}, "gpt1", lora_names=GPT2_LORA_NAMES),
    FamilySpec("llama", "Llama 3", "RoPE, RMSNorm, SwiGLU, no biases, grouped-query attention", LLAMA,
               "llama-3.2-1b"),
    FamilySpec("qwen3", "Qwen3", "Llama + RMSNorm on each head's queries and keys (QK-norm)", QWEN3, "qwen3-0.6b"),
    FamilySpec("qwen3-moe", "Qwen3-MoE", "Qwen3 + mixture of experts in place of the MLP", QWEN3_MOE,
               "qwen3-30b-a3b"),
    FamilySpec("gemma3", "Gemma 3", "GeGLU, norms before and after each branch, (1 + w) RMSNorm, scaled embeddings, "
               "5 local : 1 global", GEMMA3, "gemma3-270m"),
    FamilySpec("mistral", "Mistral", "Llama + sliding-window attention on every layer", MISTRAL, "mistral-7b"),
    FamilySpec("mixtral", "Mixtral", "Mistral + 8 experts, 2 per token", MIXTRAL, "mixtral-8x7b",
               lora_names=MIXTRAL_LORA_NAMES),
    FamilySpec("olmo2", "OLMo 2", "norm on each branch's output only, QK-norm over the whole projection", OLMO2,
               "olmo2-1b"),
    FamilySpec("olmo3", "OLMo 3", "OLMo 2 + sliding windows on 3 of 4 layers", OLMO3, "olmo3-7b"),
)}

# Views of the specs, by the names the rest of the code reads.
FAMILIES = {key: spec.parts for key, spec in FAMILY_SPECS.items()}  # what each family changes (ModelConfig keys)
TITLES = {key: spec.title for key, spec in FAMILY_SPECS.items()}
WHAT_IT_CHANGES = {key: spec.changes for key, spec in FAMILY_SPECS.items()}  # README and the presets table
SMALLEST = {key: spec.smallest for key, spec in FAMILY_SPECS.items()}


LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}

# The one table of presets: each lists what differs from the book's GPT_CONFIG_124M (config.py), so GPT-2's
# sizes are three numbers, and the others the sizes of each model's published config.json.
PRESETS = {
    "gpt2-small": {**GPT2, "emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium": {**GPT2, "emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large": {**GPT2, "emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl": {**GPT2, "emb_dim": 1600, "n_layers": 48, "n_heads": 25},
    "gpt1": {**FAMILIES["gpt1"], "vocab_size": 40478, "context_length": 512, "emb_dim": 768, "n_heads": 12,
             "n_layers": 12, "qkv_bias": True, "drop_rate": 0.1, "tie_weights": True},
    "llama-3.2-1b": {**LLAMA, "vocab_size": 128256, "context_length": 131072, "emb_dim": 2048, "n_heads": 32,
                     "n_kv_heads": 8, "n_layers": 16, "hidden_dim": 8192, "rope_theta": 500000.0,
                     "rope_scaling": LLAMA3_ROPE, "tie_weights": True},
    "llama-3.2-3b": {**LLAMA, "vocab_size": 128256, "context_length": 131072, "emb_dim": 3072, "n_heads": 24,
                     "n_kv_heads": 8, "n_layers": 28, "hidden_dim": 8192, "rope_theta": 500000.0,
                     "rope_scaling": LLAMA3_ROPE, "tie_weights": True},
    "llama-3.1-8b": {**LLAMA, "vocab_size": 128256, "context_length": 131072, "emb_dim": 4096, "n_heads": 32,
                     "n_kv_heads": 8, "n_layers": 32, "hidden_dim": 14336, "rope_theta": 500000.0,
                     "rope_scaling": {**LLAMA3_ROPE, "factor": 8.0}},
    "qwen3-0.6b": {**QWEN3, "vocab_size": 151936, "context_length": 40960, "emb_dim": 1024, "n_heads": 16,
                   "n_kv_heads": 8, "head_dim": 128, "n_layers": 28, "hidden_dim": 3072, "rope_theta": 1e6,
                   "tie_weights": True},
    "qwen3-1.7b": {**QWEN3, "vocab_size": 151936, "context_length": 40960, "emb_dim": 2048, "n_heads": 16,
                   "n_kv_heads": 8, "head_dim": 128, "n_layers": 28, "hidden_dim": 6144, "rope_theta": 1e6,
                   "tie_weights": True},
    "qwen3-4b": {**QWEN3, "vocab_size": 151936, "context_length": 40960, "emb_dim": 2560, "n_heads": 32,
                 "n_kv_heads": 8, "head_dim": 128, "n_layers": 36, "hidden_dim": 9728, "rope_theta": 1e6,
                 "tie_weights": True},
    "qwen3-8b": {**QWEN3, "vocab_size": 151936, "context_length": 40960, "emb_dim": 4096, "n_heads": 32,
                 "n_kv_heads": 8, "head_dim": 128, "n_layers": 36, "hidden_dim": 12288, "rope_theta": 1e6},
    "qwen3-30b-a3b": {**QWEN3_MOE, "vocab_size": 151936, "context_length": 40960, "emb_dim": 2048,
                      "n_heads": 32, "n_kv_heads": 4, "head_dim": 128, "n_layers": 48, "hidden_dim": 6144,
                      "moe_hidden_dim": 768, "n_experts": 128, "n_experts_per_token": 8, "rope_theta": 1e6,
                      "router_aux_loss_coef": 0.001},
    "gemma3-270m": {**GEMMA3, "vocab_size": 262144, "context_length": 32768, "emb_dim": 640,
                    "n_heads": 4, "n_kv_heads": 1, "head_dim": 256, "n_layers": 18, "hidden_dim": 2048,
                    "attn_scale": 256 ** -0.5, "sliding_window": 512, "full_every": 6,
                    "rope_theta": 1e6, "local_rope_theta": 1e4, "tie_weights": True},
    "gemma3-1b": {**GEMMA3, "vocab_size": 262144, "context_length": 32768, "emb_dim": 1152,
                  "n_heads": 4, "n_kv_heads": 1, "head_dim": 256, "n_layers": 26, "hidden_dim": 6912,
                  "attn_scale": 256 ** -0.5, "sliding_window": 512, "full_every": 6,
                  "rope_theta": 1e6, "local_rope_theta": 1e4, "tie_weights": True},
    "mistral-7b": {**MISTRAL, "vocab_size": 32000, "context_length": 32768, "emb_dim": 4096,
                   "n_heads": 32, "n_kv_heads": 8, "n_layers": 32, "hidden_dim": 14336, "rope_theta": 10000.0,
                   "sliding_window": 4096},
    "mixtral-8x7b": {**MIXTRAL, "vocab_size": 32000, "context_length": 32768, "emb_dim": 4096,
                     "n_heads": 32, "n_kv_heads": 8, "n_layers": 32, "hidden_dim": 14336, "moe_hidden_dim": 14336,
                     "n_experts": 8, "n_experts_per_token": 2, "rope_theta": 1e6, "router_aux_loss_coef": 0.02},
    "olmo2-1b": {**OLMO2, "vocab_size": 100352, "context_length": 4096, "emb_dim": 2048, "n_heads": 16,
                 "n_layers": 16, "hidden_dim": 8192, "rope_theta": 500000.0},
    "olmo3-7b": {**OLMO3, "vocab_size": 100278, "context_length": 65536, "emb_dim": 4096,
                 "n_heads": 32, "n_layers": 32, "hidden_dim": 11008, "rope_theta": 500000.0,
                 "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
                                  "attention_factor": 1.2079441541679836, "beta_fast": 32.0, "beta_slow": 1.0},
                 "local_rope_theta": 500000.0, "sliding_window": 4096, "full_every": 4},
}
