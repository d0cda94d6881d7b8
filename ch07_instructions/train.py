"""python -m ch07_instructions.train: instruction fine-tuning of any model, the book's run or your own.

Unlike ``python -m ch07_instructions`` (the chapter's walk-through, listing by listing): a command line for the
reader's own data and models, through chapter 5's training engine (progress bar, bf16 autocast where the
processor has it, Ctrl-C saves a checkpoint and exits 130, atomic checkpoints), with the test answers written in
batches with the KV cache (left-padded, each row stopping at its own end token) instead of one token of one
answer per forward pass. --book runs the book's own functions at the book's settings (GPT-2's classes, fp32,
``train_model_simple``, ``generate``) and prints the book's values from the same weights.

    python -m ch07_instructions.train --init-from data/gpt2-medium-355M.safetensors          # the book's data
    python -m ch07_instructions.train --book --init-from data/gpt2-medium-355M.safetensors   # the book's values
    python -m ch07_instructions.train --data my_chats.jsonl --init-from models/Qwen3-0.6B \\
        --prompt-style chat-template --lora-rank 16 --out checkpoints/qwen3-chat.pt

--data takes the book's JSON (``instruction``, ``input``, ``output``), JSON lines of the same, or conversations
(``{"messages": [{"role": ..., "content": ...}, ...]}``). --prompt-style alpaca is the book's, phi3 is Exercise
7.1's, chat-template renders each conversation with the model folder's own Jinja template. --mask-prompt
(Exercise 7.2) trains on the answers' tokens only (the default with chat-template: the assistant turns only).
The split is the book's (85 % training, 10 % test, the rest validation, in the file's order) unless
--val-fraction / --test-fraction say otherwise. The checkpoint keeps the prompt style: python -m
ch05_pretraining.generate --checkpoint OUT --interactive --chat talks to the model in it.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ch02_text.cli import CliParser, add_device_argument, refuse_contradictions, run_cli
from ch02_text.data_files import find_data_file
from ch02_text.errors import UserInputError
from ch02_text.figures import save_figure
from ch02_text.hardware import pick_device
from ch02_text.option_types import positive_int, unit_interval
from ch02_text.safe_files import check_writable
from ch02_text.seeds import set_seed
from ch05_pretraining.checkpoint import save_checkpoint
from ch05_pretraining.engine.lora_options import add_lora_arguments, adapt, lora_config_of, trainable_count
from ch05_pretraining.engine.model_source import base_record, load_model_path, without_dropout
from ch05_pretraining.engine.progress import add_fine_tuning_options, train_with_progress
from ch05_pretraining.engine.runtime import Runtime
from ch05_pretraining.engine.trainer import StopRequest, TrainSettings, make_optimizer
from ch05_pretraining.previous_chapters import adapter_state_dict, tokenizer_to_dict

from .answers import answer_all, prompt_of
from .instruction_data import DATA_FILE, split_data
from .previous_chapters import (
    EpochSteps, GPTModel, calc_loss_loader, gpt2_weights_path, pad_id, plot_losses, train_model_simple,
)
from .pretrained import GPT2_WEIGHTS
from .prompt_styles import STYLES, PromptStyle
from .responses import RESPONSES_FILE, write_responses
from .sft_data import collate_examples, encode_examples, read_examples

DEFAULT_OUT = "checkpoints/instructions.pt"
BOOK = {"lr": 5e-5, "batch_size": 8, "eval_freq": 5, "eval_iter": 5, "seed": 123, "prompt_style": "alpaca",
        "max_new_tokens": 256}  # --book's settings (and the defaults); --epochs and --max-steps shorten it
BOOK_EPOCHS = 2
BOOK_REFUSES = ("data", "val_fraction", "test_fraction", "mask_prompt", "no_amp", "lora_rank")


def build_parser():
    p = CliParser(prog="python -m ch07_instructions.train", description=__doc__)
    data = p.add_argument_group("data")
    data.add_argument("--data", default=None, help=f"instructions: JSON, JSON lines or conversations (None: the "
                                                   f"book's {DATA_FILE})")
    data.add_argument("--val-fraction", type=unit_interval, default=None,
                      help="share of the examples for validation (None: the book's split, 85/10/5)")
    data.add_argument("--test-fraction", type=unit_interval, default=None,
                      help="share of the examples whose answers are written after training (None: the book's)")
    data.add_argument("--prompt-style", choices=STYLES, default=BOOK["prompt_style"],
                      help="alpaca: the book's prompt; phi3: Exercise 7.1's; chat-template: the model folder's own")
    data.add_argument("--mask-prompt", action=argparse.BooleanOptionalAction, default=None,
                      help="train on the answers' tokens only (Exercise 7.2; None: no for alpaca and phi3, as the "
                           "book, yes for chat-template: the assistant turns only)")
    data.add_argument("--max-length", type=positive_int, default=None,
                      help="tokens an example is cut to (None: the model's context, at most the book's 1024)")
    model = p.add_argument_group("model")
    model.add_argument("--init-from", default=None,
                       help=f"the model to fine-tune: a checkpoint, a state dict, GPT-2's model.safetensors or a "
                            f"Hugging Face folder (None: data/{GPT2_WEIGHTS})")
    model.add_argument("--n-heads", type=positive_int, default=None, help="head count of a bare state dict")
    add_fine_tuning_options(p, {**BOOK, "epochs": BOOK_EPOCHS}, lr_note="AdamW learning rate (weight decay 0.1)")
    run = p.add_argument_group("run")
    run.add_argument("--out", default=DEFAULT_OUT, help="the fine-tuned model's checkpoint")
    run.add_argument("--responses", default=None,
                     help=f"the test answers' JSON (None: {RESPONSES_FILE} beside --out)")
    run.add_argument("--max-test", type=positive_int, default=None, help="answer the first N test examples only")
    run.add_argument("--max-new-tokens", type=positive_int, default=BOOK["max_new_tokens"],
                     help="tokens per answer at most (greedy, ending at the end token)")
    run.add_argument("--book", action="store_true",
                     help="the book's functions and settings (GPT-2's classes, fp32): the book's values")
    run.add_argument("--no-amp", action="store_true", help="no bf16 autocast on the fast path")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")
    add_device_argument(run)
    add_lora_arguments(p)
    return p


def check_book(args, explicit) -> None:
    """--book runs the book's data and settings: an option that contradicts them is refused."""
    if args.book:
        refuse_contradictions(explicit, BOOK_REFUSES, BOOK)


