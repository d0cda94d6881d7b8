"""Prompt styles: how an instruction example becomes the text a model trains on and is asked with.

Unlike ``instruction_data.format_input`` (the book's Alpaca prompt alone): a style turns any example, the book's
``{"instruction", "input", "output"}`` entries or a chat conversation (``{"messages": [...]}``), into token ids
and the targets it trains on, so the same command trains the book's GPT-2 and an open-weight model. ``alpaca``
is the book's; ``phi3`` is Exercise 7.1's (``<|user|>`` ... ``<|assistant|>``); ``chat-template`` renders each
conversation with the model folder's own Jinja template (the tokens of every assistant turn, and only those,
being the targets with ``mask_prompt``). Each style is also a Jinja chat template (``CHAT_TEMPLATES``), which
the checkpoint keeps, so ``generate --chat`` asks the trained model the way it was trained.

>>> style = PromptStyle("phi3")
>>> example = {"instruction": "Name a color.", "input": "", "output": "Blue."}
>>> print(style.prompt(example) + style.answer(example))
<|user|>
Name a color.
<|assistant|>
Blue.
>>> print(style.render_chat([{"role": "user", "content": "Name a color."}]))   # asked in a chat: the answer next
<|user|>
Name a color.
<|assistant|>
<BLANKLINE>
"""

from __future__ import annotations

from ch02_text.errors import UserInputError

from .instruction_data import format_input, format_response
from .previous_chapters import render_chat

STYLES = ("alpaca", "phi3", "chat-template")
ROLES = ("system", "user", "assistant")

# Jinja renders with trim_blocks (as transformers does): the text after a tag is written as an expression
ALPACA_TEMPLATE = (
    "{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.' }}{% for m in messages %}{% if m.role == 'user' %}{{ '\\n\\n### Instruction:\\n' + m.content }}"
    "{% elif m.role == 'assistant' %}{{ '\\n\\n### Response:\\n' + m.content + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\n### Response:\\n' }}{% endif %}")
PHI3_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'user' %}{{ ('' if loop.first else '\\n') + '<|user|>\\n' + m.content }}"
    "{% elif m.role == 'assistant' %}{{ '\\n<|assistant|>\\n' + m.content + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n<|assistant|>\\n' }}{% endif %}")
CHAT_TEMPLATES = {"alpaca": ALPACA_TEMPLATE, "phi3": PHI3_TEMPLATE}  # the prompt part of each style, as Jinja
RESPONSE_HEADERS = {"alpaca": "### Response:", "phi3": "<|assistant|>"}  # stripped from a generated answer


def phi3_input(entry) -> str:
    """Exercise 7.1's ``format_input``: the Phi-3 prompt of an entry."""
    instruction_text = f"<|user|>\n{entry['instruction']}"
    input_text = f"\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def phi3_response(entry) -> str:
    return f"\n<|assistant|>\n{entry['output']}"


class PromptStyle:
    """One of ``STYLES``; ``template`` is the folder's chat template (``chat-template`` only)."""

    def __init__(self, name: str, template: str | None = None, bos: str = "", eos: str = ""):
        if name not in STYLES:
            raise UserInputError(f"--prompt-style {name}: give one of {', '.join(STYLES)}")
        if name == "chat-template" and not template:
            raise UserInputError("--prompt-style chat-template: the model has no chat template (its folder's "
                                 "tokenizer_config.json has none): use --prompt-style alpaca or phi3")
        self.name, self.template, self.bos, self.eos = name, template, bos, eos

    # -- the single-turn styles (the book's entries) --------------------------------------------------------
    def prompt(self, entry) -> str:
        """What the model is asked: the book's ``format_input`` (alpaca) or Exercise 7.1's (phi3)."""
        return format_input(entry) if self.name == "alpaca" else phi3_input(entry)

    def answer(self, entry) -> str:
        """What it learns to answer: the response header and the output."""
        return format_response(entry) if self.name == "alpaca" else phi3_response(entry)

    def extract(self, generated: str, prompt: str) -> str:
        """The answer in a generated text: after the prompt, without the response header (section 7.5)."""
        return generated[len(prompt):].replace(RESPONSE_HEADERS[self.name], "").strip()

    # -- conversations -------------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str:
        return self.template if self.name == "chat-template" else CHAT_TEMPLATES[self.name]

    def render_chat(self, messages, add_generation_prompt=True) -> str:
        return render_chat(self.chat_template, messages, add_generation_prompt, bos_token=self.bos,
                           eos_token=self.eos)

    def segments(self, messages) -> list[tuple[str, bool]]:
        """A conversation as ``(text, is_assistant)`` pieces whose concatenation is the rendered conversation:
        each assistant turn is the text its message adds after the prompt that asks for it."""
        pieces, done = [], ""
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            asked = self.render_chat(messages[:i], add_generation_prompt=True)
            answered = self.render_chat(messages[:i + 1], add_generation_prompt=False)
            if not asked.startswith(done) or not answered.startswith(asked):
                raise UserInputError("the chat template renders a conversation's turns differently as it grows "
                                     "(it rewrites earlier turns): it cannot mark the assistant's tokens")
            pieces += [(asked[len(done):], False), (answered[len(asked):], True)]
            done = answered
        return pieces
