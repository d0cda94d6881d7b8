"""Tiny random models of every open-weight family, written by transformers: the helpers the Hugging Face tests
share (tests/test_ch05_hf_weights.py, tests/test_ch05_hf_legacy_configs.py, ...). Every parameter is drawn
at random, norms and routers too: default inits (norms at 1, Gemma's at 0) would hide bugs."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the parity tests")
tokenizers = pytest.importorskip("tokenizers")

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
WINDOW = dict(sliding_window=4, layer_types=["sliding_attention", "sliding_attention", "full_attention"])
LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
YARN = {"rope_type": "yarn", "rope_theta": 500000.0, "factor": 4.0, "original_max_position_embeddings": 16,
        "beta_fast": 32.0, "beta_slow": 1.0}
CASES = {  # case: (config class, causal-LM class, settings beyond COMMON)
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(rope_parameters=LLAMA3, attention_bias=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=16, tie_word_embeddings=True,
                                                     rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(num_experts=4, num_experts_per_tok=2,
                                                                moe_intermediate_size=16, norm_topk_prob=True,
                                                                mlp_only_layers=[1])),
    "qwen3_moe_unnormalised": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                               dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                    norm_topk_prob=False)),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM",
                    dict(head_dim=16, query_pre_attn_scalar=24, num_key_value_heads=1, tie_word_embeddings=True,
                         rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
                         **WINDOW)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=4)),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(num_local_experts=4, num_experts_per_tok=2)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict()),
    "olmo3": ("Olmo3Config", "Olmo3ForCausalLM",
              dict(rope_parameters={"full_attention": YARN,
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 500000.0}},
                   **WINDOW)),
}
IDS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))


def randomise(model):
    """Every parameter drawn at random (in place); returns the model in eval mode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if "norm" in name else 0.15)
    return model.eval()


def tiny_model(config_cls: str, model_cls: str, settings: dict, seed=0):
    """A transformers causal LM of ``COMMON`` sizes with ``settings`` on top, every parameter random."""
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**{**COMMON, **settings})
    return randomise(getattr(transformers, model_cls)(config))


def tiny_hf(case, seed=0):
    """The tiny model of one of ``CASES``."""
    return tiny_model(*CASES[case], seed=seed)


# -- a chat model folder: a trained byte-level BPE, a ChatML template, a tiny Qwen3 --------------------------
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|im_end|>", "<|endoftext|>", "<|im_start|>"]  # ids 0, 1, 2
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def llama3_style_tokenizer():
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = ["Every effort moves you, café déjà vu, 東京 雨 です 123 4567\n" * 3, "It's a test of the tokenizer.\n"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def chat_folder(folder):
    """A tiny random Qwen3 with a trained tokenizer and a ChatML template, as save_pretrained writes them."""
    tok = llama3_style_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    config = transformers.Qwen3Config(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                      max_position_embeddings=256, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(config)
    model.save_pretrained(folder)
    return folder
