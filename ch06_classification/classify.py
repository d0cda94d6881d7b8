"""python -m ch06_classification.classify: the label of each text, by a classifier that train saved.

Unlike the book's ``classify_review`` (one text, "spam" or "not spam"): any classifier checkpoint of
``python -m ch06_classification.train`` (its classes, tokenizer, max length, pad id and token rule are in it),
texts in batches, each printed with its label and that label's probability.

    python -m ch06_classification.classify --checkpoint checkpoints/classifier.pt "You won a prize!" "See you at 6"
    python -m ch06_classification.classify --checkpoint checkpoints/classifier.pt --file texts.txt
    python -m ch06_classification.classify --checkpoint checkpoints/classifier.pt --interactive
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ch02_text.cli import CliParser, add_device_argument, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.hardware import pick_device
from ch02_text.option_types import positive_int
from ch05_pretraining.checkpoint import FORMAT, CheckpointError, apply_checkpoint, check_format, load_torch_file
from ch05_pretraining.engine.model_source import load_base
from ch05_pretraining.generate import read_lines
from ch05_pretraining.previous_chapters import tokenizer_from_dict, validate_config

from .adapted import adapt_classifier
from .labelled_data import LabelledTexts
from .previous_chapters import GPTModel, LoRAConfig
from .tail import hidden_before, make_classifier, tail_logits


class Classifier:
    """A classifier checkpoint's model and what it reads texts with; ``classify`` labels a batch of texts."""

    def __init__(self, path, device="cpu"):
        raw = load_torch_file(path, device, "--checkpoint")
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or not raw.get("classifier"):
            raise CheckpointError(f"--checkpoint '{path}' has no classification head (a language model or another "
                                  "file): train a classifier with python -m ch06_classification.train")
        ckpt = check_format(raw, path)
        self.info = ckpt["classifier"]
        self.classes = list(self.info["classes"])
        self.model = classifier_model(ckpt, path)
        apply_checkpoint(ckpt, self.model, source=f"--checkpoint '{path}'")
        self.model.to(device).eval()
        self.tokenizer = tokenizer_from_dict(ckpt["tokenizer"], f"--checkpoint '{path}'")
        self.device = device

    def classify(self, texts) -> list[tuple[str, float]]:
        """``(label, probability)`` of each text, read as training read its texts (cut or padded to max length)."""
        batch = LabelledTexts([(0, text) for text in texts], self.tokenizer, self.info["pad_id"],
                              self.info["max_length"])
        with torch.no_grad():
            logits = tail_logits(self.model, hidden_before(self.model, batch.ids.to(self.device), 0), batch.lengths,
                                 self.info["token"], 0)
        probabilities = torch.softmax(logits.float(), dim=-1)
        best = probabilities.argmax(dim=-1)
        return [(self.classes[i], probabilities[row, i].item()) for row, i in enumerate(best.tolist())]


def classifier_model(ckpt, path):
    """The classifier a checkpoint describes, before its trained tensors are loaded: its config's model with the
    new head, or for a LoRA checkpoint its base (found and checked by fingerprint) with adapters."""
    lora = ckpt.get("lora")
    n_classes = len(ckpt["classifier"]["classes"])
    if lora is None:
        return make_classifier(GPTModel(validate_config(ckpt["config"])), n_classes, ckpt["classifier"]["trainable"])
    base, _ = load_base(lora["base"], path)
    model = GPTModel(base.cfg.replace(drop_rate=0.0), impl="book" if lora.get("book") else "fast")
    model.load_state_dict(base.float().state_dict())
    make_classifier(model, n_classes, "head")
    adapt_classifier(model, LoRAConfig.from_dict(lora["config"]), lora.get("book", False))
    return model


def format_result(text: str, label: str, probability: float) -> str:
    """One line per text.

    >>> format_result("WIN cash now", "spam", 0.98765)
    'spam\\t0.988\\tWIN cash now'
    """
    return f"{label}\t{probability:.3f}\t{text}"


def build_parser():
    p = CliParser(prog="python -m ch06_classification.classify", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a classifier saved by python -m ch06_classification.train")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", default=None, help="a UTF-8 file of texts, one a line (blank lines skipped)")
    p.add_argument("--interactive", action="store_true", help="classify each line typed (:quit leaves)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    add_device_argument(p)
    return p


def read_texts(path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"--file '{path}' is not UTF-8: convert it first") from None
    texts = [line for line in text.splitlines() if line.strip()]
    if not texts:
        raise UserInputError(f"--file '{path}' holds no texts: one text a line")
    return texts


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        return run(args)


def run(args):
    given = bool(args.texts) + bool(args.file) + args.interactive
    if given != 1:
        raise UserInputError("give texts to classify, --file FILE or --interactive (one of them)")
    texts = read_texts(args.file) if args.file else args.texts
    classifier = Classifier(args.checkpoint, pick_device(args.device))
    if args.interactive:
        return interact(classifier)
    results = []
    for start in range(0, len(texts), args.batch_size):
        chunk = texts[start:start + args.batch_size]
        for text, (label, probability) in zip(chunk, classifier.classify(chunk)):
            print(format_result(text, label, probability))
            results.append((label, probability))
    return results


def interact(classifier) -> None:
    print(f"interactive mode: type a text to classify it ({', '.join(classifier.classes)}), :quit to leave",
          file=sys.stderr)
    for line in read_lines():
        line = line.rstrip("\n")
        if line.strip() in (":quit", ":q"):
            break
        if line.strip():
            label, probability = classifier.classify([line])[0]
            print(format_result(line, label, probability), flush=True)


if __name__ == "__main__":
    main()
