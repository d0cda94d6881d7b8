"""python -m ch06_classification.train: fine-tune any model of this project into a text classifier.

Unlike ``python -m ch06_classification`` (the chapter's walk-through, listing by listing): a command line for
the reader's own data and models, through chapter 5's training engine (progress bar, bf16 autocast where the
processor has it, Ctrl-C saves a checkpoint and exits 130, atomic checkpoints). By default it is fast: the
frozen blocks run once per text and only the trainable tail trains (``tail.py``); --book runs the book's own
functions at the book's settings instead and prints the book's values.

    python -m ch06_classification.train --init-from data/gpt2-small-124M.safetensors     # the SMS Spam Collection
    python -m ch06_classification.train --book --init-from data/gpt2-small-124M.safetensors
    python -m ch06_classification.train --data reviews.csv --init-from models/Qwen3-0.6B --token mean \\
        --trainable last-2-blocks --balance --out checkpoints/reviews.pt

--data reads TSV (label<TAB>text), CSV with a header naming text and label, or JSON lines
({"text": ..., "label": ...}); the classes are the labels found, sorted by name (or --classes, in its order).
--init-from takes a checkpoint of this project, a bare state dict (chapter 5's model.pth), GPT-2's
model.safetensors or a Hugging Face model folder; texts are padded with the tokenizer's pad token, else its
end-of-text token. The end prints the test accuracy, each class's precision, recall and F1, and the confusion
matrix; classify texts with python -m ch06_classification.classify --checkpoint OUT.

Under torchrun --nproc_per_node=N it trains data-parallel: each process a shard of every epoch's texts, the
gradients averaged every step (``average_gradients``); rank 0 prints and saves. --book stays one process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ch02_text.cli import CliParser, add_device_argument, refuse_contradictions, run_cli
from ch02_text.data_files import find_data_file
from ch02_text.errors import UserInputError
from ch02_text.hardware import pick_device
from ch02_text.option_types import positive_int, unit_interval
from ch02_text.safe_files import check_writable
from ch02_text.seeds import set_seed
from ch05_pretraining.checkpoint import apply_checkpoint, read_checkpoint, save_checkpoint
from ch05_pretraining.engine.lora_options import add_lora_arguments, lora_config_of, trainable_count
from ch05_pretraining.engine.model_source import base_record, load_model_path, without_dropout
from ch05_pretraining.engine.resume import merge_resume_options, restore
from ch05_pretraining.engine.progress import add_fine_tuning_options, train_with_progress
from ch05_pretraining.engine.runtime import Runtime, average_gradients, finish_distributed, init_distributed
from ch05_pretraining.engine.trainer import StopRequest, TrainSettings, make_optimizer
from ch05_pretraining.previous_chapters import tokenizer_to_dict

from .adapted import APPENDIX_E, adapt_classifier, trained_state
from .labelled_data import LabelledTexts, balance, class_names, encode, pad_id, read_labelled
from .metrics import classification_report
from .pretrained import GPT2_WEIGHTS, gpt2_weights_path
from .previous_chapters import GPTModel
from .spam_data import DATA_FILE, format_counts, random_split, read_sms_spam, value_counts
from .tail import TOKEN_RULES, TRAINABLE, BookTask, CachedTexts, EpochSteps, TailTask, cache_hidden, \
    first_trained, make_classifier

DEFAULT_OUT = "checkpoints/classifier.pt"
BOOK = {"trainable": "last-block", "token": "last", "batch_size": 8, "lr": 5e-5, "eval_freq": 50, "eval_iter": 5,
        "seed": 123, "val_fraction": 0.1, "test_fraction": 0.2}  # --book's settings (and the defaults)
# --resume keeps these as saved (they decide the data, its order or the model); the schedule may change
FIXED_ON_RESUME = ("data", "classes", "val_fraction", "test_fraction", "val_file", "test_file", "balance",
                   "max_length", "init_from", "n_heads", "trainable", "token", "batch_size", "seed", "book", "no_amp",
                   "max_steps", "lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "lora_scale")
SCHEDULE_OPTIONS = ("epochs", "lr", "eval_freq", "eval_iter")
BOOK_ONLY_DEFAULTS = ("data", "val_file", "test_file", "classes", "max_length", "no_amp")  # --book refuses these


def build_parser():
    p = CliParser(prog="python -m ch06_classification.train", description=__doc__)
    data = p.add_argument_group("data")
    data.add_argument("--data", default=None, help="labelled texts: .csv (header with text and label), .jsonl / "
                      ".json (JSON lines) or else TSV (label<TAB>text) (None: the SMS Spam Collection, balanced "
                      "and split as the book)")
    data.add_argument("--classes", default=None,
                      help="comma-separated class names in this order (None: the labels found, sorted by name)")
    data.add_argument("--val-fraction", type=unit_interval, default=BOOK["val_fraction"],
                      help="share of --data for validation (unless --val-file)")
    data.add_argument("--test-fraction", type=unit_interval, default=BOOK["test_fraction"],
                      help="share of --data for the test (unless --test-file)")
    data.add_argument("--val-file", default=None, help="validation texts in a file of their own")
    data.add_argument("--test-file", default=None, help="test texts in a file of their own")
    data.add_argument("--balance", action=argparse.BooleanOptionalAction, default=None,
                      help="undersample every class to the smallest one's count, as the book (None: yes for the "
                           "SMS Spam Collection, no for --data)")
    data.add_argument("--max-length", type=positive_int, default=None,
                      help="tokens per text; longer ones are cut (None: the longest training text, at most the "
                           "model's context)")
    model = p.add_argument_group("model")
    model.add_argument("--init-from", default=None,
                       help=f"checkpoint, state dict (.pth), GPT-2 .safetensors or Hugging Face folder (None: "
                            f"data/{GPT2_WEIGHTS})")
    model.add_argument("--n-heads", type=positive_int, default=None,
                       help="head count of a bare state dict whose width is not a GPT-2 preset's")
    model.add_argument("--trainable", choices=TRAINABLE, default=BOOK["trainable"],
                       help="what trains: the head; the last block, final norm and head (the book's); the last "
                            "two blocks too; everything")
    model.add_argument("--token", choices=TOKEN_RULES, default=BOOK["token"],
                       help="the position a class is read from: the last (the book's, usually a pad), each "
                            "text's last real token, or the mean over its real tokens")
    add_fine_tuning_options(p, {**BOOK, "epochs": 5}, "texts", "AdamW learning rate (weight decay 0.1)")
    run = p.add_argument_group("run")
    run.add_argument("--out", default=DEFAULT_OUT, help="the classifier's checkpoint")
    run.add_argument("--book", action="store_true",
                     help="the book's functions and settings exactly (fp32, every block run at every step): the "
                          "book's printed values")
    run.add_argument("--no-amp", action="store_true", help="no bf16 autocast on the fast path")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")
    run.add_argument("--resume", default=None,
                     help="continue the run saved in this checkpoint (written at the end or at a Ctrl-C), with its "
                          "own data and model; --epochs, --lr, --eval-freq and --eval-iter may change")
    add_device_argument(run)
    add_lora_arguments(p)
    return p


def check_book(args, explicit) -> None:
    """--book runs the book's settings: an option that contradicts them is refused."""
    if not args.book:
        return
    refuse_contradictions(explicit, BOOK_ONLY_DEFAULTS, BOOK)
    if explicit.get("balance") is False:
        raise UserInputError("--book balances the data as the book: leave --no-balance or --book out")
    if args.lora_rank is not None:  # appendix E: its rank, alpha and scale on every linear layer
        book = APPENDIX_E
        for name, value in (("lora_rank", book.rank), ("lora_alpha", book.alpha), ("lora_scale", book.scale),
                            ("lora_dropout", 0.0), ("lora_targets", "all-linear")):
            if name in explicit and explicit[name] != value:
                flag = "--" + name.replace("_", "-")
                raise UserInputError(f"--book with LoRA runs appendix E (rank 16, alpha 16, scale book, every linear "
                                     f"layer): {flag} {explicit[name]} contradicts it; leave {flag} or --book out")


