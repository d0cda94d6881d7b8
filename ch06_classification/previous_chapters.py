"""What chapter 6 uses from chapters 2-5, re-exported (no copies).

Only book code: the shared infrastructure (chapter 2's ground floor: errors, data_files, safe_files,
hardware, seeds, figures, cli, ...) is imported from the module that defines it."""

from ch02_text.tokenizers import gpt2_tokenizer  # noqa: F401
from ch04_gpt.config import GPT_CONFIG_124M  # noqa: F401
from ch04_gpt.generate import generate_text_simple  # noqa: F401
from ch04_gpt.model import GPTModel  # noqa: F401
from ch05_pretraining.book_loop import format_eval_line, plot_over_epochs  # noqa: F401
from ch05_pretraining.checkpoint import CheckpointError, load_model_file  # noqa: F401
from ch05_pretraining.gpt2_weights import DOWNLOAD_HINT, load_gpt2_safetensors  # noqa: F401
from ch05_pretraining.loss import batches_to_use, calc_loss_loader, evaluate_model  # noqa: F401
from ch05_pretraining.tokens import text_to_token_ids, token_ids_to_text  # noqa: F401
from ch04_gpt.lora import LoRAConfig, add_lora, replace_linear_with_lora  # noqa: F401
