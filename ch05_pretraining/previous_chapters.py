"""What chapter 5 uses from chapters 2-4, re-exported (no copies).

Only book code: the shared infrastructure (chapter 2's ground floor: errors, data_files, safe_files,
hardware, seeds, figures, cli, ...) is imported from the module that defines it."""

from ch02_text.bpe import BPETokenizer, read_json_file  # noqa: F401
from ch02_text.dataloader import create_dataloader_v1  # noqa: F401
from ch02_text.hf_tokenizer import HFTokenizer, render_chat  # noqa: F401
from ch02_text.tokenizer_choice import (  # noqa: F401
    CHOICES as TOKENIZER_CHOICES, choose_tokenizer, describe as describe_tokenizer, names_tokenizer,
    token_bytes, tokenizer_from_dict, tokenizer_to_dict,
)
from ch02_text.tokenizers import SPECIAL_TOKENS, gpt2_tokenizer  # noqa: F401
from ch03_attention.attention import CausalAttention, MultiHeadAttention  # noqa: F401
from ch03_attention.generator_dropout import dropout_generator, use_generator_dropout  # noqa: F401
from ch03_attention.fast_attention import book_to_fast_state_dict, fast_to_book_state_dict  # noqa: F401
from ch03_attention.prefetched_dropout import book_masks, use_prefetched_dropout  # noqa: F401
from ch04_gpt.attention_maps import ATTENTION_CLASSES, forward_with_attention  # noqa: F401
from ch04_gpt.config import (  # noqa: F401
    ALL_PRESETS, GPT_CONFIG_124M, MODEL_PRESETS, ModelConfig, estimate, model_config, preset_heads, preset_values,
    scaled_config, validate_config,
)
from ch04_gpt.families import FAMILIES, FAMILY_SPECS, SMALLEST, TITLES, WHAT_IT_CHANGES  # noqa: F401
from ch04_gpt.feed_forward import MixtureOfExperts  # noqa: F401
from ch04_gpt.generate import decode_dtype, generate_batch, generate_loop, generate_text_simple  # noqa: F401
from ch04_gpt.layers import FeedForward  # noqa: F401
from ch04_gpt.initial_weights import INITS, init_family_weights, init_gpt2_weights, initialise  # noqa: F401
from ch04_gpt.model import GPTModel, TransformerBlock  # noqa: F401
from ch04_gpt.packed_linear import pack_for_decoding  # noqa: F401
from ch04_gpt.lora import (  # noqa: F401
    GROUPS as LORA_GROUPS, SCALES as LORA_SCALES, LoRAConfig, adaptable_linears, adapted_layers, adapter_state_dict,
    adapters_off,
    add_lora, lora_target_names, lora_targets, merge_and_unload,
)
