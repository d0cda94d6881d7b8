"""The model the chapter fine-tunes (section 6.4, listing 6.6): GPT-2 small where its weights are found,
else chapter 5's model, else the book's GPT-124M freshly initialised.

Unlike the book, which downloads OpenAI's TensorFlow checkpoint: GPT-2's ``model.safetensors`` from Hugging
Face (``ch05_pretraining/gpt2_weights.py`` reads it), found like every data file
(``data/gpt2-small-124M.safetensors`` or ``$LLMS_DATA_DIR``) and never downloaded. Without it every step
still runs, from the ``model.pth`` that chapter 5's walk-through saves, or else from ``BASE_CONFIG``'s GPT
freshly initialised under ``torch.manual_seed(123)``; the numbers are then not the book's, and the
description says which model it is.

>>> from ch06_classification.previous_chapters import GPT_CONFIG_124M
>>> tiny = {**GPT_CONFIG_124M, "drop_rate": 0.0, "qkv_bias": True, **TINY_SIZES}
>>> start = starting_model(tiny)                          # no weights given: a fresh model
>>> start.source, start.model.cfg.n_layers, start.book_numbers
('fresh', 2, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ch02_text.data_files import find_local_data_file
from ch02_text.errors import UserInputError

from .dataset import PAD_TOKEN_ID
from .previous_chapters import CheckpointError, GPTModel, load_gpt2_safetensors, load_model_file

GPT2_WEIGHTS = "gpt2-small-124M.safetensors"  # GPT-2 small's model.safetensors, placed in data/
CH05_MODEL = "model.pth"  # the state dict `python -m ch05_pretraining` saves into its --out-dir
TINY_SIZES = {"emb_dim": 32, "n_layers": 2, "n_heads": 4, "context_length": 128}  # --tiny: the chapter in seconds
IMPL = "book"  # the book's own classes, as chapter 5's walk-through builds them


@dataclass
class StartingModel:
    """A model to fine-tune, where it came from ("gpt2", "chapter5" or "fresh"), and that said in words."""

    model: GPTModel
    source: str
    description: str

    @property
    def book_numbers(self) -> bool:
        """Only GPT-2's weights give the values the book prints."""
        return self.source == "gpt2"


def gpt2_weights_path(option=None, name=GPT2_WEIGHTS) -> Path | None:
    """``--gpt2-weights`` if given, else ``data/<name>`` where found (None: nowhere); ``name``: GPT-2 small's
    ``gpt2-small-124M.safetensors`` here, chapter 7 asks for ``gpt2-medium-355M.safetensors``."""
    return Path(option) if option else find_local_data_file(name)


def starting_model(base_config, gpt2_path=None, ch05_path=None, device="cpu", n_heads=None) -> StartingModel:
    """GPT-2's weights from ``gpt2_path``, else chapter 5's model at ``ch05_path`` if that file exists, else
    ``base_config``'s GPT freshly initialised under ``torch.manual_seed(123)``; dropout off (the book's
    ``drop_rate`` 0.0) in each. ``n_heads``: chapter 5's head count where its width is no GPT-2 preset's."""
    if gpt2_path is not None:
        model = load_gpt2_safetensors(gpt2_path, impl=IMPL, device=device)
        return StartingModel(model, "gpt2", f"GPT-2's pretrained weights ({gpt2_path})")
    if ch05_path is not None and Path(ch05_path).is_file():
        return StartingModel(chapter5_model(ch05_path, device, n_heads), "chapter5",
                             f"chapter 5's model ({ch05_path}), not GPT-2: the values below are not the book's")
    torch.manual_seed(123)
    model = GPTModel(base_config, impl=IMPL).to(device)
    cfg = model.cfg
    return StartingModel(model, "fresh", f"a GPT of {cfg.n_layers} layers of width {cfg.emb_dim} freshly "
                                         "initialised under torch.manual_seed(123), nothing pretrained: "
                                         "the values below are not the book's")


def chapter5_model(path, device="cpu", n_heads=None) -> GPTModel:
    """The model chapter 5's walk-through saved (a ``GPTModel`` state dict), rebuilt with dropout off."""
    loaded, _ = load_model_file(path, device, n_heads)
    if not isinstance(loaded, GPTModel) or loaded.cfg.vocab_size <= PAD_TOKEN_ID:
        raise CheckpointError(f"'{path}' is not a GPT over GPT-2's 50,257 tokens: give the model.pth that "
                              "python -m ch05_pretraining saves, or remove it to start from a fresh model")
    model = GPTModel(loaded.cfg.replace(drop_rate=0.0), impl=IMPL)
    model.load_state_dict(loaded.state_dict())
    return model.to(device)


def check_fits(max_length: int, model) -> None:
    """The book's assert (section 6.4), as one error line: the padded texts must fit the model's context."""
    if max_length > model.context_length:
        raise UserInputError(f"Dataset length {max_length} exceeds the model's context length "
                             f"{model.context_length}: build the datasets with max_length={model.context_length}")
