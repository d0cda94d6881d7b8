"""How a conversation becomes a prompt: a chat template, its special tokens, the ids that end a reply.

Unlike ``ch02_text.hf_tokenizer.render_chat`` (rendering one template): where the template comes from. A model
folder's tokenizer carries one (``tokenizer_config.json``); a checkpoint of chapter 7's instruction tuning keeps
the prompt style it was trained in as one (its ``chat`` record), so a GPT-2 tuned on the Alpaca prompt is asked
in it. ``generate --chat`` and chapter 7's local judge use it.

>>> from ch02_text.tokenizers import gpt2_tokenizer
>>> ChatFormat.of(gpt2_tokenizer()) is None      # GPT-2's tokenizer has no chat template
True
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class ChatFormat:
    """How a conversation becomes a prompt: a Jinja template, its special tokens, the ids that end a reply."""

    template: str
    bos: str
    eos: str
    stop_ids: list

    @classmethod
    def of(cls, tokenizer, record=None):
        """A checkpoint's prompt style (``record``: chapter 7's ``chat``), else the tokenizer's chat template,
        else None."""
        stops = tokenizer.stop_ids() if hasattr(tokenizer, "stop_ids") else [tokenizer.eot_token]
        if record:
            return cls(record["chat_template"], "", record["eos_token"], stops)
        if getattr(tokenizer, "chat_template", None):
            return cls(tokenizer.chat_template, tokenizer.bos_token or "", tokenizer.eos_token or "", stops)
        return None


def checkpoint_chat(path):
    """The ``chat`` record of a checkpoint (chapter 7's prompt style), read without loading its tensors."""
    if not path:
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a bare state dict of the old format: no record
        return None
    return ckpt.get("chat") if isinstance(ckpt, dict) else None
