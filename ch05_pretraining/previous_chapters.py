"""What chapter 5 uses from chapters 2-4, re-exported (no copies)."""

from ch02_text.common import (  # noqa: F401
    DataFileError, UserInputError, add_device_argument, chapter_parser, atomic_write_bytes, cli_errors,
    find_data_file, find_local_data_file, pick_device, read_data_text, read_text_file, run_walkthrough, save_figure,
    set_seed,
)
from ch02_text.dataloader import GPTDatasetV1, create_dataloader_v1  # noqa: F401
from ch02_text.tokenizers import gpt2_tokenizer  # noqa: F401
from ch03_attention.fast_attention import book_to_fast_state_dict, fast_to_book_state_dict  # noqa: F401
from ch04_gpt.config import (  # noqa: F401
    GPT_CONFIG_124M, MODEL_PRESETS, estimate, model_config, validate_config,
)
from ch04_gpt.generate import decode, generate_text_simple  # noqa: F401
from ch04_gpt.model import GPTModel  # noqa: F401
