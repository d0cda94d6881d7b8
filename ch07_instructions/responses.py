"""Extracting and saving responses (section 7.7): the fine-tuned model's answers to the test entries.

Unlike chapter 6's ``classify_review``, which reads one class off the last position: each answer is generated
greedily after the entry's prompt (chapter 5's ``generate``, up to 256 new tokens, stopping at
``<|endoftext|>``), one entry at a time as the book does, and cut out of the generated text. The answers go into
the entries as ``"model_response"`` and to ``instruction-data-with-response.json``, which section 7.8 scores.

>>> prompt = "### Instruction:\\nName a color."
>>> extract_response(prompt + "\\n\\n### Response:\\nBlue.", prompt)
'Blue.'
>>> from types import SimpleNamespace as Model
>>> medium = {"emb_dim": 1024, "n_layers": 24, "n_heads": 16}
>>> sft_file_name("gpt2-medium (355M)", medium, Model(source="gpt2", model=Model(cfg=Model(**medium))))
'gpt2-medium355M-sft.pth'
>>> small = Model(n_layers=12, emb_dim=768)
>>> sft_file_name("gpt2-medium (355M)", medium, Model(source="fresh", model=Model(cfg=small)))  # says what it was
'fresh-gpt-12x768-sft.pth'
"""

from __future__ import annotations

import json
import re

from ch02_text.safe_files import atomic_write_bytes

from .collate import PAD_TOKEN_ID
from .instruction_data import format_input
from .previous_chapters import generate, text_to_token_ids, token_ids_to_text

RESPONSES_FILE = "instruction-data-with-response.json"
RESPONSE_KEY = "model_response"


def extract_response(generated_text: str, input_text: str) -> str:
    """The generated text after the prompt, without the ``### Response:`` header (section 7.5)."""
    return generated_text[len(input_text):].replace("### Response:", "").strip()


def generate_response(model, entry, tokenizer, device, context_size, max_new_tokens=256) -> str:
    """The model's greedy answer to one entry (section 7.7): at most ``max_new_tokens``, ending at
    ``<|endoftext|>``."""
    input_text = format_input(entry)
    token_ids = generate(
        model=model,
        idx=text_to_token_ids(input_text, tokenizer).to(device),
        max_new_tokens=max_new_tokens,
        context_size=context_size,
        eos_id=PAD_TOKEN_ID,
    )
    return extract_response(token_ids_to_text(token_ids, tokenizer), input_text)


def print_response(entry, response_text) -> None:
    """The prompt, the dataset's answer and the model's, as the book prints the first three test entries."""
    print(format_input(entry))
    print(f"\nCorrect response:\n>> {entry['output']}")
    print(f"\nModel response:\n>> {response_text.strip()}")
    print("-------------------------------------")


def add_model_responses(entries, model, tokenizer, device, context_size, max_new_tokens=256):
    """Every entry's answer stored in it under ``"model_response"``, one entry at a time (a tqdm bar on
    stderr, as the book shows); returns ``entries``."""
    from tqdm import tqdm

    for i, entry in tqdm(enumerate(entries), total=len(entries)):
        entries[i][RESPONSE_KEY] = generate_response(model, entry, tokenizer, device, context_size, max_new_tokens)
    return entries


def write_responses(entries, path):
    """The entries with their answers as the book's indented JSON, written atomically; returns the path."""
    return atomic_write_bytes(path, json.dumps(entries, indent=4).encode("utf-8"))  # "indent" for pretty-printing


def sft_file_name(choose_model: str, preset: dict, start) -> str:
    """The book's ``gpt2-medium355M-sft.pth`` when ``start`` (a ``StartingModel``) holds GPT-2's weights of the
    ``preset`` size (the book's ``model_configs[CHOOSE_MODEL]``); otherwise a name that says which model it was:
    where it came from ("gpt2", "chapter5" or "fresh") and its layers and width."""
    cfg = start.model.cfg
    if start.source == "gpt2" and (preset["n_layers"], preset["emb_dim"]) == (cfg.n_layers, cfg.emb_dim):
        return f"{re.sub(r'[ ()]', '', choose_model)}-sft.pth"
    return f"{start.source}-gpt-{cfg.n_layers}x{cfg.emb_dim}-sft.pth"