# -- data ------------------------------------------------------------------------------------------
def load_splits(args):
    """``(train, test, validation)`` examples in the file's order (the book's split unless fractions are given),
    their sizes printed as the book prints them."""
    examples = read_examples(args.data or find_data_file(DATA_FILE))
    if args.val_fraction is None and args.test_fraction is None:
        train, test, val = split_data(examples)
    else:
        val_share = args.val_fraction if args.val_fraction is not None else 0.05
        test_share = args.test_fraction if args.test_fraction is not None else 0.1
        if val_share + test_share >= 1:
            raise UserInputError(f"--val-fraction {val_share} and --test-fraction {test_share} leave nothing to "
                                 "train on: make their sum smaller than 1")
        train, test, val = split_data(examples, 1 - val_share - test_share, test_share)
    print("Training set length:", len(train))
    print("Validation set length:", len(val))
    print("Test set length:", len(test))
    for part, name in ((train, "training"), (val, "validation")):
        if not part:
            raise UserInputError(f"the {name} split is empty: use more examples or other fractions")
    return train, test, val


def make_loaders(encoded, collate, batch_size, seed):
    """Listing 7.6's loaders: training shuffled (seed first) with drop_last, validation in order."""
    torch.manual_seed(seed)
    train, val = encoded
    train_loader = DataLoader(train, batch_size=batch_size, collate_fn=collate, shuffle=True, drop_last=True)
    val_loader = DataLoader(val, batch_size=batch_size, collate_fn=collate, shuffle=False, drop_last=False)
    if len(train_loader) == 0:
        raise UserInputError(f"the training split has {len(train)} examples, fewer than one batch of {batch_size}: "
                             "lower --batch-size or use more data")
    return train_loader, val_loader


