"""The trainer run from a command line: a progress bar on a terminal and Ctrl-C as a clean stop.

Unlike ``trainer.Trainer.fit`` (the loop alone): what every training command (chapter 5's train, chapter 6's
classifier, chapter 7's instruction tuning) wraps around it, so each shows the same bar and stops the same way.
"""

from __future__ import annotations

import sys
import time

from .trainer import StopRequest, Trainer


def train_with_progress(model, optimizer, train_loader, val_loader, device, settings, tokenizer, state, args,
                        on_step=None, is_main=True, clock=None, stop=None, task=None):
    """Run the trainer with a progress bar on a terminal and Ctrl-C as a clean stop (``stop.requested``);
    ``task``: what is trained for (None: a language model; chapter 6 passes its classifier's).

    Returns ``(state, seconds, tokens trained in this process)``.
    """
    progress = None
    if is_main and not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        tokens_per_batch = args.batch_size * args.context_length
        done = 0 if state is None else state.epoch * len(train_loader) + state.batch_in_epoch
        batches = (settings.max_steps * settings.grad_accum if settings.max_steps
                   else settings.epochs * len(train_loader))
        progress = tqdm(total=batches * tokens_per_batch,
                        initial=done * tokens_per_batch, unit="tok", unit_scale=True, dynamic_ncols=True,
                        file=sys.stderr)
    log = progress.write if progress is not None else print if is_main else (lambda *_: None)
    trainer = Trainer(model, optimizer, train_loader, val_loader, device, settings,
                      tokenizer=tokenizer, log=log, progress=progress, on_step=on_step, is_main=is_main,
                      clock=clock, task=task)
    stop = StopRequest() if stop is None else stop
    start_time, start_tokens = time.perf_counter(), 0 if state is None else state.tokens_seen
    try:
        with stop.installed():
            state = trainer.fit(state, stop=stop)
    finally:
        if progress is not None:
            progress.close()
    return state, time.perf_counter() - start_time, state.tokens_seen - start_tokens


def add_fine_tuning_options(parser, book: dict, what="examples", lr_note="AdamW learning rate"):
    """The training group every fine-tuning command shares (chapter 6's classifier, chapter 7's train and dpo),
    its defaults the book's settings (``book``: epochs, lr, batch_size, seed, eval_freq, eval_iter)."""
    from ch02_text.option_types import positive_float, positive_int

    opt = parser.add_argument_group("training")
    opt.add_argument("--epochs", type=positive_int, default=book["epochs"],
                     help=f"epochs (the book's {book['epochs']})")
    opt.add_argument("--max-steps", type=positive_int, default=None,
                     help="end each epoch after N steps, as if its data ended there (a quick look)")
    opt.add_argument("--lr", type=positive_float, default=book["lr"], help=lr_note)
    opt.add_argument("--batch-size", type=positive_int, default=book["batch_size"], help=f"{what} per step")
    opt.add_argument("--seed", type=int, default=book["seed"], help="seed of the data order (and of a new head)")
    opt.add_argument("--eval-freq", type=positive_int, default=book["eval_freq"], help="evaluate every N steps")
    opt.add_argument("--eval-iter", type=positive_int, default=book["eval_iter"], help="batches per evaluation")
    return opt
