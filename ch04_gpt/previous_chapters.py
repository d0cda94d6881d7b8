"""What chapter 4 uses from chapters 2 and 3, re-exported (no copies)."""

from ch02_text.cli import chapter_parser, run_exercises, run_walkthrough  # noqa: F401
from ch02_text.common import UserInputError, bf16_supported, save_figure  # noqa: F401
from ch02_text.tokenizers import gpt2_tokenizer  # noqa: F401
from ch03_attention.attention import MultiHeadAttention  # noqa: F401
from ch03_attention.fast_attention import FastMultiHeadAttention  # noqa: F401
from ch03_attention.fast_attention import causal_mask  # noqa: F401