# -- model -----------------------------------------------------------------------------------------
def load_start(args, lora, runtime, device):
    """``(model, tokenizer, base record)``: --init-from's model (the book's classes with --book), dropout off;
    with LoRA the loaded model itself (its base frozen in its dtype), else fp32 weights to train."""
    path = args.init_from or gpt2_weights_path(None, GPT2_WEIGHTS)
    if path is None:
        raise UserInputError(f"no model to fine-tune: give --init-from (a checkpoint, a state dict, GPT-2's "
                             f"model.safetensors or a Hugging Face folder) or place data/{GPT2_WEIGHTS}")
    loaded, tokenizer, _ = load_model_path(path, device="cpu", n_heads=args.n_heads)
    base = base_record(path, loaded)
    if args.book:
        if loaded.cfg.family != "gpt2":
            raise UserInputError(f"--book runs the book's GPT-2 classes; '{path}' is a {loaded.cfg.family} model: "
                                 "leave --book out")
        model = GPTModel(loaded.cfg.replace(drop_rate=0.0), impl="book")
        model.load_state_dict(loaded.float().state_dict())
    elif lora is not None:
        model = without_dropout(loaded)  # the book's drop_rate 0.0
        adapt(model, lora, runtime.amp_dtype)
    else:
        model = without_dropout(loaded.float())
    return model.to(device), tokenizer, base


def prompt_style(args, tokenizer) -> PromptStyle:
    template = getattr(tokenizer, "chat_template", None)
    return PromptStyle(args.prompt_style, template, getattr(tokenizer, "bos_token", "") or "",
                       getattr(tokenizer, "eos_token", "") or "")


def main(argv=None):
    return run_cli(build_parser(), run, argv)


def run(args, explicit):
    check_book(args, explicit)
    lora = lora_config_of(args, explicit)
    device = pick_device(args.device)
    out = Path(args.out)
    responses = Path(args.responses) if args.responses else out.with_name(RESPONSES_FILE)
    check_writable(out, "--out")
    check_writable(responses, "--responses")
    train, test, val = load_splits(args)
    runtime = Runtime.choose(device, book=args.book, amp=not args.no_amp, shapes_vary=True)
    runtime.apply(device)
    model, tokenizer, base = load_start(args, lora, runtime, device)
    style = prompt_style(args, tokenizer)
    mask = args.mask_prompt if args.mask_prompt is not None else style.name == "chat-template"
    pad = pad_id(tokenizer)
    max_length = min(args.max_length or 1024, model.context_length)
    collate = partial(collate_examples, pad_token_id=pad, allowed_max_length=max_length,
                      end_is_target=style.name != "chat-template")
    encoded = [encode_examples(part, style, tokenizer, mask) for part in (train, val)]
    loaders = make_loaders(encoded, collate, args.batch_size, args.seed)
    settings = TrainSettings(epochs=args.epochs, eval_freq=args.eval_freq, eval_iter=args.eval_iter, lr=args.lr,
                             start_context=prompt_of(val[0], style), sample_tokens=50,
                             **runtime.train_settings(model.cfg.vocab_size))
    print(f"model: {args.init_from or GPT2_WEIGHTS}, {model.impl} layers, prompt style {style.name}"
          f"{', prompt masked' if mask else ''}, {'bf16 autocast' if settings.amp_dtype else 'fp32'}, device {device}")
    if lora is not None:
        print(trainable_count(model))
    before_training(model, loaders, device, args.seed, settings)
    saved = {"lora": None if lora is None else {"config": lora.to_dict(), "base": base},
             "tokenizer": tokenizer_to_dict(tokenizer), "run_options": vars(args), "max_length": max_length,
             "chat": {"prompt_style": style.name, "chat_template": style.chat_template,
                      "eos_token": style.eos or tokenizer.decode([pad])}}
    losses, seconds = fine_tune(args, model, loaders, device, settings, tokenizer, runtime, out, saved)
    print(f"Training completed in {seconds / 60:.2f} minutes.")
    figure = save_figure(plot_losses(torch.linspace(0, args.epochs, len(losses[0])), losses[2], losses[0],
                                     losses[1]), out.with_suffix(".png").name, out.parent)
    print(f"loss figure: {figure}")
    start = time.perf_counter()
    answered = answer_test(args, model, tokenizer, style, test, device, settings)
    write_responses(answered, responses)
    print(f"{len(answered)} answers written to {responses} in {(time.perf_counter() - start) / 60:.2f} minutes")
    print(f"saved the fine-tuned model to {out} (python -m ch05_pretraining.generate --checkpoint {out} "
          "--interactive --chat)")
    return losses


