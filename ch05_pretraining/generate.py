"""``python -m ch05_pretraining.generate``: text from a trained checkpoint or GPT-2's weights.

    python -m ch05_pretraining.generate --checkpoint checkpoints/model.pt --prompt "Every effort moves you"
    python -m ch05_pretraining.generate --gpt2 data/gpt2-small-124M.safetensors \\
        --prompt "Every effort moves you" --max-new-tokens 25 --temperature 1.5 --top-k 50
    python -m ch05_pretraining.generate --checkpoint checkpoints/model.pt --interactive

Interactive commands: any text generates a continuation; ":top N TEXT" shows the N most
likely next tokens with probabilities; ":tok TEXT" shows how TEXT is tokenized;
":set temperature|top_k|top_p|max_new_tokens VALUE" changes a setting; ":help"; ":quit".
"""

from __future__ import annotations

import argparse
import sys

import torch

from .checkpoint import model_from_checkpoint
from .gpt2_weights import load_gpt2_safetensors
from .previous_chapters import UserInputError, add_device_argument, cli_errors, gpt2_tokenizer, pick_device, set_seed
from .sampling import check_sampling_options, generate
from .tokens import text_to_token_ids, token_ids_to_text


def build_parser():
    p = argparse.ArgumentParser(prog="python -m ch05_pretraining.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint written by ch05_pretraining.train")
    src.add_argument("--gpt2", metavar="SAFETENSORS", help="GPT-2 model.safetensors (Hugging Face layout)")
    p.add_argument("--prompt", default="Every effort moves you", help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--stop-at-eos", action="store_true", help="stop at <|endoftext|>")
    p.add_argument("--interactive", action="store_true", help="read prompts and commands from stdin")
    add_device_argument(p)
    return p


def load_model(args, device):
    if args.checkpoint:
        model, _ = model_from_checkpoint(args.checkpoint, device=device)
        return model.eval()
    return load_gpt2_safetensors(args.gpt2, device=device)


class Session:
    """Generation settings plus the model; one method per interactive command."""

    def __init__(self, model, tokenizer, device, args):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.settings = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
                         "max_new_tokens": args.max_new_tokens}
        self.eos_id = tokenizer.eot_token if args.stop_at_eos else None
        self.check()

    def check(self):
        s = self.settings
        check_sampling_options(s["temperature"], s["top_k"], s["top_p"])
        if s["max_new_tokens"] < 0:
            raise UserInputError(f"max-new-tokens must be >= 0, got {s['max_new_tokens']}")

    def complete(self, prompt: str) -> str:
        idx = text_to_token_ids(prompt, self.tokenizer).to(self.device)
        s = self.settings
        out = generate(self.model, idx, s["max_new_tokens"], self.model.context_length,
                       temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"], eos_id=self.eos_id)
        return token_ids_to_text(out, self.tokenizer)

    @torch.no_grad()
    def top(self, n: int, prompt: str) -> list[tuple[str, float]]:
        idx = text_to_token_ids(prompt, self.tokenizer).to(self.device)[:, -self.model.context_length:]
        probs = torch.softmax(self.model(idx)[0, -1].float(), dim=-1)
        values, ids = torch.topk(probs, min(n, probs.numel()))
        return [(self.tokenizer.decode([i]), v) for i, v in zip(ids.tolist(), values.tolist())]

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        ids = self.tokenizer.encode(text, allowed_special={"<|endoftext|>"})
        return [(i, self.tokenizer.decode([i])) for i in ids]

    def set(self, name: str, value: str) -> None:
        if name not in self.settings:
            raise UserInputError(f"unknown setting '{name}': use one of {', '.join(self.settings)}")
        old = self.settings[name]
        try:
            self.settings[name] = None if value.lower() == "none" else (
                float(value) if name in ("temperature", "top_p") else int(value))
            self.check()
        except (ValueError, UserInputError):
            self.settings[name] = old
            raise


def handle(session: Session, line: str, out=print) -> bool:
    """Run one interactive line; returns False to quit. Errors are printed, not raised."""
    line = line.strip()
    if not line:
        return True
    try:
        if line in (":quit", ":q", ":exit"):
            return False
        if line == ":help":
            out(__doc__.split("Interactive commands: ")[1].strip())
        elif line.startswith(":top"):
            parts = line.split(maxsplit=2)
            if len(parts) < 3 or not parts[1].isdigit():
                raise UserInputError("usage: :top N TEXT")
            for token, prob in session.top(int(parts[1]), parts[2]):
                out(f"{prob:8.4f}  {token!r}")
        elif line.startswith(":tok"):
            for i, piece in session.tokenize(line[4:].strip()):
                out(f"{i:6d}  {piece!r}")
        elif line.startswith(":set"):
            parts = line.split()
            if len(parts) != 3:
                raise UserInputError("usage: :set NAME VALUE")
            session.set(parts[1], parts[2])
            out(f"{parts[1]} = {session.settings[parts[1]]}")
        elif line.startswith(":"):
            raise UserInputError(f"unknown command '{line.split()[0]}': type :help")
        else:
            out(session.complete(line))
    except (UserInputError, ValueError) as exc:
        out(f"error: {exc}")
    return True


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        device = pick_device(args.device)
        tokenizer = gpt2_tokenizer()
        check_sampling_options(args.temperature, args.top_k, args.top_p)
        session = Session(load_model(args, device), tokenizer, device, args)
        set_seed(args.seed)
        if not args.interactive:
            text = session.complete(args.prompt)
            print(text)
            return text
        print("interactive mode: type text to continue it, :help for commands, :quit to leave", file=sys.stderr)
        for line in sys.stdin:
            if not handle(session, line):
                break
    return None


if __name__ == "__main__":
    main()
