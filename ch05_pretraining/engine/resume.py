"""What ``train --resume`` keeps, what it lets change, and the state a resumed run starts from.

Unlike ``checkpoint.load_checkpoint`` (weights and optimizer into given objects): the policy of a resumed
run. The options that decide the model, its tokenizer or the order of the data stay as saved (giving another
value is refused, naming both); schedule options given again replace the saved ones and are reported; the
optimizer state, the RNG and the trainer's progress are put back so the run continues bit for bit.

>>> options, changes = merge_resume_options({"lr": 1e-3, "seed": 123}, {"lr": 1e-3},
...                                         {"run_options": {"lr": 4e-4, "seed": 123}, "config": {}}, "run.pt")
>>> options["lr"], changes
(0.001, ['--lr: 0.0004 -> 0.001'])
"""

from __future__ import annotations

from ch02_text.errors import UserInputError

from ..checkpoint import checkpoint_impl, optimizer_state
from ..previous_chapters import validate_config
from .sharding import load_optimizer_state
from .trainer import TrainState, set_rng_state

# On --resume these must stay as saved: they decide the model, its tokenizer or the order of the data.
FIXED_ON_RESUME = ("data", "train_ratio", "stride", "tokenizer", "init_from", "arch", "preset", "context_length",
                   "emb_dim", "n_layers", "n_heads", "n_kv_heads", "sliding_window", "n_experts", "n_experts_per_token",
                   "drop_rate", "tie_weights", "init", "decay", "book", "own_dropout", "batch_size", "grad_accum",
                   "seed", "lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "lora_scale", "adapter")
# These may be changed on --resume (the change is reported); not given, the saved value is used.
SCHEDULE_OPTIONS = ("epochs", "max_steps", "max_tokens", "lr", "weight_decay", "beta1", "beta2", "warmup_steps",
                    "min_lr", "grad_clip", "eval_freq", "eval_iter", "start_context", "no_amp", "save_every",
                    "keep_best")
RENAMED = {"experts_per_token": "n_experts_per_token"}  # options of earlier versions, by their name now
CONFIG_OPTIONS = ("context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "tie_weights")


def merge_resume_options(options: dict, explicit: dict, ckpt: dict, path, fixed=FIXED_ON_RESUME,
                         schedule=SCHEDULE_OPTIONS) -> tuple[dict, list[str]]:
    """``(options, changes)``: the saved run's options where none was given (``explicit``: those given on the
    command line), changes to the model or the data order refused; ``changes`` the schedule changes, as lines
    to report. ``fixed``/``schedule``: another command's lists (chapter 6's classifier)."""
    saved = {RENAMED.get(k, k): v for k, v in (ckpt.get("run_options") or {}).items()}
    cfg = ckpt["config"]  # what older checkpoints, without run_options, are checked against
    known = {k: cfg[k] for k in CONFIG_OPTIONS if k in cfg}
    if cfg:
        known.update(book=checkpoint_impl(ckpt) == "book", arch=validate_config(cfg).family)
    options = dict(options)
    for name in fixed:
        have = saved.get(name, known.get(name))
        if name in explicit and have is not None and explicit[name] != have:
            flag = "--" + name.replace("_", "-")
            raise UserInputError(
                f"{flag} {explicit[name]} differs from the checkpoint's {have} ('{path}'): leave {flag} out to "
                "continue the saved run, or train a new one with another --out")
        if name in saved:
            options[name] = saved[name]
    changes = []
    for name in schedule:
        if name not in saved:
            continue
        if name in explicit and explicit[name] != saved[name]:
            changes.append(f"--{name.replace('_', '-')}: {saved[name]} -> {explicit[name]}")
        elif name not in explicit:
            options[name] = saved[name]
    return options, changes


def restore(ckpt, model, optimizer, settings, *, betas, weight_decay, epochs, source) -> TrainState:
    """Load a checkpoint's optimizer state and RNG into a fresh run (its weights are loaded already); the betas
    and weight decay given now apply from here on. Refuses a run whose budget is spent already."""
    load_optimizer_state(model, optimizer, optimizer_state(ckpt, source))
    for group in optimizer.param_groups:
        group["betas"] = betas
        if group["weight_decay"] > 0:  # a no-decay group (--decay matrices) stays at 0
            group["weight_decay"] = weight_decay
    state = TrainState.from_dict(ckpt["trainer_state"])
    if state.rng_now is not None:
        set_rng_state(state.rng_now)
    if settings.max_steps is not None and state.global_step + 1 >= settings.max_steps:
        raise UserInputError(f"{source} already took {state.global_step + 1} steps: "
                             f"pass --max-steps larger than {state.global_step + 1} to train on")
    if settings.max_steps is None and state.epoch >= epochs:
        raise UserInputError(f"{source} already finished {state.epoch} epochs: "
                             f"pass --epochs larger than {state.epoch} to train on")
    return state