def before_training(model, loaders, device, seed, settings):
    """The book's losses before fine-tuning (5 batches each), printed as the book prints them."""
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=settings.amp_dtype,
                                         enabled=settings.amp_dtype is not None):
        train_loss = calc_loss_loader(loaders[0], model, device, num_batches=5)
        val_loss = calc_loss_loader(loaders[1], model, device, num_batches=5)
    print("Training loss:", train_loss)
    print("Validation loss:", val_loss)


def fine_tune(args, model, loaders, device, settings, tokenizer, runtime, out, saved):
    """The book's loop (--book) or chapter 5's engine over the epochs; the checkpoint written atomically at the
    end, or at a Ctrl-C (exit 130; the book's loop has no stop). Returns ``(losses, seconds)``: the train and
    validation losses and the tokens seen at each evaluation."""
    torch.manual_seed(args.seed)
    set_seed(args.seed)
    stop = StopRequest()
    if args.book:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
        start = time.perf_counter()
        losses = train_model_simple(model, EpochSteps(loaders[0], args.max_steps), loaders[1], optimizer, device,
                                    num_epochs=args.epochs, eval_freq=args.eval_freq, eval_iter=args.eval_iter,
                                    start_context=settings.start_context, tokenizer=tokenizer)
        save(out, model, optimizer, saved, stop, epoch=args.epochs)
        return losses, time.perf_counter() - start
    optimizer = make_optimizer(model, args.lr, 0.1, fused=runtime.fused_adamw)
    progress = argparse.Namespace(no_progress=args.no_progress, batch_size=args.batch_size,
                                  context_length=saved["max_length"])
    try:
        with stop.installed():
            state, seconds, _ = train_with_progress(model, optimizer, EpochSteps(loaders[0], args.max_steps),
                                                    loaders[1], device, settings, tokenizer, None, progress,
                                                    stop=stop)
            save(out, model, optimizer, saved, stop, state.epoch, state.global_step + 1, state.to_dict(),
                 state.rng_now)
    except KeyboardInterrupt:
        print(f"interrupted again: stopped at once without saving; {out} is as it was", file=sys.stderr)
        raise SystemExit(130) from None
    if stop.requested:
        print(f"interrupted: saved the model as trained so far to {out}", file=sys.stderr)
        raise SystemExit(130)
    return (state.train_losses, state.val_losses, state.track_tokens_seen), seconds


def save(out, model, optimizer, saved, stop, epoch, step=0, trainer_state=None, rng=None):
    """The checkpoint: the model (a LoRA run's adapters alone, with their base) and, from ``saved``, the run's
    options, tokenizer and prompt style (as a chat template, which ``generate --chat`` renders)."""
    lora = saved["lora"]
    with stop.shielded(out):
        save_checkpoint(out, model, optimizer, step=step, epoch=epoch, tokenizer=saved["tokenizer"],
                        trainer_state=trainer_state, rng=rng, run_options=saved["run_options"], lora=lora,
                        model_state=None if lora is None else adapter_state_dict(model), chat=saved["chat"])


def answer_test(args, model, tokenizer, style, test, device, settings):
    """The test examples with their answers (``model_response``): the book's one by one (--book), else in
    batches with the KV cache; the first three printed as the book prints them."""
    answered = [dict(entry) for entry in test[:args.max_test]]
    answer_all(answered, model, tokenizer, style, device, args.max_new_tokens, book=args.book,
               eos_id=pad_id(tokenizer), amp_dtype=None if args.book else settings.amp_dtype)
    return answered


if __name__ == "__main__":
    main()
