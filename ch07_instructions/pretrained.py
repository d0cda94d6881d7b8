"""The model chapter 7 fine-tunes (section 7.5, listing 7.7): GPT-2 medium (355M) where its weights are found.

Unlike chapter 6's ``pretrained.py``, whose choice it reuses (``starting_model``: GPT-2's weights, else chapter
5's model, else a fresh GPT under ``torch.manual_seed(123)``): the book moves up to GPT-2 medium, since the
124M model is too small for instruction fine-tuning to give reasonable answers. Its ``model.safetensors`` is
looked for as ``data/gpt2-medium-355M.safetensors`` (or ``--gpt2-weights``) and never downloaded; without it
one line says which file to place where, and the run goes on from chapter 5's model or else a fresh GPT-124M
(the fallback of chapter 6, whose size a CPU trains in reasonable time), whose numbers are not the book's.

>>> from ch07_instructions.previous_chapters import GPT_CONFIG_124M, TINY_SIZES
>>> tiny = {**GPT_CONFIG_124M, "drop_rate": 0.0, "qkv_bias": True, **TINY_SIZES}
>>> start = choose_starting_model(tiny, tiny, tiny=True)   # --tiny: a fresh tiny GPT, no weights looked for
>>> start.source, start.model.cfg.n_layers
('fresh', 2)
"""

from __future__ import annotations

from pathlib import Path

from .previous_chapters import CH05_MODEL, StartingModel, gpt2_weights_path, starting_model

GPT2_WEIGHTS = "gpt2-medium-355M.safetensors"  # GPT-2 medium's model.safetensors, placed in data/
MISSING_WEIGHTS = ("GPT-2 medium weights not found: download model.safetensors from "
                   f"huggingface.co/openai-community/gpt2-medium and save it as data/{GPT2_WEIGHTS} "
                   "(or in $LLMS_DATA_DIR)")


def choose_starting_model(base_config, fallback_config, gpt2_option=None, out_dir="checkpoints", device="cpu",
                          tiny=False) -> StartingModel:
    """GPT-2 medium's weights (``--gpt2-weights`` or ``data/gpt2-medium-355M.safetensors``) as the book loads
    them, else the ``MISSING_WEIGHTS`` line and chapter 5's ``model.pth`` in ``out_dir`` if there, else
    ``fallback_config``'s GPT freshly initialised; ``tiny``: ``base_config``'s fresh GPT, no weights looked for."""
    if tiny:
        return starting_model(base_config, device=device)
    gpt2_path = gpt2_weights_path(gpt2_option, GPT2_WEIGHTS)
    if gpt2_path is not None:
        return starting_model(base_config, gpt2_path, device=device)
    print(MISSING_WEIGHTS)
    return starting_model(fallback_config, None, Path(out_dir) / CH05_MODEL, device=device)

