"""``python -m ch06_classification.lora``: the book's appendix E (parameter-efficient fine-tuning with LoRA).

Unlike chapter 6's run, which trains the last block, the final norm and a new head: every linear layer of the
classifier gets a rank-16 adapter (``ch04_gpt/lora.py``) and only the adapters train, 2,666,528 parameters
instead of 124 million. The walk-through is ``appendix_e_walkthrough.py``; the options are chapter 6's.
"""

from ch06_classification.__main__ import main as chapter_main

DESCRIPTION = (
    "Appendix E (parameter-efficient fine-tuning with LoRA): chapter 6's spam classifier with rank-16 adapters "
    "on every linear layer, only the adapters trained (5 epochs, lr 5e-5). Saves image/ch06_lora_loss.png. "
    "Without GPT-2's weights (data/gpt2-small-124M.safetensors) it starts from chapter 5's model or a fresh "
    "GPT-124M.")


def main(argv=None):
    return chapter_main(argv, walkthrough="ch06_classification.appendix_e_walkthrough",
                        prog="ch06_classification.lora", description=DESCRIPTION)


if __name__ == "__main__":
    main()
