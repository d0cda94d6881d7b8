"""The training engine behind ``python -m ch05_pretraining.train``.

What this adds over the book's ``train_model_simple``: the same loop (same batches,
same RNG use, same printed lines in its book settings: tested equal) plus what real
runs need: resuming mid-epoch bit for bit, learning-rate warmup + cosine decay,
gradient clipping, gradient accumulation, bf16 autocast, a progress bar, a clean stop
on Ctrl-C at the next step boundary, and optional DistributedDataParallel. The schedule is in
``schedule.py``, the small-model recipe of the ladders in ``recipe.py``; what is trained for (the loss,
the evaluation, the end of an epoch) is a ``task`` (``task.py``: a language model by default).

>>> TrainSettings(lr=1e-3, warmup_steps=10, min_lr=1e-4).min_lr
0.0001
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import signal
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch

from ch02_text.errors import UserInputError

from ..previous_chapters import book_masks, dropout_generator
from ..book_loop import format_eval_line
from .schedule import lr_at
from .task import LanguageModelTask, sample_text, training_drafts  # noqa: F401 - the samples: defined in task.py


def make_optimizer(model, lr=4e-4, weight_decay=0.1, fused=False, betas=(0.9, 0.999), decay="all"):
    """The book's AdamW; ``fused=True`` is the fast path's single-kernel update (CPU and CUDA).

    ``decay="all"`` decays every parameter, as the book; ``"matrices"`` only weight matrices and
    embeddings, not LayerNorm scales/shifts and biases (GPT-2's and nanoGPT's practice). Frozen
    parameters are left out.
    """
    kwargs = {"fused": True} if fused else {}
    params = [p for p in model.parameters() if p.requires_grad]  # frozen ones (LoRA's base) take no state
    if decay == "matrices":
        params = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, **kwargs)


@dataclass
class TrainSettings:
    epochs: int = 10
    eval_freq: int = 5
    eval_iter: int = 5
    lr: float = 4e-4
    warmup_steps: int = 0
    min_lr: float | None = None
    grad_clip: float | None = None
    grad_accum: int = 1
    amp_dtype: torch.dtype | None = None  # torch.bfloat16 for autocast
    start_context: str = "Every effort moves you"
    sample_tokens: int = 50
    max_steps: int | None = None  # a budget in optimizer steps instead of epochs (the schedule spans it)
    loss_by_rows: bool = False  # losses and gradients by cross_entropy_by_rows (the CPU's fast path)
    eval_pass_tokens: int | None = None  # evaluate_in_passes with passes of this many tokens; None: the book's

    def __post_init__(self):
        if self.max_steps is not None and self.max_steps < 1:
            raise UserInputError(f"--max-steps must be >= 1, got {self.max_steps}")
        for name in ("epochs", "eval_freq", "eval_iter", "grad_accum"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        finite = all(math.isfinite(v) for v in (self.lr, self.min_lr or 0.0, self.grad_clip or 1.0))
        if not finite or self.lr <= 0 or (self.min_lr is not None and not 0 <= self.min_lr <= self.lr):
            raise UserInputError(f"need a finite --lr > 0 and 0 <= --min-lr <= --lr "
                                 f"(lr={self.lr}, min-lr={self.min_lr})")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise UserInputError(f"--grad-clip must be a finite number > 0, got {self.grad_clip}")
        if self.warmup_steps < 0:
            raise UserInputError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")


# -- the random state a resumed run continues from ------------------------------------------------
def rng_state(dropout: torch.Generator | None = None) -> dict:
    """The global generators' states, and ``dropout``'s (a model's own dropout generator) if given."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if dropout is not None:
        state["dropout"] = dropout.get_state()
    return state


def set_rng_state(state: dict, dropout: torch.Generator | None = None) -> None:
    """Put back what ``rng_state`` took (``dropout``'s too, when the snapshot has it)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if dropout is not None and "dropout" in state:
        dropout.set_state(state["dropout"])


@dataclass
class TrainState:
    """Everything about a run's progress that a checkpoint must carry to resume exactly."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = -1  # the book's convention: -1 before the first step
    tokens_seen: int = 0
    train_losses: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    track_tokens_seen: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    epoch_metrics: list = field(default_factory=list)  # what a task records at each epoch's end (accuracies)
    rng_epoch_start: dict | None = None  # RNG just before the epoch's data iterator was made
    rng_now: dict | None = None  # RNG after the last completed step
    best_val_loss: float | None = None
    best_step: int = -1  # the optimizer step whose evaluation gave best_val_loss

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


class StopRequest:
    """Turns the first Ctrl-C into a request to stop at the next step boundary, and a second one into a stop now;
    while a checkpoint is written (``shielded``) every Ctrl-C is only a request, so the write always finishes:
    the file is whole, the previous one replaced only then, and no temporary file is left."""

    def __init__(self):
        self.requested = False
        self.writing = None  # the checkpoint being written
        self.told = False

    def handle(self, signum=None, frame=None):
        if self.writing is not None:
            self.requested = True
            if not self.told:
                self.told = True
                print(f"Ctrl-C: finishing the checkpoint {self.writing} first (it takes a moment), then stopping",
                      file=sys.stderr, flush=True)
        elif self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        else:
            self.requested = True

    @contextlib.contextmanager
    def installed(self):
        try:
            previous = signal.signal(signal.SIGINT, self.handle)
        except ValueError:  # not in the main thread: no handler
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def shielded(self, path):
        """Ctrl-C while ``path`` is written: the write finishes (said once), then the run stops."""
        self.writing = path
        try:
            with self.installed():
                yield self
        finally:
            self.writing = None


class PhaseClock:
    """Wall time of a run's phases (``train --breakdown``): where a whole run's time goes.

    >>> clock = PhaseClock()
    >>> with clock.phase("evaluation"):
    ...     pass
    >>> list(clock.seconds)
    ['evaluation']
    """

    def __init__(self, device="cpu", start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.seconds = defaultdict(float)
        self.sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    @contextlib.contextmanager
    def phase(self, name: str):
        self.sync()  # a GPU's queued work belongs to the phase that queued it
        began = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - began

    def table(self, tokens: int = 0) -> str:
        """One line per phase (seconds, share of the whole run) and the total since ``start``."""
        total = time.perf_counter() - self.start
        rows = [(name, sec) for name, sec in self.seconds.items() if sec >= 0.005]
        rows.append(("the rest (loaders, optimizer set-up, output)", total - sum(self.seconds.values())))
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {sec:8.2f} s  {100 * sec / total:5.1f} %" for name, sec in rows]
        steps = self.seconds.get("forward + backward", 0.0) + self.seconds.get("optimizer step", 0.0)
        if tokens and steps:
            lines.append(f"{'training steps alone':<{width}}  {tokens / steps:8.0f} tokens/s")
        lines.append(f"{'whole run':<{width}}  {total:8.2f} s  "
                     + (f"{tokens / total:.0f} tokens/s" if tokens else ""))
        return "\n".join(["breakdown of the whole run:", *lines])


class _NoClock:
    """Times nothing: what the trainer uses without ``--breakdown``."""

    def phase(self, name):
        return contextlib.nullcontext()


def unwrap(model):
    """The GPTModel inside torch.compile (``_orig_mod``) and/or DistributedDataParallel (``module``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


class Trainer:
    """Runs the book's loop with the extras in ``TrainSettings``; ``fit`` can resume a ``TrainState``."""

    def __init__(self, model, optimizer, train_loader, val_loader, device, settings: TrainSettings,
                 tokenizer=None, log=print, progress=None, is_main=True, on_step=None, clock=None, task=None):
        """``on_step(state)`` runs after every optimizer step, when ``state`` is complete and
        resumable (the CLI saves checkpoints there). ``clock``: a ``PhaseClock`` to time the phases.
        ``task``: what is trained for (``task.py``; None: chapter 5's ``LanguageModelTask``)."""
        self.model, self.optimizer = model, optimizer
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device, self.settings, self.tokenizer = torch.device(device), settings, tokenizer
        self.log, self.progress, self.is_main, self.on_step = log, progress, is_main, on_step
        self.raw_model = unwrap(model)
        self.dropout_generator = dropout_generator(self.raw_model)  # its state is part of the RNG snapshots
        self.book_masks = book_masks(self.raw_model)  # the book's dropout masks, drawn before each forward pass
        self.clock = clock or _NoClock()
        self.task = task or LanguageModelTask()
        self.steps_per_epoch = math.ceil(len(train_loader) / settings.grad_accum)
        self.total_steps = settings.max_steps or self.steps_per_epoch * settings.epochs

    def autocast(self):
        dtype = self.settings.amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def no_autograd(self):
        """Evaluation's context: inference mode (no autograd records at all), or ``no_grad`` under autocast,
        whose cache of bf16 weight casts inference mode turns off (every forward pass would cast every weight
        again: 6 passes per evaluation in the book's run; bench/README.md)."""
        return torch.no_grad() if self.settings.amp_dtype is not None else torch.inference_mode()

    def _epoch_batches(self, state: TrainState, resuming: bool):
        """The epoch's data iterator, fast-forwarded when resuming mid-epoch."""
        if resuming and state.batch_in_epoch > 0:
            set_rng_state(state.rng_epoch_start, self.dropout_generator)
            batches = iter(self.train_loader)
            for _ in range(state.batch_in_epoch):
                next(batches)
            set_rng_state(state.rng_now, self.dropout_generator)
            return batches
        state.rng_epoch_start = rng_state(self.dropout_generator)
        return iter(self.train_loader)

    def _set_epoch(self, epoch):
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new permutation every epoch
            sampler.set_epoch(epoch)

    def backward(self, input_batch, target_batch, group_size=1):
        """Forward (autocast if set) and backward of one micro-batch; returns the loss tensor.

        ``group_size``: micro-batches in this optimizer step; their gradients add up to the
        mean over the group.
        """
        masks_ahead = self.book_masks.ahead(tuple(input_batch.shape)) if self.book_masks else contextlib.nullcontext()
        with self.autocast(), masks_ahead:
            loss = self.task.loss(self, input_batch, target_batch, group_size)
        total = loss
        aux = self.raw_model.router_aux_loss() if hasattr(self.raw_model, "router_aux_loss") else None
        if aux is not None:  # mixture of experts: the load-balancing loss trains the routers
            total = loss + aux
            self.router_aux_loss = float(aux.detach())
        (total / group_size if group_size > 1 else total).backward()
        return loss

    def optimizer_step(self, state: TrainState):
        s = self.settings
        lr = lr_at(state.global_step + 1, s.lr, s.warmup_steps, self.total_steps, s.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if s.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        self.optimizer.step()
        state.global_step += 1

    def _evaluate(self, state: TrainState, epoch: int):
        with self.autocast(), self.no_autograd():
            train_loss, val_loss = self.task.evaluate(self)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.tensor([train_loss, val_loss], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(both)  # mean over processes
            train_loss, val_loss = (both / torch.distributed.get_world_size()).tolist()
        state.train_losses.append(train_loss)
        state.val_losses.append(val_loss)
        state.track_tokens_seen.append(state.tokens_seen)
        if state.best_val_loss is None or val_loss < state.best_val_loss:
            state.best_val_loss, state.best_step = val_loss, state.global_step
        if self.is_main:
            aux = getattr(self, "router_aux_loss", None)
            self.log(format_eval_line(epoch, state.global_step, train_loss, val_loss)
                     + ("" if aux is None else f", router aux loss {aux:.4f}"))
            if self.progress is not None:
                self.progress.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")

    def fit(self, state: TrainState | None = None, stop: StopRequest | None = None,
            stop_after_steps: int | None = None) -> TrainState:
        """Train until the budget is spent (``settings.epochs``, or ``settings.max_steps`` steps),
        ``stop`` is requested, or ``stop_after_steps`` steps are done.

        A ``max_steps`` run evaluates after its last step too, so its final losses are always known.
        """
        s, clock = self.settings, self.clock
        resuming = state is not None
        state = state or TrainState()
        if resuming and state.batch_in_epoch == 0 and state.rng_now is not None:
            set_rng_state(state.rng_now, self.dropout_generator)  # resuming at an epoch boundary
        self.model.train()
        epochs = itertools.count(state.epoch) if s.max_steps else range(state.epoch, s.epochs)
        for epoch in epochs:
            self._set_epoch(epoch)
            self.model.train()
            micro, n_batches = 0, len(self.train_loader)
            with clock.phase("data"):
                batches = self._epoch_batches(state, resuming)
            while True:
                with clock.phase("data"):
                    batch = next(batches, None)
                if batch is None:
                    break
                input_batch, target_batch = batch
                resuming = False
                if micro == 0:
                    self.optimizer.zero_grad()
                    # the epoch's last group may hold fewer micro-batches than grad_accum
                    group_size = min(s.grad_accum, n_batches - state.batch_in_epoch)
                with clock.phase("forward + backward"):
                    self.backward(input_batch, target_batch, group_size)
                micro += 1
                state.batch_in_epoch += 1
                tokens = math.prod(input_batch.shape[:2])  # (batch, tokens, ...): a task's inputs may be vectors
                state.tokens_seen += tokens
                if self.progress is not None:
                    self.progress.update(tokens)
                if micro < group_size:
                    continue
                micro = 0
                with clock.phase("optimizer step"):
                    self.optimizer_step(state)
                budget_spent = s.max_steps is not None and state.global_step + 1 >= s.max_steps
                on_schedule = state.global_step % s.eval_freq == 0
                if not on_schedule:  # a longer run (resumed with a larger budget) goes on from the RNG here
                    state.rng_now = rng_state(self.dropout_generator)
                if on_schedule or budget_spent:  # evaluating draws a permutation of the training data
                    with clock.phase("evaluation"):
                        self._evaluate(state, epoch)
                if on_schedule:
                    state.rng_now = rng_state(self.dropout_generator)
                if self.on_step is not None:
                    with clock.phase("checkpoints during the run"):
                        self.on_step(state)
                if budget_spent or (stop is not None and stop.requested) or (
                        stop_after_steps is not None and state.global_step + 1 >= stop_after_steps):
                    return state
            self.task.end_of_epoch(self, state)
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            state.rng_now = rng_state(self.dropout_generator)
        return state