# -- data ------------------------------------------------------------------------------------------
def load_rows(args):
    """``(classes, train, validation, test)`` rows with class indices, printing the counts as the book does."""
    if args.data is None:
        rows = read_sms_spam(find_data_file(DATA_FILE))
        source = DATA_FILE
    else:
        rows = read_labelled(args.data)
        source = f"--data '{args.data}'"
    classes = class_names(rows, args.classes.split(",") if args.classes else None, source)
    print(format_counts(value_counts(rows)))
    if args.balance if args.balance is not None else args.data is None:
        rows = balance(rows, classes, args.seed)  # listing 6.2 (create_balanced_dataset for ham and spam)
        print(format_counts(value_counts(rows)))
    rows = encode(rows, classes)
    val_share = 0.0 if args.val_file else args.val_fraction
    test_share = 0.0 if args.test_file else args.test_fraction
    if val_share + test_share >= 1:
        raise UserInputError(f"--val-fraction {val_share} and --test-fraction {test_share} leave nothing to "
                             "train on: make their sum smaller than 1")
    train, val, test = random_split(rows, round(1 - val_share - test_share, 12), val_share, args.seed)
    val = _file_rows(args.val_file, classes, "--val-file") if args.val_file else val
    test = _file_rows(args.test_file, classes, "--test-file") if args.test_file else test
    print(f"{len(train)} training, {len(val)} validation and {len(test)} test texts")
    for split, name in ((train, "training"), (val, "validation"), (test, "test")):
        if not split:
            raise UserInputError(f"the {name} split is empty: use more data or other --val-fraction/--test-fraction")
    return classes, train, val, test


