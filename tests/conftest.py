"""Shared fixtures and the tiny model config. Data comes from data/ or $LLMS_DATA_DIR (.ci/run sets ../shared/data).

Without the data files, the tests that need them are skipped with one line naming the file to place.
"""

import matplotlib
import pytest

from ch04_gpt.config import GPT_CONFIG_124M

matplotlib.use("Agg")

# The tiny GPT most tests build: fast to run, same code paths as GPT-124M.
TINY = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
        "drop_rate": 0.0}


def needs_data(load):
    """Call ``load()``; skip the test with the library's one-line message if a data file is missing."""
    from ch02_text.common import DataFileError

    try:
        return load()
    except DataFileError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def verdict_text():
    from ch02_text.common import read_data_text

    return needs_data(lambda: read_data_text("the-verdict.txt"))


@pytest.fixture(scope="session")
def gpt2_tok():
    from ch02_text.tokenizers import gpt2_tokenizer

    return needs_data(gpt2_tokenizer)
