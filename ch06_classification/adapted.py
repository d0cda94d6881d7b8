"""A classifier that trains LoRA adapters (appendix E) instead of its last block.

Unlike ``tail.make_classifier`` (chapter 6's trainable parts): the whole model stays frozen and only low-rank
adapters train, with the new head. ``--book`` runs the appendix itself: the book's ``LinearWithLoRA`` on every
linear layer, the new head's too, scaled by alpha (``APPENDIX_E``). The fast path puts ``AdaptedLinear`` layers
where ``--lora-targets`` names them and trains the new head whole, as PEFT's ``modules_to_save`` does for a
classification head. What a checkpoint keeps is ``trained_state``: the adapters and the head.

>>> from ch04_gpt.config import scaled_config
>>> model = GPTModel(scaled_config("gpt2-small", "gpt2", emb_dim=16, n_heads=2, n_layers=1, vocab_size=30,
...                                context_length=8))
>>> model.out_head = torch.nn.Linear(16, 2)
>>> adapt_classifier(model, LoRAConfig(rank=2, alpha=4, targets=("c_attn",)), book=False)
>>> sorted(trained_state(model))
['out_head.bias', 'out_head.weight', 'trf_blocks.0.att.qkv.adapters.c_attn.A', 'trf_blocks.0.att.qkv.adapters.c_attn.B']
"""

from __future__ import annotations

import torch  # noqa: F401 (the docstring's)

from ch02_text.errors import UserInputError

from .previous_chapters import (  # noqa: F401 (GPTModel: the docstring's)
    GPTModel, LoRAConfig, add_lora, replace_linear_with_lora,
)

APPENDIX_E = LoRAConfig(rank=16, alpha=16, targets=("all-linear", "head"), scale="book")  # the appendix's run


def adapt_classifier(model, config: LoRAConfig, book: bool) -> None:
    """Freeze ``model`` (a classifier, its new head in place) and add the adapters; the fast path's head trains."""
    if book:
        for param in model.parameters():
            param.requires_grad = False
        replace_linear_with_lora(model, rank=config.rank, alpha=config.alpha)
        return
    if {"head", "lm_head"} & set(config.targets):
        raise UserInputError("--lora-targets head: the classifier's new head trains whole (it is new, nothing to "
                             "adapt); leave head out")
    try:
        add_lora(model, config)
    except ValueError as exc:
        raise UserInputError(f"--lora-targets: {exc}") from None
    model.out_head.requires_grad_(True)


def trained_state(model) -> dict:
    """What a LoRA classifier's checkpoint holds: the tensors that train (the adapters, the fast path's head)
    and the new head whatever it is (appendix E adapts the head: its frozen weights are new too)."""
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: t for name, t in model.state_dict().items() if name in trained or name.startswith("out_head.")}
