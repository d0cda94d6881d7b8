"""The test answers of a fine-tuned model: the book's one at a time, or in batches with the KV cache.

Unlike ``responses.py`` (section 7.7: ``generate`` on one entry, the whole sequence through the model for every
new token): ``answer_all`` answers ``BATCH`` prompts at once with ``generate_batch`` (left-padded, the KV cache
masking the padding, each row stopping at its own end token), which in fp32 gives each prompt the greedy answer
it gets alone; ``book=True`` runs the book's ``generate`` instead. The answers are stored in each example under
``model_response`` and the first three printed as the book prints them.

>>> from .prompt_styles import PromptStyle
>>> prompt_of({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
...           PromptStyle("phi3"))
'<|user|>\\nHi'
"""

from __future__ import annotations

import contextlib

import torch

from .previous_chapters import generate, generate_batch
from .responses import RESPONSE_KEY, print_response
from .sft_data import as_entry

BATCH = 16  # prompts answered at once


def prompt_of(example, style) -> str:
    """What the model is asked: the style's prompt of an entry, or a conversation up to its last assistant
    message, rendered with the generation prompt."""
    if style.name != "chat-template":
        return style.prompt(as_entry(example))
    messages = example["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return style.render_chat(messages[:last], add_generation_prompt=True)


def answer_all(examples, model, tokenizer, style, device, max_new_tokens=256, book=False, eos_id=None,
               amp_dtype=None):
    """Each example's answer under ``RESPONSE_KEY`` (greedy, at most ``max_new_tokens``); returns ``examples``."""
    model.eval()
    stops = tokenizer.stop_ids() if style.name == "chat-template" and hasattr(tokenizer, "stop_ids") else eos_id
    prompts = [prompt_of(example, style) for example in examples]
    ids = [tokenizer.encode(p, allowed_special="all") for p in prompts]
    cast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with cast:
        if book:
            new = [_one_by_one(model, row, max_new_tokens, stops, device) for row in ids]
        else:
            new = []
            for start in range(0, len(ids), BATCH):
                batch = ids[start:start + BATCH]
                room = model.context_length - max(len(row) for row in batch)  # the book's generate slides instead
                new += generate_batch(model, batch, max(1, min(max_new_tokens, room)), eos_id=stops)
    for i, (example, prompt) in enumerate(zip(examples, prompts)):
        text = tokenizer.decode(ids[i] + new[i])
        example[RESPONSE_KEY] = (style.extract(text, prompt) if style.name != "chat-template"
                                 else tokenizer.decode(new[i]).strip())
        if i < 3 and "messages" not in example:
            print_response(example, example[RESPONSE_KEY])
    return examples


def _one_by_one(model, prompt_ids, max_new_tokens, eos_id, device) -> list[int]:
    """The book's ``generate`` of one prompt (section 7.7), the new ids only."""
    idx = torch.tensor([prompt_ids], device=device)
    out = generate(model=model, idx=idx, max_new_tokens=max_new_tokens, context_size=model.context_length,
                   eos_id=eos_id)
    return out[0, len(prompt_ids):].tolist()
