"""What chapter 7 uses from chapters 2-6, re-exported (no copies).

Only book code: the shared infrastructure (chapter 2's ground floor: errors, data_files, safe_files,
hardware, seeds, figures, cli, ...) is imported from the module that defines it."""

from ch02_text.tokenizers import gpt2_tokenizer  # noqa: F401
from ch04_gpt.config import GPT_CONFIG_124M  # noqa: F401
from ch05_pretraining.book_loop import plot_losses, train_model_simple  # noqa: F401
from ch05_pretraining.loss import calc_loss_loader  # noqa: F401
from ch05_pretraining.sampling import generate  # noqa: F401
from ch05_pretraining.tokens import text_to_token_ids, token_ids_to_text  # noqa: F401
from ch06_classification.tail import EpochSteps  # noqa: F401
from ch06_classification.pretrained import (  # noqa: F401
    CH05_MODEL, TINY_SIZES, StartingModel, gpt2_weights_path, starting_model,
)
from ch02_text.hf_tokenizer import render_chat  # noqa: F401
from ch04_gpt.generate import generate_batch  # noqa: F401
from ch04_gpt.model import GPTModel  # noqa: F401
from ch06_classification.labelled_data import pad_id  # noqa: F401
from ch05_pretraining.book_loop import generate_and_print_sample  # noqa: F401
from ch05_pretraining.sampling import make_sampler  # noqa: F401
from ch04_gpt.row_cache import RowKVCache  # noqa: F401
