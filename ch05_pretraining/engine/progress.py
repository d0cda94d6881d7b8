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
