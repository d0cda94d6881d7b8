"""Shared fixtures. Data comes from data/ or $LLMS_DATA_DIR (.ci/run sets ../shared/data)."""

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def verdict_text():
    from ch02_text.common import read_data_text

    return read_data_text("the-verdict.txt")


@pytest.fixture(scope="session")
def gpt2_tok():
    from ch02_text.tokenizers import gpt2_tokenizer

    return gpt2_tokenizer()
