"""What chapter 4 uses from chapters 2 and 3, re-exported (no copies).

Only book code: the shared infrastructure (ch02_text/common.py, ch02_text/cli.py) is imported from the
module that defines it."""

from ch02_text.tokenizers import gpt2_tokenizer  # noqa: F401
from ch03_attention.attention import CausalAttention, MultiHeadAttention, check_heads  # noqa: F401
from ch03_attention.fast_attention import FastMultiHeadAttention, LayerKVCache, causal_mask, unpacked  # noqa: F401
