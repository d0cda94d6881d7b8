"""python -m ch07_instructions.dpo: preference tuning (DPO) of an instruction-tuned model, as the book's bonus.

Unlike ``python -m ch07_instructions.train`` (one answer per prompt): each entry's ``chosen`` answer is made more
likely than its ``rejected`` one relative to a frozen reference, the model as it was before (``preference.py``).
The bonus notebook's settings are the defaults: the book's split of ``instruction-data-with-preference.json``,
the Alpaca prompt, the prompt's tokens masked, beta 0.1, AdamW 5e-6 with weight decay 0.01, one epoch, the
losses and reward margins every 5 steps on 5 batches.

    python -m ch07_instructions.dpo --init-from checkpoints/instructions.pt
    python -m ch07_instructions.dpo --book --init-from gpt2-medium355M-sft.pth --max-steps 20
    python -m ch07_instructions.dpo --init-from checkpoints/instructions.pt --lora-rank 16   # reference: the base

--book runs the notebook's functions on the book's GPT-2 classes in fp32, policy and reference both loaded from
--init-from, and prints what the notebook prints from the same weights. --logprobs sum sums each answer's token
log-probabilities (trl's convention) instead of averaging them (the notebook's). With LoRA the reference is the
policy's own base with the adapters switched off: no second copy of the model is kept.
"""

from __future__ import annotations

import contextlib
import json
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ch02_text.cli import CliParser, add_device_argument, refuse_contradictions, run_cli
from ch02_text.data_files import find_data_file
from ch02_text.errors import UserInputError
from ch02_text.hardware import pick_device
from ch02_text.option_types import fraction, positive_float, positive_int
from ch02_text.safe_files import check_writable
from ch05_pretraining.checkpoint import save_checkpoint
from ch05_pretraining.engine.chat import checkpoint_chat
from ch05_pretraining.engine.lora_options import add_lora_arguments, adapt, lora_config_of, trainable_count
from ch05_pretraining.engine.progress import add_fine_tuning_options
from ch05_pretraining.engine.model_source import base_record, load_model_path, without_dropout
from ch05_pretraining.engine.runtime import Runtime
from ch05_pretraining.engine.trainer import make_optimizer
from ch05_pretraining.previous_chapters import adapter_state_dict, adapters_off, tokenizer_to_dict

from .instruction_data import format_input, split_data
from .preference import PREFERENCE_FILE, PreferenceDataset, evaluate_dpo_loss_loader, preference_collate_fn, \
    train_model_dpo_simple
from .previous_chapters import EpochSteps, GPTModel, pad_id

DEFAULT_OUT = "checkpoints/dpo.pt"
BOOK = {"lr": 5e-6, "weight_decay": 0.01, "beta": 0.1, "batch_size": 8, "eval_freq": 5, "eval_iter": 5,
        "seed": 123, "logprobs": "mean"}  # the notebook's settings (and the defaults); --epochs/--max-steps shorten it
BOOK_EPOCHS = 1


def build_parser():
    p = CliParser(prog="python -m ch07_instructions.dpo", description=__doc__)
    p.add_argument("--init-from", required=True,
                   help="the instruction-tuned model: a checkpoint, a state dict, GPT-2's file or a model folder")
    p.add_argument("--reference", default=None, help="the frozen reference (None: --init-from, as the notebook)")
    p.add_argument("--data", default=None, help=f"preference entries (None: the book's {PREFERENCE_FILE})")
    p.add_argument("--n-heads", type=positive_int, default=None, help="head count of a bare state dict")
    p.add_argument("--weight-decay", type=fraction, default=BOOK["weight_decay"], help="AdamW weight decay")
    p.add_argument("--beta", type=positive_float, default=BOOK["beta"], help="DPO's beta: how far the policy may "
                                                                              "move from the reference")
    add_fine_tuning_options(p, {**BOOK, "epochs": BOOK_EPOCHS}, "entries")
    p.add_argument("--logprobs", choices=("mean", "sum"), default=BOOK["logprobs"],
                   help="each answer's log-probability: its tokens' mean (the notebook's) or sum (trl's)")
    p.add_argument("--out", default=DEFAULT_OUT, help="the tuned model's checkpoint")
    p.add_argument("--book", action="store_true", help="the notebook's functions on the book's GPT-2 classes, fp32")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on the fast path")
    add_device_argument(p)
    add_lora_arguments(p)
    return p


def check_book(args, explicit) -> None:
    if args.book:
        refuse_contradictions(explicit, ("data", "lora_rank", "reference", "no_amp"), BOOK,
                              "--book runs the notebook's")