def _file_rows(path, classes, flag):
    rows = read_labelled(path)
    class_names(rows + [(name, "") for name in classes], classes, flag)  # every label one of the classes
    return encode(rows, classes)


def make_texts(train, val, test, tokenizer, pad, max_length, context_length):
    """The three ``LabelledTexts``, cut to ``max_length`` (None: the longest training text, at most the
    model's context); how many texts were cut is said in one line."""
    if max_length is not None and max_length > context_length:
        raise UserInputError(f"--max-length {max_length} exceeds the model's context of {context_length} tokens: "
                             f"give at most {context_length}")
    train_texts = LabelledTexts(train, tokenizer, pad, max_length)
    if train_texts.max_length > context_length:
        train_texts = LabelledTexts(train, tokenizer, pad, context_length)
    length = train_texts.max_length
    texts = [train_texts, LabelledTexts(val, tokenizer, pad, length), LabelledTexts(test, tokenizer, pad, length)]
    print(f"max length: {length} tokens")
    cut = sum(t.truncated for t in texts)
    if cut:
        print(f"{cut} texts longer than {length} tokens were cut to {length}")
    return texts


class BookTexts(Dataset):
    """``LabelledTexts`` as the book's ``SpamDataset`` yields them: ``(ids, label)``."""

    def __init__(self, texts):
        self.texts = texts

    def __getitem__(self, index):
        return self.texts.ids[index], self.texts.labels[index]

    def __len__(self):
        return len(self.texts)


def make_loaders(datasets, batch_size, seed, rank=0, world_size=1):
    """Listing 6.5's loaders: the training one shuffled with drop_last, the others in order. With several
    processes each rank trains on its own shard of every epoch's permutation."""
    torch.manual_seed(seed)
    train, val, test = datasets
    shard = (DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
             if world_size > 1 else None)
    loaders = (DataLoader(train, batch_size=batch_size, shuffle=shard is None, sampler=shard, drop_last=True),
               DataLoader(val, batch_size=batch_size, drop_last=False),
               DataLoader(test, batch_size=batch_size, drop_last=False))
    if len(loaders[0]) == 0:
        raise UserInputError(f"the training split has {len(train)} texts, fewer than one batch of {batch_size} per "
                             "process: lower --batch-size or use more data")
    return loaders


def whole_loaders(loaders):
    """The loaders the final accuracies are measured on: a sharded training loader made whole again."""
    if not isinstance(loaders[0].sampler, DistributedSampler):
        return loaders
    train = DataLoader(loaders[0].dataset, batch_size=loaders[0].batch_size, shuffle=True, drop_last=True)
    return (train, *loaders[1:])


# -- model -----------------------------------------------------------------------------------------
def load_start(args, device):
    """The model to fine-tune (dropout off, the book's or the fast layers), its tokenizer, path and base record
    (path and fingerprint, which a LoRA checkpoint keeps)."""
    path = args.init_from or gpt2_weights_path()
    if path is None:
        raise UserInputError(f"no model to start from: give --init-from (a checkpoint, a state dict, GPT-2's "
                             f"model.safetensors or a Hugging Face folder) or place data/{GPT2_WEIGHTS}")
    loaded, tokenizer, _ = load_model_path(path, device="cpu", n_heads=args.n_heads)
    impl = "book" if args.book else "fast"
    if args.book and loaded.cfg.family != "gpt2":
        raise UserInputError(f"--book runs the book's GPT-2 classes; '{path}' is a {loaded.cfg.family} model: "
                             "leave --book out")
    base = base_record(path, loaded)
    if impl == "fast" and loaded.impl == "fast":  # the loaded model itself, its tensors shared: no second copy
        return without_dropout(loaded.float()).to(device).eval(), tokenizer, path, base
    model = GPTModel(loaded.cfg.replace(drop_rate=0.0), impl=impl)
    model.load_state_dict(loaded.float().state_dict())
    return model.to(device).eval(), tokenizer, path, base


