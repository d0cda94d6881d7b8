"""Your own instruction data: the book's JSON, JSON lines, or chat conversations, encoded in a prompt style.

Unlike ``instruction_data.py`` and ``collate.py`` (the book's file, its entries and its collate function): a
reader's file in any of the forms instruction sets are published in, each example checked (one line naming its
index when it is not), encoded by a ``PromptStyle`` into ids and the positions that are targets, and batched by
``collate_examples``, which is the book's ``custom_collate_fn`` plus the prompt's targets set to -100 when they
are masked (Exercise 7.2).

>>> from ch02_text.tokenizers import gpt2_tokenizer
>>> from .prompt_styles import PromptStyle
>>> tok = gpt2_tokenizer()
>>> examples = [{"instruction": "Say hi.", "input": "", "output": "Hi."}]
>>> encoded = encode_examples(examples, PromptStyle("alpaca"), tok, mask_prompt=True)
>>> inputs, targets = collate_examples(encoded, 50256)
>>> tok.decode([t for t in targets[0].tolist() if t != -100])   # the answer and the end-of-text token
'\\n\\n### Response:\\nHi.<|endoftext|>'
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ch02_text.errors import UserInputError

from .collate import IGNORE_INDEX, padded_entry
from .prompt_styles import ROLES, PromptStyle


def read_examples(path) -> list[dict]:
    """The examples of a JSON list or a JSON-lines file: entries (``instruction``, ``output``, optional
    ``input``) or conversations (``messages``: ``role`` and ``content`` each); the first bad one is one line."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--data '{path}' does not exist: give a JSON or JSON-lines file of instructions")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = _json_lines(text, path)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise UserInputError(f"--data '{path}' holds no examples: give a JSON list (or JSON lines) of entries with "
                             "instruction and output, or of conversations with messages")
    return [_checked(example, i, path) for i, example in enumerate(data)]


def _json_lines(text, path) -> list:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--data '{path}' is neither JSON nor JSON lines: line {number}: {exc.msg}") from None
    return rows


def _checked(example, index, path) -> dict:
    where = f"--data '{path}': example {index}"
    if not isinstance(example, dict):
        raise UserInputError(f"{where} is not an object: give entries or conversations")
    if "messages" in example:
        messages = example["messages"]
        if not isinstance(messages, list) or not messages:
            raise UserInputError(f"{where} has empty messages: give at least a user and an assistant message")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES or \
                    not isinstance(message.get("content"), str):
                raise UserInputError(f"{where} has a message {json.dumps(message)[:80]} that is not a role ("
                                     f"{', '.join(ROLES)}) with a text content")
        if not any(m["role"] == "assistant" for m in messages):
            raise UserInputError(f"{where} has no assistant message: there is nothing to learn from it")
        return {"messages": messages}
    missing = [field for field in ("instruction", "output") if not isinstance(example.get(field), str)]
    if missing:
        raise UserInputError(f"{where} has no {missing[0]} text: give instruction and output (and optionally "
                             "input), or messages")
    return {"instruction": example["instruction"], "input": example.get("input") or "", "output": example["output"]}


def as_entry(example, index=0) -> dict:
    """A conversation of one user and one assistant message as the book's entry (alpaca and phi3 are
    single-turn styles); an entry as it is."""
    if "messages" not in example:
        return example
    roles = [m["role"] for m in example["messages"]]
    if roles != ["user", "assistant"]:
        raise UserInputError(f"example {index} is a conversation of {', '.join(roles)}: the alpaca and phi3 styles "
                             "take one user and one assistant message; use --prompt-style chat-template for others")
    return {"instruction": example["messages"][0]["content"], "input": "",
            "output": example["messages"][1]["content"]}


def as_messages(example) -> list[dict]:
    if "messages" in example:
        return example["messages"]
    user = example["instruction"] + (f"\n\n{example['input']}" if example["input"] else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": example["output"]}]


def encode_examples(examples, style: PromptStyle, tokenizer, mask_prompt=False) -> list[tuple[list[int], list]]:
    """``(ids, trained)`` of each example: ``trained`` None (every target counts, the book's way) or one flag per
    id, True for the ids that are targets (the answer's; with chat-template, the assistant turns')."""
    out = []
    for i, example in enumerate(examples):
        if style.name == "chat-template":
            pieces = [(tokenizer.encode(text, allowed_special="all"), answer)
                      for text, answer in style.segments(as_messages(example))]
            ids = [t for piece, _ in pieces for t in piece]
            out.append((ids, [answer for piece, answer in pieces for _ in piece] if mask_prompt else None))
            continue
        entry = as_entry(example, i)
        prompt = tokenizer.encode(style.prompt(entry))
        ids = tokenizer.encode(style.prompt(entry) + style.answer(entry))
        # Exercise 7.2: the prompt's positions are no targets (the first prompt token never is one)
        out.append((ids, [j >= len(prompt) for j in range(len(ids))] if mask_prompt else None))
    return out


def collate_examples(batch, pad_token_id, ignore_index=IGNORE_INDEX, allowed_max_length=None, device="cpu",
                     end_is_target=True):
    """The book's ``custom_collate_fn`` for ``(ids, trained)`` examples: each gets one end token and pads, every
    pad target after the first is ``ignore_index``, and so is the target of every id ``trained`` says is not
    one. ``end_is_target=False``: the appended end token is no target either (a chat template ends each turn
    itself)."""
    batch_max_length = max(len(ids) + 1 for ids, _ in batch)
    inputs_lst, targets_lst = [], []
    for ids, trained in batch:
        padded = padded_entry(ids, batch_max_length, pad_token_id)
        inputs, targets = torch.tensor(padded[:-1]), torch.tensor(padded[1:])
        pads = torch.arange(len(ids) - 1, len(targets))  # the targets past the example's own ids
        targets[pads[1:] if end_is_target else pads] = ignore_index
        if trained is not None:
            answer = torch.tensor(trained[1:] + [end_is_target], dtype=torch.bool)  # target j is id j + 1
            targets[:len(answer)][~answer] = ignore_index
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)