def read_preferences(path) -> list[dict]:
    """The entries of a preference file (JSON list or JSON lines): instruction, chosen and rejected each."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--data '{path}' does not exist: give a JSON file of entries with instruction, chosen "
                             "and rejected")
    text = path.read_text(encoding="utf-8")
    try:
        entries = json.loads(text)
    except json.JSONDecodeError:
        try:
            entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--data '{path}' is neither JSON nor JSON lines ({exc.msg})") from None
    if not isinstance(entries, list) or not entries:
        raise UserInputError(f"--data '{path}' holds no entries")
    for i, entry in enumerate(entries):
        missing = [k for k in ("instruction", "chosen", "rejected")
                   if not isinstance(entry, dict) or not isinstance(entry.get(k), str)]
        if missing:
            raise UserInputError(f"--data '{path}': entry {i} has no {missing[0]} text: a preference entry needs "
                                 "instruction, chosen and rejected (and optionally input)")
        entry.setdefault("input", "")
    return entries


def load_policy(args, lora, runtime, device):
    """``(policy, reference, tokenizer, base record, reference context)``: --init-from's model to train and the
    frozen reference (LoRA: the policy itself with its adapters off)."""
    loaded, tokenizer, _ = load_model_path(args.init_from, n_heads=args.n_heads)
    base = base_record(args.init_from, loaded)
    if args.book and loaded.cfg.family != "gpt2":
        raise UserInputError(f"--book runs the book's GPT-2 classes; '{args.init_from}' is a {loaded.cfg.family} "
                             "model: leave --book out")
    policy = book_copy(loaded) if args.book else without_dropout(loaded if lora else loaded.float())
    if lora is not None:
        adapt(policy, lora, runtime.amp_dtype)
        return policy.to(device), policy, tokenizer, base, partial(adapters_off, policy)
    reference_path = args.reference or args.init_from
    other, _, _ = load_model_path(reference_path, n_heads=args.n_heads)
    reference = book_copy(other) if args.book else without_dropout(other.float())
    mine, theirs = policy.state_dict(), reference.state_dict()
    for name, tensor in mine.items():
        if name not in theirs or theirs[name].shape != tensor.shape:
            raise UserInputError(f"--reference '{reference_path}' is another model than --init-from: its {name} "
                                 f"{'is missing' if name not in theirs else f'has shape {tuple(theirs[name].shape)}'}"
                                 f", the policy's {tuple(tensor.shape)}")
    reference.eval().requires_grad_(False)
    return policy.to(device), reference.to(device), tokenizer, base, None


def book_copy(loaded):
    model = GPTModel(loaded.cfg.replace(drop_rate=0.0), impl="book")
    model.load_state_dict(loaded.float().state_dict())
    return model


def main(argv=None):
    return run_cli(build_parser(), run, argv)


def run(args, explicit):
    check_book(args, explicit)
    lora = lora_config_of(args, explicit)
    device = pick_device(args.device)
    out = Path(args.out)
    check_writable(out, "--out")
    entries = read_preferences(args.data or find_data_file(PREFERENCE_FILE))
    train, test, val = split_data(entries)
    print("Training set length:", len(train))
    print("Validation set length:", len(val))
    print("Test set length:", len(test))
    runtime = Runtime.choose(device, book=args.book, amp=not args.no_amp, shapes_vary=True)
    runtime.apply(device)
    policy, reference, tokenizer, base, reference_context = load_policy(args, lora, runtime, device)
    if lora is not None:
        print(trainable_count(policy))
    pad = pad_id(tokenizer)
    collate = partial(preference_collate_fn, pad_token_id=pad, allowed_max_length=min(1024, policy.context_length),
                      mask_prompt_tokens=True, device=device)
    torch.manual_seed(args.seed)
    train_loader = DataLoader(PreferenceDataset(train, tokenizer), batch_size=args.batch_size, collate_fn=collate,
                              shuffle=True, drop_last=True)
    val_loader = DataLoader(PreferenceDataset(val, tokenizer), batch_size=args.batch_size, collate_fn=collate)
    if len(train_loader) == 0 or len(val_loader) == 0:
        raise UserInputError(f"the training or validation split is smaller than one batch of {args.batch_size}: "
                             "use more entries or a smaller --batch-size")
    options = {"reduction": args.logprobs, "reference_context": reference_context}
    cast = (torch.autocast(device.type, dtype=runtime.amp_dtype) if runtime.amp_dtype is not None
            else contextlib.nullcontext())
    with cast:
        before(policy, reference, train_loader, val_loader, args, options)
        optimizer, seconds = tune(args, policy, reference, train_loader, val_loader, val, tokenizer, runtime,
                                  options)
    print(f"Training completed in {seconds / 60:.2f} minutes.")
    save_checkpoint(out, policy, optimizer, epoch=args.epochs, tokenizer=tokenizer_to_dict(tokenizer),
                    run_options=vars(args), lora=None if lora is None else {"config": lora.to_dict(), "base": base},
                    model_state=None if lora is None else adapter_state_dict(policy),
                    chat=checkpoint_chat(args.init_from))
    print(f"saved the tuned model to {out}")
    return policy


def before(policy, reference, train_loader, val_loader, args, options):
    """The notebook's losses and reward margins before training."""
    torch.manual_seed(args.seed)  # for the shuffling in the data loader, as the notebook
    res = evaluate_dpo_loss_loader(policy, reference, train_loader, val_loader, args.beta, args.eval_iter, **options)
    print("Training loss:", res["train_loss"])
    print("Validation loss:", res["val_loss"])
    print("Train reward margin:", res["train_chosen_reward"] - res["train_rejected_reward"])
    print("Val reward margin:", res["val_chosen_reward"] - res["val_rejected_reward"])


def tune(args, policy, reference, train_loader, val_loader, val, tokenizer, runtime, options):
    torch.manual_seed(args.seed)
    if args.book:
        optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        optimizer = make_optimizer(policy, args.lr, args.weight_decay, fused=runtime.fused_adamw)
    start = time.perf_counter()
    train_model_dpo_simple(policy, reference, EpochSteps(train_loader, args.max_steps), val_loader, optimizer,
                           args.epochs, args.beta, args.eval_freq, args.eval_iter,
                           start_context=format_input(val[2] if len(val) > 2 else val[0]), tokenizer=tokenizer,
                           **options)
    return optimizer, time.perf_counter() - start


if __name__ == "__main__":
    main()