def main(argv=None):
    return run_cli(build_parser(), run, argv)


def run(args, explicit):
    """Check the options, then fine-tune (under torchrun in every process, rank 0 printing and saving)."""
    resume = None
    if args.resume:
        resume = read_checkpoint(args.resume)
        if not resume.get("classifier"):
            raise UserInputError(f"--resume '{args.resume}' is not a classifier's checkpoint: resume a language model "
                                 "with python -m ch05_pretraining.train --resume")
        options, changes = merge_resume_options(vars(args), explicit, resume, args.resume, FIXED_ON_RESUME,
                                                SCHEDULE_OPTIONS)
        args = argparse.Namespace(**{**options, "out": options.get("out") if "out" in explicit else args.resume})
        for line in changes:
            print(f"resume: {line}")
    check_book(args, explicit)
    lora = lora_config_of(args, explicit)
    if lora is not None and "trainable" in explicit:
        raise UserInputError("--trainable and --lora-rank: with LoRA the adapters and the new head train, the "
                             "model stays frozen; leave --trainable out")
    lora = APPENDIX_E if lora is not None and args.book else lora
    if args.book and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserInputError("--book runs the book's loop in one process: leave out torchrun, or --book")
    rank, world_size, device = init_distributed(pick_device(args.device))
    completed = False
    try:
        with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere) if rank else contextlib.nullcontext():
            state = fine_tune(args, lora, resume, device, rank, world_size)
        completed = True
        return state
    finally:
        finish_distributed(completed)


def fine_tune(args, lora, resume, device, rank=0, world_size=1):
    """Data, model, training and the final report; ``rank``/``world_size``: this process among several."""
    out = Path(args.out)
    check_writable(out, "--out")
    classes, train, val, test = load_rows(args)
    model, tokenizer, start_path, base = load_start(args, device)
    pad = pad_id(tokenizer)
    texts = make_texts(train, val, test, tokenizer, pad, args.max_length, model.context_length)
    runtime = Runtime.choose(device, book=args.book, amp=not args.no_amp)
    runtime.apply(device)
    settings = TrainSettings(epochs=args.epochs, eval_freq=args.eval_freq, eval_iter=args.eval_iter, lr=args.lr,
                             amp_dtype=runtime.amp_dtype, sample_tokens=0)
    torch.manual_seed(args.seed)  # the book seeds the new head
    model = make_classifier(model, len(classes), "head" if lora is not None else args.trainable)
    if lora is not None:
        adapt_classifier(model, lora, args.book)
    trained = f"LoRA rank {lora.rank}" if lora is not None else f"{args.trainable} trainable"
    print(f"model: {start_path}, {model.impl} layers, {trained}, class read off the "
          f"{args.token} token, {'bf16 autocast' if settings.amp_dtype else 'fp32'}, device {device}")
    if lora is not None:
        print(trainable_count(model))
    task, loaders = make_task(args, model, texts, device, settings, rank, world_size)
    if world_size > 1:
        average_gradients(model)  # data parallel: each step's gradients averaged over the processes
    if resume is None:
        before_training(task, model, loaders, device, settings, args.seed)
    set_seed(args.seed)  # the book seeds again before training
    optimizer = (torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1) if args.book
                 else make_optimizer(model, args.lr, 0.1, fused=runtime.fused_adamw))
    state = None
    if resume is not None:
        apply_checkpoint(resume, model, source=f"--resume '{args.resume}'")
        state = restore(resume, model, optimizer, settings, betas=(0.9, 0.999), weight_decay=0.1, epochs=args.epochs,
                        source=f"--resume '{args.resume}'")
    lora_entry = None if lora is None else {"config": lora.to_dict(), "base": base, "book": args.book}
    state = train_and_save(args, model, optimizer, task, loaders, device, settings, tokenizer, out, state,
                           {"classes": classes, "token": args.token, "max_length": texts[0].max_length,
                            "pad_id": pad, "trainable": args.trainable}, lora_entry, is_main=rank == 0)
    after_training(task, model, whole_loaders(loaders), device, settings, classes)
    print(f"saved the classifier to {out} (python -m ch06_classification.classify --checkpoint {out} \"text\")")
    return state


