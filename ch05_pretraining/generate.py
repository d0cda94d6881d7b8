"""python -m ch05_pretraining.generate: text from a trained checkpoint or GPT-2's weights.

    python -m ch05_pretraining.generate --checkpoint checkpoints/model.pt --prompt "Every effort moves you"
    python -m ch05_pretraining.generate --checkpoint checkpoints/model.pth     # the walk-through's state dict
    python -m ch05_pretraining.generate --gpt2 data/gpt2-small-124M.safetensors \\
        --prompt "Every effort moves you" --max-new-tokens 25 --temperature 1.5 --top-k 50
    python -m ch05_pretraining.generate --checkpoint checkpoints/model.pt --interactive
    python -m ch05_pretraining.generate --gpt2 data/gpt2-small-124M.safetensors --prompt "Hello" --prompt "I am"
    python -m ch05_pretraining.generate --checkpoint checkpoints/ladder/LM2.pt --interactive
    python -m ch05_pretraining.generate --hf models/Qwen3-0.6B --interactive --chat

A checkpoint brings its tokenizer (GPT-2's, characters, a trained BPE, or a model folder's tokenizer.json)
and architecture; --hf reads a Hugging Face folder (Llama 3, Qwen3, Gemma 3, Mistral, Mixtral, OLMo 2/3,
GPT-2) with its tokenizer.json. --chat (with --interactive) keeps a conversation through the folder's chat
template and stops each reply at the model's end-of-turn ids; ":reset" starts a new conversation. A checkpoint
of chapter 7's instruction tuning keeps its prompt style (alpaca, phi3 or the folder's template): --chat talks
to it in that style, and --prompt "..." asks it one instruction in it and prints the answer.

Interactive commands: any text generates a continuation (streamed; Ctrl-C stops it and
returns to the prompt); ":top N TEXT" shows the N most likely next tokens with
probabilities; ":tok TEXT" shows how TEXT is tokenized;
":set temperature|top_k|top_p|max_new_tokens VALUE" changes a setting (top_k/top_p: a
value or none; top_k 0 is off too); ":settings" shows them; ":reset" clears a --chat conversation; ":help"; ":quit" (or Ctrl-D).
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from ch02_text.cli import CliParser, add_device_argument, cli_errors
from ch02_text.errors import UserInputError
from ch02_text.hardware import pick_device
from ch02_text.option_types import nonneg_float, nonneg_int, probability_mass
from ch02_text.seeds import set_seed
from ch02_text.text_stream import TextStream

from .engine.chat import ChatFormat, checkpoint_chat
from .engine.model_source import add_source_arguments, load_model_of
from .previous_chapters import decode_dtype, generate_batch, pack_for_decoding, render_chat
from .sampling import SamplingSettings, generate, make_sampler
from .tokens import text_to_token_ids, token_ids_to_text


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.generate", description=__doc__)
    add_source_arguments(p)
    p.add_argument("--prompt", action="append", default=None,
                   help="text to continue; give it several times to continue several prompts in one batch "
                        "(None: the checkpoint's --start-context, else 'Every effort moves you')")
    p.add_argument("--max-new-tokens", type=nonneg_int, default=50, help="tokens to generate")
    p.add_argument("--temperature", type=nonneg_float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=nonneg_int, default=None,
                   help="sample only among the k most likely tokens (0 or None: off)")
    p.add_argument("--top-p", type=probability_mass, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=123, help="seed for sampling")
    p.add_argument("--stop-at-eos", action="store_true", help="stop at the tokenizer's end-of-text token")
    p.add_argument("--interactive", action="store_true", help="read prompts and commands from stdin")
    p.add_argument("--chat", action="store_true",
                   help="with --interactive: each line is a user turn of one conversation, rendered with the "
                        "tokenizer's chat template")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="weights and KV cache while generating: auto = bfloat16 where the processor has bf16 "
                        "(about twice the tokens/s), else float32 (the book's exact texts)")
    add_device_argument(p)
    return p


SETTING_TYPES = {"temperature": float, "top_k": int, "top_p": float, "max_new_tokens": int}
OPTIONAL_SETTINGS = ("top_k", "top_p")


class Session:
    """The model, its tokenizer and the sampling settings; one method per interactive command."""

    def __init__(self, model, tokenizer, device, settings: SamplingSettings, eos_id=None, chat=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.settings, self.eos_id = settings, eos_id
        self.format, self.history = chat, []  # --chat: the ChatFormat and the conversation so far
        self.chatting = chat is not None

    def complete(self, prompt: str, on_text=None) -> str:
        """Prompt + continuation; ``on_text(piece)`` receives the new text as it is generated."""
        idx = text_to_token_ids(prompt, self.tokenizer).to(self.device)
        s = self.settings
        stream = None if on_text is None else TextStream(self.tokenizer, on_text)
        out = generate(self.model, idx, s.max_new_tokens, self.model.context_length, temperature=s.temperature,
                       top_k=s.top_k, top_p=s.top_p, eos_id=self.eos_id,
                       on_token=None if stream is None else stream.add)
        return token_ids_to_text(out, self.tokenizer)

    def complete_batch(self, prompts: list[str]) -> list[str]:
        """Several prompts in one batch (left-padded, each row as if alone); prompt + continuation each."""
        s = self.settings
        ids = [text_to_token_ids(p, self.tokenizer)[0].tolist() for p in prompts]
        new = generate_batch(self.model, ids, s.max_new_tokens, pick_next=make_sampler(s.temperature, s.top_k, s.top_p),
                             eos_id=self.eos_id)
        return [self.tokenizer.decode(p + n) for p, n in zip(ids, new)]

    @torch.no_grad()
    def top(self, n: int, prompt: str) -> list[tuple[str, float]]:
        idx = text_to_token_ids(prompt, self.tokenizer).to(self.device)[:, -self.model.context_length:]
        probs = torch.softmax(self.model(idx)[0, -1].float(), dim=-1)
        values, ids = torch.topk(probs, min(n, probs.numel()))
        return [(self.tokenizer.decode([i]), v) for i, v in zip(ids.tolist(), values.tolist())]

    def chat(self, text: str, on_text=None) -> str:
        """One user turn of the conversation; returns the reply (the history keeps both)."""
        self.history.append({"role": "user", "content": text})
        tok, form = self.tokenizer, self.format
        prompt = render_chat(form.template, self.history, bos_token=form.bos, eos_token=form.eos)
        idx = torch.tensor([tok.encode(prompt, allowed_special="all")], device=self.device)
        s = self.settings
        stream = None if on_text is None else TextStream(tok, on_text)
        out = generate(self.model, idx[:, -self.model.context_length:], s.max_new_tokens, self.model.context_length,
                       temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, eos_id=form.stop_ids,
                       on_token=None if stream is None else stream.add)
        new = out[0, idx.shape[1]:].tolist()
        reply = (tok.tokenizer.decode(new, skip_special_tokens=True) if hasattr(tok, "tokenizer")
                 else tok.decode(new)).strip()
        self.history.append({"role": "assistant", "content": reply})
        return reply

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        ids = self.tokenizer.encode(text, allowed_special="all")
        return [(i, self.tokenizer.decode([i])) for i in ids]

    def set(self, name: str, value: str) -> None:
        if name not in SETTING_TYPES:
            raise UserInputError(f"unknown setting '{name}': use one of {', '.join(SETTING_TYPES)}")
        if value.lower() == "none" and name in OPTIONAL_SETTINGS:
            parsed = None
        else:
            try:
                parsed = SETTING_TYPES[name](value)
            except ValueError:
                kind = "an integer" if SETTING_TYPES[name] is int else "a number"
                raise UserInputError(f"{name} must be {kind}, got {value!r}") from None
        self.settings = dataclasses.replace(self.settings, **{name: parsed})  # checked by SamplingSettings


def handle(session: Session, line: str, out=print, write=None) -> bool:
    """Run one interactive line; returns False to quit. Mistakes are printed, not raised.

    ``write`` streams a continuation piece by piece (default: printed whole at the end).
    """
    line = line.strip()
    if not line:
        return True
    command, _, rest = line.partition(" ")
    rest = rest.strip()
    try:
        if command in (":quit", ":q", ":exit"):
            return False
        if command == ":help":
            out(__doc__.split("Interactive commands: ")[1].strip())
        elif command == ":top":
            n, _, text = rest.partition(" ")
            if not n.isdigit() or int(n) < 1 or not text.strip():
                raise UserInputError("usage: :top N TEXT, with N a positive integer (e.g. :top 5 Every effort)")
            for token, prob in session.top(int(n), text):
                out(f"{prob:8.4f}  {token!r}")
        elif command == ":tok":
            if not rest:
                raise UserInputError("usage: :tok TEXT (e.g. :tok Every effort moves you)")
            for i, piece in session.tokenize(rest):
                out(f"{i:6d}  {piece!r}")
        elif command == ":set":
            parts = rest.split()
            if len(parts) != 2:
                raise UserInputError(f"usage: :set NAME VALUE, NAME one of {', '.join(SETTING_TYPES)}")
            session.set(*parts)
            out(f"{parts[0]} = {getattr(session.settings, parts[0])}")
        elif command == ":reset":
            session.history.clear()
            out("(a new conversation)" if session.chatting else "(nothing to reset: --chat keeps a conversation)")
        elif command == ":settings":
            out(", ".join(f"{k} = {v}" for k, v in dataclasses.asdict(session.settings).items()))
        elif command.startswith(":"):
            raise UserInputError(f"unknown command '{command}': type :help")
        elif session.chatting:
            reply = session.chat(line, on_text=write)
            if write is None:
                out(reply)
            else:
                write("\n")
        elif write is None:
            out(session.complete(line))
        else:
            write(line)
            session.complete(line, on_text=write)
            write("\n")
    except UserInputError as exc:
        out(f"error: {exc}")
    return True


def read_lines(prompt="> "):
    """Lines from a terminal (line editing and history through readline) or from a pipe."""
    if not sys.stdin.isatty():
        yield from sys.stdin
        return
    try:
        import readline  # noqa: F401 - importing it gives input() editing and history
    except ImportError:
        pass
    while True:
        try:
            yield input(prompt)
        except EOFError:
            print(file=sys.stderr)
            return
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, as in a shell
            print(file=sys.stderr)


def interact(session: Session) -> None:
    def write(piece):
        sys.stdout.write(piece)
        sys.stdout.flush()

    print("interactive mode: type text to continue it, :help for commands, :quit to leave", file=sys.stderr)
    for line in read_lines():
        try:
            if not handle(session, line, write=write):
                break
        except KeyboardInterrupt:  # Ctrl-C during a generation: end its line, back to the prompt
            print()
            print("(stopped)", file=sys.stderr)


def batch_output(texts: list[str]) -> str:
    """Several continuations, each under a rule naming its prompt's number, so where one ends is plain.

    >>> print(batch_output(["Hi there", "I am"]))
    --- 1 ---
    Hi there
    --- 2 ---
    I am
    """
    return "\n".join(f"--- {i} ---\n{text}" for i, text in enumerate(texts, 1))


def check_chat(args) -> None:
    if args.chat and not args.interactive:
        raise UserInputError("--chat keeps a conversation in the REPL: give --interactive too")
    if args.interactive and args.prompt:
        raise UserInputError("--prompt is for one-shot runs; --interactive reads its prompts from the input: "
                             "give one of them")


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        device = pick_device(args.device)
        settings = SamplingSettings(args.temperature, args.top_k, args.top_p, args.max_new_tokens)
        check_chat(args)
        model, tokenizer, default_prompt = load_model_of(args, device)
        record = checkpoint_chat(args.checkpoint)  # an instruction-tuned checkpoint's prompt style
        chat = ChatFormat.of(tokenizer, record)
        if args.chat and chat is None:
            raise UserInputError("--chat needs a chat template, and the tokenizer of this model has none "
                                 "(tokenizer_config.json's chat_template): leave --chat out to continue text")
        model = model.to(decode_dtype(device, args.dtype))
        pack_for_decoding(model)  # weights read once per token at close to memory speed (CPU)
        session = Session(model, tokenizer, device, settings,
                          eos_id=tokenizer.eot_token if args.stop_at_eos else None,
                          chat=chat if args.chat or (record and args.prompt) else None)
        set_seed(args.seed)
        if record and args.prompt and not args.interactive:  # one instruction each, in the checkpoint's style
            replies = []
            for prompt in args.prompt:
                session.history.clear()
                replies.append(session.chat(prompt))
            print(batch_output(replies) if len(replies) > 1 else replies[0])
            return replies
        prompts = args.prompt or [default_prompt]
        if not args.interactive and len(prompts) > 1:
            texts = session.complete_batch(prompts)
            print(batch_output(texts))
            return texts
        if not args.interactive:
            text = session.complete(prompts[0])
            print(text)
            return text
        interact(session)
    return None


if __name__ == "__main__":
    main()
