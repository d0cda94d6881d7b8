"""Architecture families and real-size presets, as data: what each family changes, and each model's sizes.

Unlike the book, which has one GPT: every model here is the same ``GPTModel`` built from named parts
(see ``config.ModelConfig``). A family states only what differs from GPT-2; a preset adds the sizes of
one published ``config.json``.

>>> FAMILIES["qwen3"]["qk_norm"], PRESETS["qwen3-0.6b"]["head_dim"]
('head', 128)
"""

from __future__ import annotations

GPT2 = {"family": "gpt2"}  # the book's defaults (see ModelConfig): learned positions, LayerNorm, GELU MLP, biases
LLAMA = {"family": "llama", "positions": "rope", "norm": "rmsnorm", "ff": "swiglu", "ff_bias": False,
         "attn_bias": False, "qkv_bias": False, "norm_eps": 1e-5, "drop_rate": 0.0}
QWEN3 = {**LLAMA, "family": "qwen3", "qk_norm": "head", "norm_eps": 1e-6}
OLMO2 = {**LLAMA, "family": "olmo2", "norm": "rmsnorm_olmo", "block": "post_branch", "qk_norm": "proj",
         "norm_eps": 1e-6}

# What each family changes relative to GPT-2 (the keys of ModelConfig).
FAMILIES = {
    "gpt2": GPT2,
    "gpt1": {"family": "gpt1", "block": "post"},
    "llama": LLAMA,
    "qwen3": QWEN3,
    "qwen3-moe": {**QWEN3, "family": "qwen3-moe", "ff": "moe", "norm_topk_prob": True},
    "gemma3": {**LLAMA, "family": "gemma3", "norm": "rmsnorm_gemma", "block": "sandwich", "ff": "geglu",
               "qk_norm": "head", "emb_scale": True, "norm_eps": 1e-6},
    "mistral": {**LLAMA, "family": "mistral"},
    "mixtral": {**LLAMA, "family": "mixtral", "ff": "moe", "norm_topk_prob": True},
    "olmo2": OLMO2,
    "olmo3": {**OLMO2, "family": "olmo3"},
}
TITLES = {"gpt2": "GPT-2 (pre-LN)", "gpt1": "GPT-1 (post-LN)", "llama": "Llama 3", "qwen3": "Qwen3",
          "qwen3-moe": "Qwen3-MoE", "gemma3": "Gemma 3", "mistral": "Mistral", "mixtral": "Mixtral", "olmo2": "OLMo 2",
          "olmo3": "OLMo 3"}
# One line per family: what it adds (README and the presets table say the same).
WHAT_IT_CHANGES = {
    "gpt2": "learned positions, LayerNorm before each branch, GELU MLP, biases",
    "gpt1": "LayerNorm after each residual addition (post-norm)",
    "llama": "RoPE, RMSNorm, SwiGLU, no biases, grouped-query attention",
    "qwen3": "Llama + RMSNorm on each head's queries and keys (QK-norm)",
    "qwen3-moe": "Qwen3 + mixture of experts in place of the MLP",
    "gemma3": "GeGLU, norms before and after each branch, (1 + w) RMSNorm, scaled embeddings, 5 local : 1 global",
    "mistral": "Llama + sliding-window attention on every layer",
    "mixtral": "Mistral + 8 experts, 2 per token",
    "olmo2": "norm on each branch's output only, QK-norm over the whole projection",
    "olmo3": "OLMo 2 + sliding windows on 3 of 4 layers",
}


LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}

# Sizes from each model's published config.json.
PRESETS = {
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
    "qwen3-30b-a3b": {**FAMILIES["qwen3-moe"], "vocab_size": 151936, "context_length": 40960, "emb_dim": 2048,
                      "n_heads": 32, "n_kv_heads": 4, "head_dim": 128, "n_layers": 48, "hidden_dim": 6144,
                      "moe_hidden_dim": 768, "n_experts": 128, "n_experts_per_token": 8, "rope_theta": 1e6,
                      "router_aux_loss_coef": 0.001},
    "gemma3-270m": {**FAMILIES["gemma3"], "vocab_size": 262144, "context_length": 32768, "emb_dim": 640,
                    "n_heads": 4, "n_kv_heads": 1, "head_dim": 256, "n_layers": 18, "hidden_dim": 2048,
                    "attn_scale": 256 ** -0.5, "sliding_window": 512, "full_every": 6,
                    "rope_theta": 1e6, "local_rope_theta": 1e4, "tie_weights": True},
    "gemma3-1b": {**FAMILIES["gemma3"], "vocab_size": 262144, "context_length": 32768, "emb_dim": 1152,
                  "n_heads": 4, "n_kv_heads": 1, "head_dim": 256, "n_layers": 26, "hidden_dim": 6912,
                  "attn_scale": 256 ** -0.5, "sliding_window": 512, "full_every": 6,
                  "rope_theta": 1e6, "local_rope_theta": 1e4, "tie_weights": True},
    "mistral-7b": {**FAMILIES["mistral"], "vocab_size": 32000, "context_length": 32768, "emb_dim": 4096,
                   "n_heads": 32, "n_kv_heads": 8, "n_layers": 32, "hidden_dim": 14336, "rope_theta": 10000.0,
                   "sliding_window": 4096},
    "mixtral-8x7b": {**FAMILIES["mixtral"], "vocab_size": 32000, "context_length": 32768, "emb_dim": 4096,
                     "n_heads": 32, "n_kv_heads": 8, "n_layers": 32, "hidden_dim": 14336, "moe_hidden_dim": 14336,
                     "n_experts": 8, "n_experts_per_token": 2, "rope_theta": 1e6, "router_aux_loss_coef": 0.02},
    "olmo2-1b": {**OLMO2, "vocab_size": 100352, "context_length": 4096, "emb_dim": 2048, "n_heads": 16,
                 "n_layers": 16, "hidden_dim": 8192, "rope_theta": 500000.0},
    "olmo3-7b": {**FAMILIES["olmo3"], "vocab_size": 100278, "context_length": 65536, "emb_dim": 4096,
                 "n_heads": 32, "n_layers": 32, "hidden_dim": 11008, "rope_theta": 500000.0,
                 "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
                                  "attention_factor": 1.2079441541679836, "beta_fast": 32.0, "beta_slow": 1.0},
                 "local_rope_theta": 500000.0, "sliding_window": 4096, "full_every": 4},
}
# The smallest preset of each family: what train --arch starts from.
SMALLEST = {"gpt2": "gpt2-small", "gpt1": "gpt1", "llama": "llama-3.2-1b", "qwen3": "qwen3-0.6b",
            "qwen3-moe": "qwen3-30b-a3b", "gemma3": "gemma3-270m", "mistral": "mistral-7b",
            "mixtral": "mixtral-8x7b", "olmo2": "olmo2-1b", "olmo3": "olmo3-7b"}