def make_task(args, model, texts, device, settings, rank=0, world_size=1):
    """The task and its (train, validation, test) loaders: the book's batches of ids, or cached hidden states
    (token ids when everything trains)."""
    if args.book:
        loaders = make_loaders([BookTexts(t) for t in texts], args.batch_size, args.seed)
        return BookTask(loaders[0], loaders[1]), loaders
    lora = args.lora_rank is not None  # adapters in every block: nothing before them is fixed
    first = 0 if lora else first_trained(model, args.trainable)
    cached = args.trainable != "all" and not lora
    datasets = ([CachedTexts(cache_hidden(model, t, first, device, lambda: _autocast(settings, device)), t)
                 for t in texts] if cached else texts)
    loaders = make_loaders(datasets, args.batch_size, args.seed, rank, world_size)
    return TailTask(loaders[0], loaders[1], args.token, first, cached), loaders


def _autocast(settings, device):
    """The training's autocast (bf16 where the runtime chose it), for the work done outside the trainer."""
    return torch.autocast(device.type, dtype=settings.amp_dtype, enabled=settings.amp_dtype is not None)


def before_training(task, model, loaders, device, settings, seed):
    """The book's accuracies (10 batches) and losses (5 batches) before fine-tuning."""
    torch.manual_seed(seed)  # as the book, before its first evaluation
    with _autocast(settings, device):
        accuracies = [task.accuracy(model, loader, device, num_batches=10) for loader in loaders]
        model.eval()
        with torch.no_grad():
            losses = [task.mean_loss(model, loader, 5, device) for loader in loaders]
    for name, accuracy in zip(("Training", "Validation", "Test"), accuracies):
        print(f"{name} accuracy: {accuracy*100:.2f}%")
    for name, loss in zip(("Training", "Validation", "Test"), losses):
        print(f"{name} loss: {loss:.3f}")


def train_and_save(args, model, optimizer, task, loaders, device, settings, tokenizer, out, state, classifier,
                   lora=None, is_main=True):
    """Chapter 5's trainer with the classifier's task; the checkpoint written atomically at the end, or at a
    Ctrl-C (exit 130), by the main process. With ``lora`` (its config and base) it holds the adapters and the
    head alone."""
    progress_args = argparse.Namespace(no_progress=args.no_progress, batch_size=args.batch_size,
                                       context_length=classifier["max_length"])
    stop = StopRequest()

    def save(state):
        if not is_main:
            return
        with stop.shielded(out):
            save_checkpoint(out, model, optimizer, step=state.global_step + 1, epoch=state.epoch,
                            tokenizer=tokenizer_to_dict(tokenizer), trainer_state=state.to_dict(),
                            rng=state.rng_now, run_options=vars(args), classifier=classifier, lora=lora,
                            model_state=None if lora is None else trained_state(model))

    try:
        with stop.installed():
            state, seconds, _ = train_with_progress(model, optimizer, EpochSteps(loaders[0], args.max_steps),
                                                    loaders[1], device, settings, None, state, progress_args,
                                                    is_main=is_main, stop=stop, task=task)
            save(state)
    except KeyboardInterrupt:
        print(f"interrupted again: stopped at once without saving; {out} is as it was", file=sys.stderr)
        raise SystemExit(130) from None
    if stop.requested:
        print(f"interrupted: saved the classifier as trained so far to {out} (continue with --resume {out})",
              file=sys.stderr)
        raise SystemExit(130)
    print(f"Training completed in {seconds / 60:.2f} minutes.")
    return state


def after_training(task, model, loaders, device, settings, classes):
    """The book's final accuracies over whole loaders, then the test set's per-class report."""
    with _autocast(settings, device):
        for name, loader in zip(("Training", "Validation", "Test"), loaders):
            print(f"{name} accuracy: {task.accuracy(model, loader, device)*100:.2f}%")
        predicted, true = task.predictions(model, loaders[2], device)
    print(classification_report(predicted.tolist(), true.tolist(), classes))


if __name__ == "__main__":
    main()
