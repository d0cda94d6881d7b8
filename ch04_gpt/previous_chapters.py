"""What chapter 4 uses from chapters 2 and 3, re-exported (no copies)."""

from ch02_text.cli import (  # noqa: F401
    CliParser, add_device_argument, chapter_parser, cli_errors, fraction, finite_float, nonneg_int,
    positive_float, positive_int, probability_mass, run_exercises, run_walkthrough,
)
from ch02_text.common import (  # noqa: F401
    DataFileError, UserInputError, pick_device, read_data_text, save_figure, set_seed,
)
from ch02_text.dataloader import GPTDatasetV1, create_dataloader_v1  # noqa: F401
from ch02_text.tokenizers import gpt2_tokenizer  # noqa: F401
from ch03_attention.attention import MultiHeadAttention, check_context_length  # noqa: F401
from ch03_attention.fast_attention import (  # noqa: F401
    FastMultiHeadAttention, book_to_fast_state_dict, fast_to_book_state_dict,
)
