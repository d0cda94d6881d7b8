"""python -m ch05_pretraining.train: pretrain a GPT on a text file, resumably.

Defaults reproduce the book's run (GPT-124M, context 256, the-verdict 90/10 split,
batch 2, AdamW lr 4e-4 wd 0.1, 10 epochs, eval every 5 steps over 5 batches, seed 123)
on the fast path: the model's fast layers (fused-QKV SDPA attention, fused LayerNorm and
GELU), bf16 autocast where the CPU/GPU supports it, fused AdamW, threads = physical cores,
glibc keeping freed memory; on a CPU also the book's dropout masks drawn ahead on two cores,
the loss and its gradient a few rows of logits at a time, and evaluations in forward passes
of up to 1,536 tokens (3 of the book's batches). --book runs the book's exact loop settings
instead (same printed losses as python -m ch05_pretraining).
--data takes a UTF-8 text file or a token file from python -m ch05_pretraining.prepare.
Under torchrun --nproc_per_node=N it trains with DistributedDataParallel
(--batch-size is per process).

    python -m ch05_pretraining.train                          # the book's run, fast path
    python -m ch05_pretraining.train --epochs 2 --out checkpoints/run.pt
    python -m ch05_pretraining.train --resume checkpoints/run.pt --epochs 4
    python -m ch05_pretraining.train --data my_corpus.txt --context-length 512 --warmup-steps 100 \\
        --min-lr 4e-5 --grad-clip 1.0 --grad-accum 4
    python -m ch05_pretraining.train --data data/shakespeare.bin --arch gpt1 --max-steps 2000 --save-every 200 \\
        --keep-best --n-layers 4 --n-heads 4 --emb-dim 128 --context-length 64 --out checkpoints/shakespeare.pt

--tokenizer gpt2|char|FILE.json picks the tokenizer of a text file (a token file brings its own);
--arch gpt1 puts LayerNorm after each shortcut; --max-steps/--max-tokens replace --epochs as the
budget; --save-every and --keep-best write resumable checkpoints during the run.

Ctrl-C stops at the next step boundary and writes a resumable checkpoint. --resume
continues with the run's own options (data, model, batch size, schedule); schedule
options given again (--lr, --epochs, --eval-freq, ...) replace the saved ones, and
options that would change the model or the data order are refused.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import torch
from matplotlib.ticker import FuncFormatter, MaxNLocator
from torch.utils.data import DataLoader, DistributedSampler

from ch02_text.cli import CliParser, add_device_argument, cli_errors, explicit_options
from ch02_text.errors import UserInputError
from ch02_text.figures import save_figure
from ch02_text.hardware import pick_device
from ch02_text.option_types import fraction, nonneg_float, nonneg_int, positive_float, positive_int, unit_interval
from ch02_text.safe_files import check_writable
from ch02_text.seeds import set_seed

from .book_loop import plot_losses
from .checkpoint import CheckpointError, apply_checkpoint, read_checkpoint, save_checkpoint
from .engine.lora_options import adapt, add_lora_arguments, lora_config_of, lora_record, trainable_count
from .engine.model_source import load_base, load_model_path
from .engine.resume import merge_resume_options, restore
from .engine.runtime import Runtime, finish_distributed, init_distributed, seconds_since_process_start
from .engine.sharding import full_state, shard
from .engine.token_data import load_datasets
from .engine.progress import train_with_progress
from .engine.trainer import PhaseClock, StopRequest, TrainSettings, make_optimizer
from .hf_weights import load_hf
from .adapters import read_peft_folder
from .previous_chapters import (
    ALL_PRESETS, LoRAConfig, adapter_state_dict, FAMILIES, MODEL_PRESETS, SMALLEST, TITLES, TOKENIZER_CHOICES, GPTModel, describe_tokenizer,
    INITS, initialise, preset_values, scaled_config, tokenizer_to_dict, use_generator_dropout,
    use_prefetched_dropout, validate_config,
)

DEFAULT_OUT = "checkpoints/model.pt"
DROPOUT_SEED_OFFSET = 1_000_003  # the dropout generator's seed is --seed plus this (plus the rank)
START_PRESET = {**SMALLEST, "gpt1": "gpt2-small"}  # --arch -> the preset it starts from (GPT-1: GPT-2 small's sizes)

def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.train", description=__doc__)
    add_data_options(p)
    add_model_options(p)
    add_optimisation_options(p)
    add_output_options(p)
    add_run_options(p)
    add_lora_arguments(p)
    p.add_argument("--adapter", metavar="FOLDER", default=None,
                   help="with --init-from: keep training this PEFT LoRA adapter folder on it (its rank, alpha and "
                        "targets)")
    return p


def add_data_options(p):
    data = p.add_argument_group("data")
    data.add_argument("--data", default=None,
                      help="UTF-8 text file or prepared .bin token file (None: the-verdict.txt from data/ "
                           "or $LLMS_DATA_DIR)")
    data.add_argument("--train-ratio", type=unit_interval, default=0.90,
                      help="share of a text file's characters for training")
    data.add_argument("--stride", type=positive_int, default=None,
                      help="tokens between the starts of training windows (None: --context-length, the book's "
                           "non-overlapping windows; 1: every position, like nanoGPT's random offsets)")
    data.add_argument("--tokenizer", default="gpt2",
                      help=f"{TOKENIZER_CHOICES}; a token file brings its own")


def add_model_options(p):
    model = p.add_argument_group("model")
    model.add_argument("--arch", choices=list(FAMILIES), default=None,
                       help="the family's parts (python -m ch04_gpt.presets lists them; None: the preset's, "
                            "else gpt2); gpt1 = GPT-2 with LayerNorm after each shortcut")
    model.add_argument("--preset", default=None,
                       help="sizes to start from (None: the family's smallest; gpt2: gpt2-small, the book's): "
                            + ", ".join(ALL_PRESETS))
    model.add_argument("--context-length", type=positive_int, default=256, help="tokens per window (book: 256)")
    model.add_argument("--emb-dim", type=positive_int, help="override the preset's embedding size")
    model.add_argument("--n-layers", type=positive_int, help="override the preset's layer count")
    model.add_argument("--n-heads", type=positive_int, help="override the preset's head count")
    model.add_argument("--n-kv-heads", type=positive_int,
                       help="key/value heads (None: the preset's share of query heads per kv head)")
    model.add_argument("--sliding-window", type=positive_int,
                       help="keys a sliding layer sees (None: the preset's, at most half the context)")
    model.add_argument("--n-experts", type=positive_int, help="MoE families: experts per layer (None: the preset's)")
    model.add_argument("--n-experts-per-token", type=positive_int, help="MoE families: experts per token")
    model.add_argument("--init-from", metavar="MODEL", default=None,
                       help="continue pretraining a model: a Hugging Face folder (Llama 3, Qwen3, Gemma 3, ...: its "
                            "config, weights and tokenizer.json), GPT-2's model.safetensors or a checkpoint of this "
                            "project (with its tokenizer)")
    model.add_argument("--drop-rate", type=fraction, default=0.1, help="dropout rate (--init-from: the folder's, 0, "
                                                                          "unless given)")
    model.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                       help="share token embedding and output head (None: as the preset; the book's: no)")
    model.add_argument("--init", choices=INITS, default="auto",
                       help="initial weights: book = PyTorch's defaults, as the book; gpt2 = N(0, 0.02) with "
                            "scaled residual projections, as GPT-2 and nanoGPT; family = as the family's reference "
                            "implementation (N(0, initializer_range), zero biases, norms at identity); auto = book "
                            "for gpt2/gpt1, family for the others")


def add_optimisation_options(p):
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=positive_int, default=2, help="windows per micro-batch (per process)")
    opt.add_argument("--epochs", type=positive_int, default=10, help="total epochs (with --resume: the new total)")
    opt.add_argument("--max-steps", type=positive_int, default=None,
                     help="budget in optimizer steps instead of --epochs; the cosine schedule spans it")
    opt.add_argument("--max-tokens", type=positive_int, default=None,
                     help="budget in training tokens (turned into steps) instead of --epochs")
    opt.add_argument("--lr", type=positive_float, default=4e-4, help="peak learning rate")
    opt.add_argument("--weight-decay", type=nonneg_float, default=0.1, help="AdamW weight decay")
    opt.add_argument("--decay", choices=("all", "matrices"), default="all",
                     help="what weight decay applies to: all parameters (the book) or weight matrices and "
                          "embeddings only (GPT-2, nanoGPT)")
    opt.add_argument("--beta1", type=fraction, default=0.9, help="AdamW beta1")
    opt.add_argument("--beta2", type=fraction, default=0.999, help="AdamW beta2 (nanoGPT's small runs: 0.99)")
    opt.add_argument("--warmup-steps", type=nonneg_int, default=0, help="linear warmup steps")
    opt.add_argument("--min-lr", type=nonneg_float, default=None,
                     help="cosine-decay the rate to this floor after warmup (None: constant rate)")
    opt.add_argument("--grad-clip", type=positive_float, default=None, help="clip the gradient norm to this value")
    opt.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per optimizer step")


def add_output_options(p):
    ev = p.add_argument_group("evaluation and output")
    ev.add_argument("--eval-freq", type=positive_int, default=5, help="evaluate every N optimizer steps")
    ev.add_argument("--eval-iter", type=positive_int, default=5, help="batches per evaluation")
    ev.add_argument("--start-context", default="Every effort moves you", help="prompt for the per-epoch sample")
    ev.add_argument("--out", default=None,
                    help=f"checkpoint to write (None: the --resume file, else {DEFAULT_OUT})")
    ev.add_argument("--plot", default=None, help="loss plot PNG (None: next to --out, .png)")
    ev.add_argument("--resume", default=None, help="continue the run saved in this checkpoint")
    ev.add_argument("--save-every", type=positive_int, default=None,
                    help="also write the resumable checkpoint every N optimizer steps (atomic)")
    ev.add_argument("--keep-best", action="store_true",
                    help="keep the checkpoint of the lowest validation loss beside --out (NAME.best.pt)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar (shown only on a terminal)")


def add_run_options(p):
    run = p.add_argument_group("run")
    run.add_argument("--seed", type=int, default=123, help="seed for weights, data order and dropout")
    add_device_argument(run)
    run.add_argument("--book", action="store_true",
                     help="the book's exact loop: the book's layers, fp32, plain AdamW, glibc's default allocator")
    run.add_argument("--no-amp", action="store_true",
                     help="fast path without bf16 autocast (by default autocast runs where the CPU or GPU has "
                          "bf16; on a CPU, attention over short windows, under 256 tokens x 64 dims per head, "
                          "trains in fp32 within it: measured faster, bench/README.md)")
    run.add_argument("--own-dropout", action="store_true",
                     help="draw dropout masks from the model's own generator, four per 64-bit draw, instead of "
                          "the book's masks from the global generator (which, on a CPU and without --compile, "
                          "are drawn before each step on two cores; fewer random draws; the losses then leave "
                          "the book's, see bench/README.md)")
    run.add_argument("--threads", type=positive_int, default=None, help="CPU threads (None: physical cores)")
    run.add_argument("--fsdp", action="store_true",
                     help="under torchrun: shard parameters, gradients and AdamW state over the processes "
                          "(FSDP2) instead of replicating them (DDP); no per-epoch sample")
    run.add_argument("--breakdown", action="store_true",
                     help="print where the whole run's time went: start-up, data, forward + backward, optimizer, "
                          "evaluation, samples, checkpoints, plot")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the model (opt-in: measured slower on CPU here, see bench/README.md)")


def plural(n: int, word: str) -> str:
    """Count and noun, the noun in the plural unless the count is one.

    >>> plural(1, "batch"), plural(3, "window")
    ('1 batch', '3 windows')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("ch") else f"{n} {word}s"


# -- data ----------------------------------------------------------------------------------
def make_loaders(args, train_ds, val_ds, rank=0, world_size=1, seed=123):
    """The book's loaders (shuffled, drop_last training; ordered validation); with several
    processes each rank gets its own shard of every epoch's permutation."""
    if world_size > 1:
        sampler = DistributedSampler(train_ds, num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=seed, drop_last=True)
        train_loader = DataLoader(train_ds, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    else:
        train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, shuffle=False, drop_last=False)
    if len(train_loader) == 0:
        raise UserInputError(
            f"the training split has {plural(len(train_ds), 'window')}, fewer than one batch of {args.batch_size} "
            f"per process: lower --batch-size or --context-length, or use more data")
    return train_loader, val_loader


# -- model --------------------------------------------------------------------------------
def build_model_config(args, vocab_size):
    """The architecture of a new run: --arch's parts on --preset's sizes, with the size options applied."""
    preset = args.preset or START_PRESET[args.arch or "gpt2"]
    arch = args.arch or ("gpt2" if preset in MODEL_PRESETS else preset_values(preset)["family"])
    if arch != "gpt2" and args.book:
        raise UserInputError(f"--book runs the book's GPT-2 classes: --arch {arch} needs the fast path (leave --book out)")
    tie = {} if args.tie_weights is None else {"tie_weights": args.tie_weights}
    cfg = scaled_config(preset, arch, emb_dim=args.emb_dim, n_layers=args.n_layers, n_heads=args.n_heads,
                        n_kv_heads=args.n_kv_heads, sliding_window=args.sliding_window, n_experts=args.n_experts,
                        n_experts_per_token=args.n_experts_per_token, vocab_size=vocab_size,
                        context_length=args.context_length, drop_rate=args.drop_rate, **tie)
    say_kv_heads(preset, cfg, args)
    return cfg


def say_kv_heads(preset, cfg, args) -> None:
    """--n-heads without --n-kv-heads keeps the preset's query heads per kv head; where the new head count
    cannot, one line says what was chosen."""
    base = preset_values(preset)
    if args.n_heads is None or args.n_kv_heads is not None or not base.get("n_kv_heads"):
        return
    group = base["n_heads"] // base["n_kv_heads"]
    if cfg.n_heads // cfg.n_kv_heads != group:
        print(f"note: {preset} has {group} query heads per kv head, which {cfg.n_heads} heads cannot keep: "
              f"{cfg.n_kv_heads} kv heads ({cfg.n_heads // cfg.n_kv_heads} per kv head; --n-kv-heads chooses)")


def check_outputs(args, out: Path, plot_path: Path, tokenizer) -> None:
    """Everything written during and after the run is checked before the first step."""
    check_writable(out, "--out")
    check_writable(plot_path, "--plot")
    if args.keep_best:
        check_writable(best_path(out), "--keep-best")
    try:
        ids = tokenizer.encode(args.start_context, allowed_special="all")
    except UserInputError as exc:
        raise UserInputError(f"--start-context: {exc}") from None
    if not args.start_context.strip() or not ids:
        raise UserInputError("--start-context is empty: give a prompt for the per-epoch sample")
    if args.max_steps and args.max_tokens:
        raise UserInputError("give --max-steps or --max-tokens, not both")
    if args.book and args.own_dropout:
        raise UserInputError("--own-dropout is part of the fast path; --book keeps the book's dropout: "
                             "give one of them")


def check_init_from(args, explicit) -> None:
    """--init-from: the folder decides the model, so the options that would decide it are refused."""
    deciding = [o for o in ("arch", "preset", "emb_dim", "n_layers", "n_heads", "n_kv_heads", "sliding_window",
                            "n_experts", "n_experts_per_token", "tie_weights", "book") if o in explicit]
    if deciding:
        flag = "--" + deciding[0].replace("_", "-")
        raise UserInputError(f"{flag} and --init-from: the folder's config.json decides the model; leave {flag} out")
    if "init" in explicit:
        raise UserInputError("--init and --init-from: the folder's weights are the initial weights; leave --init out")


def best_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.best{out.suffix}")


def main(argv=None):
    # a command line's --breakdown counts Python's start and the imports; a call from Python starts here
    since = seconds_since_process_start() if argv is None else None
    started = time.perf_counter() - (since or 0.0)
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = explicit_options(parser, argv if argv is not None else sys.argv[1:])
    with cli_errors():
        completed = False
        try:
            state = run(args, explicit, started)
            completed = True
            return state
        finally:
            finish_distributed(completed)


def run(args, explicit=None, started=None):
    explicit = {} if explicit is None else explicit
    if "epochs" in explicit and ("max_steps" in explicit or "max_tokens" in explicit):
        raise UserInputError("--epochs and --max-steps/--max-tokens both set the budget: give one of them")
    device = pick_device(args.device)
    started = time.perf_counter() if started is None else started
    clock = PhaseClock(device, start=started) if args.breakdown else None
    timed = clock.phase if clock else (lambda name: contextlib.nullcontext())
    if clock:
        clock.seconds["start-up: Python and imports"] = time.perf_counter() - started
    resume, changes = None, []
    if args.resume:
        resume = read_checkpoint(args.resume, map_location=device)
        options, changes = merge_resume_options(vars(args), explicit, resume, args.resume)
        args = argparse.Namespace(**options)
    lora = lora_config_of(args, explicit)
    check_lora(args, lora, resume)
    runtime = Runtime.choose(device, book=args.book, amp=not args.no_amp, own_dropout=args.own_dropout)
    # tokens per window: the option (restored on resume), or the model's context for checkpoints without options
    context_length = resume["config"]["context_length"] if resume is not None and not resume.get("run_options") \
        else args.context_length
    pretrained, base_path, its_tokenizer = start_from(args, explicit, context_length, timed, resume)
    with timed("start-up: reading and tokenizing the data"):
        data_path, tokenizer, train_ds, val_ds = load_datasets(
            args.data, args.tokenizer, context_length, train_ratio=args.train_ratio, stride=args.stride,
            saved_tokenizer=its_tokenizer if resume is None else stored_tokenizer(resume),
            tokenizer_given="tokenizer" in explicit)
    cfg = choose_config(args, explicit, resume, pretrained, tokenizer)
    out = Path(args.out or args.resume or DEFAULT_OUT)
    plot_path = Path(args.plot) if args.plot else out.with_suffix(".png")
    check_outputs(args, out, plot_path, tokenizer)
    runtime.apply(device, args.threads)

    rank, world_size, device = init_distributed(device)
    if args.fsdp and world_size < 2:
        raise UserInputError("--fsdp shards over several processes: start it with torchrun --nproc_per_node=N "
                             "(N >= 2)")
    set_seed(args.seed)
    train_loader, val_loader = make_loaders(args, train_ds, val_ds, rank, world_size, args.seed)
    tokens_per_step = args.batch_size * context_length * args.grad_accum * world_size
    settings = train_settings(args, runtime, cfg, tokens_per_step)

    with timed("start-up: building the model"):
        model, optimizer, lora_entry = make_model(args, cfg, runtime, device, rank, resume, pretrained, lora,
                                                  base_path)
    state = None if resume is None else restore(
        resume, model, optimizer, settings, betas=(args.beta1, args.beta2), weight_decay=args.weight_decay,
        epochs=args.epochs, source=f"checkpoint '{args.resume}'")

    model_for_training = wrap_model(model, device, rank, world_size, args)
    if rank != 0 and not args.fsdp:  # train in step with rank 0, log and save nothing
        return train_with_progress(model_for_training, optimizer, train_loader, val_loader, device, settings,
                                   tokenizer, state, args, is_main=False)[0]
    is_main = rank == 0  # with --fsdp every rank comes here: saving gathers from all of them
    if is_main:
        print_run_header(model, cfg, settings, device, world_size, data_path, train_loader, val_loader, args,
                         tokenizer, context_length)
        for line in changes:
            print(f"resume: {line}")

    stop = StopRequest()
    save, on_step = checkpoint_writers(args, model, optimizer, tokenizer, out, is_main, stop, lora_entry)

    try:
        with stop.installed():  # from the first step to the final checkpoint, no Ctrl-C is left to the default
            state, seconds, new_tokens = train_with_progress(
                model_for_training, optimizer, train_loader, val_loader, device, settings, tokenizer, state, args,
                on_step, is_main, clock, stop)
            with timed("final checkpoint"):
                save(out, state)
    except KeyboardInterrupt:  # a second Ctrl-C before the step ended: nothing is written
        print(f"interrupted again: stopped at once without saving; {out} is as it was", file=sys.stderr)
        raise SystemExit(130) from None
    stopped = stop.requested  # a Ctrl-C during the final write stops the run too, once the file is whole
    if is_main:
        report_end(state, stopped, seconds, new_tokens, out, plot_path, settings, train_loader, tokens_per_step,
                   args, clock, timed)
    return state


def train_settings(args, runtime, cfg, tokens_per_step) -> TrainSettings:
    """The trainer's settings from the options (a --max-tokens budget turned into steps) and the runtime's."""
    max_steps = args.max_steps or (math.ceil(args.max_tokens / tokens_per_step) if args.max_tokens else None)
    return TrainSettings(
        epochs=args.epochs, max_steps=max_steps, eval_freq=args.eval_freq, eval_iter=args.eval_iter, lr=args.lr,
        warmup_steps=args.warmup_steps, min_lr=args.min_lr, grad_clip=args.grad_clip,
        grad_accum=args.grad_accum, start_context=args.start_context,
        sample_tokens=0 if args.fsdp else 50,  # a sharded sample would need every rank: none
        **runtime.train_settings(cfg.vocab_size))


def checkpoint_writers(args, model, optimizer, tokenizer, out, is_main, stop, lora_entry=None):
    """``save(path, state)`` (gathering a sharded model's state on every rank, rank 0 writing; Ctrl-C during
    the write lets it finish: ``StopRequest.shielded``) and the ``on_step`` hook of --save-every and
    --keep-best. A LoRA run's checkpoint holds the adapters alone and ``lora_entry`` (their base)."""
    def save(path, state):
        model_state, optimizer_state = full_state(model, optimizer) if args.fsdp else (None, None)
        if lora_entry is not None:
            model_state = adapter_state_dict(model)
        if not is_main:
            return
        with stop.shielded(path):
            save_checkpoint(path, model, optimizer, step=state.global_step + 1, epoch=state.epoch,
                            tokenizer=tokenizer_to_dict(tokenizer), trainer_state=state.to_dict(),
                            rng=state.rng_now, run_options=vars(args), model_state=model_state,
                            optimizer_state=optimizer_state, lora=lora_entry)

    def on_step(state):
        if args.save_every and (state.global_step + 1) % args.save_every == 0:
            save(out, state)
        if args.keep_best and state.best_step == state.global_step:  # this step's evaluation is the best yet
            save(best_path(out), state)

    return save, on_step


def report_end(state, stopped, seconds, new_tokens, out, plot_path, settings, train_loader, tokens_per_step, args,
               clock, timed):
    """The end of a run on rank 0: exit 130 after Ctrl-C (the checkpoint saved), else the plot and the summary."""
    if stopped:
        print(f"interrupted: saved a resumable checkpoint to {out} (continue with --resume {out})",
              file=sys.stderr)
        raise SystemExit(130)
    if state.train_losses:
        with timed("loss plot"):
            save_figure(loss_figure(state, settings, len(train_loader) * tokens_per_step / args.grad_accum,
                                    tokens_per_step), plot_path.name, plot_path.parent)
    final = (f"; final train loss {state.train_losses[-1]:.3f}, val loss {state.val_losses[-1]:.3f}"
             if state.val_losses else "")
    print(f"trained {new_tokens:,} tokens in {seconds / 60:.2f} minutes ({new_tokens / seconds:.0f} tokens/s)"
          f"{final}; saved checkpoint {out} and loss plot {plot_path}")
    if clock is not None:
        print(clock.table(new_tokens))


def start_from(args, explicit, context_length, timed, resume):
    """``(model, its path, its tokenizer as a dict or None)`` to start from: --init-from's (a folder, GPT-2's
    file or a checkpoint), or on resuming a LoRA run the base its checkpoint names, checked by fingerprint;
    ``(None, None, None)`` for a run from scratch or a full resume. A folder's tokenizer is named in
    ``args.tokenizer`` (unless --tokenizer was given); a checkpoint's comes as a dict."""
    if resume is not None and resume.get("lora"):
        with timed("start-up: building the model"):
            model, base = load_base(resume["lora"]["base"], args.resume)
        return model, base, None
    if not args.init_from or resume is not None:
        return None, None, None
    check_init_from(args, explicit)
    path, saved_tokenizer = Path(args.init_from), None
    with timed("start-up: building the model"):
        if path.is_dir() and (path / "config.json").is_file():
            model = load_hf(path)
            if "tokenizer" not in explicit:
                args.tokenizer = "gpt2" if model.cfg.family == "gpt2" else args.init_from
        else:
            model, tok, _ = load_model_path(path)  # a LoRA checkpoint merged
            saved_tokenizer = None if "tokenizer" in explicit else tokenizer_to_dict(tok)
    if context_length > model.context_length:
        raise UserInputError(f"--context-length {context_length} exceeds the context of --init-from "
                             f"'{args.init_from}' ({model.context_length}): lower it")
    return model, path, saved_tokenizer


def check_lora(args, lora, resume) -> None:
    """What a LoRA run needs: a model to adapt; not the book's loop, not sharding (one line each)."""
    if lora is None and not args.adapter:
        return
    if lora is not None and args.adapter:
        raise UserInputError("--adapter brings its own rank, alpha and targets: leave the --lora-* options out")
    if not args.init_from and resume is None:
        flag = "--adapter" if args.adapter else "--lora-rank"
        raise UserInputError(f"{flag} adapts a trained model: give it with --init-from (a folder, GPT-2's "
                             "model.safetensors or a checkpoint)")
    for name in ("book", "fsdp"):
        if getattr(args, name):
            raise UserInputError(f"--{name} and LoRA: LoRA trains on the fast path, in one process or under DDP; "
                                 f"leave --{name} out")


def choose_config(args, explicit, resume, pretrained, tokenizer):
    """The architecture: a resumed checkpoint's, an --init-from folder's, or the options'; checked against
    the tokenizer (a folder's vocabulary may be padded past its tokenizer's ids)."""
    if resume is not None:
        cfg = validate_config(resume["config"])
    elif pretrained is not None:
        cfg = pretrained.cfg.replace(drop_rate=args.drop_rate) if "drop_rate" in explicit else pretrained.cfg
    else:
        cfg = build_model_config(args, tokenizer.n_vocab)
    if cfg.vocab_size != tokenizer.n_vocab and not (pretrained is not None and cfg.vocab_size > tokenizer.n_vocab):
        source = f"checkpoint '{args.resume}'" if resume is not None else f"--init-from '{args.init_from}'"
        raise CheckpointError(f"{source} has {cfg.vocab_size} token embeddings but the "
                              f"tokenizer has {tokenizer.n_vocab} ids")
    return cfg


def build_model(args, cfg, runtime, device, rank, resume, pretrained):
    """(model, optimizer) on ``device``: initial weights (the book's, GPT-2's, a folder's or the checkpoint's),
    own dropout if asked (else, on a CPU, the book's masks drawn ahead), sharded under --fsdp before the optimizer
    is made."""
    set_seed(args.seed)
    model = GPTModel(cfg, impl=runtime.impl)
    if pretrained is not None:  # its weights, as fp32 master weights (autocast computes in bf16 where it pays)
        model.load_state_dict(pretrained.float().state_dict())
    elif resume is None:
        initialise(model, args.init)
    model = model.to(device)
    if runtime.own_dropout and cfg.drop_rate > 0:  # its own stream: one per process under torchrun
        generator = torch.Generator(device).manual_seed(args.seed + DROPOUT_SEED_OFFSET + rank)
        use_generator_dropout(model, generator)
    elif runtime.masks_ahead and cfg.drop_rate > 0 and not args.compile:
        use_prefetched_dropout(model)  # the book's masks, drawn before each forward pass on two cores
    if resume is not None:
        apply_checkpoint(resume, model, source=f"checkpoint '{args.resume}'")
    if args.fsdp:
        shard(model)  # before the optimizer: it must hold the sharded parameters
    optimizer = make_optimizer(model, args.lr, args.weight_decay, fused=runtime.fused_adamw and not args.fsdp,
                               betas=(args.beta1, args.beta2), decay=args.decay)
    return model, optimizer


def make_model(args, cfg, runtime, device, rank, resume, pretrained, lora, base_path):
    """``(model, optimizer, the checkpoint's lora entry or None)``: a LoRA run's adapted base or the whole model."""
    if lora is None and not args.adapter:
        return (*build_model(args, cfg, runtime, device, rank, resume, pretrained), None)
    model, optimizer, lora = build_lora_model(args, runtime, device, resume, pretrained, lora)
    return model, optimizer, lora_record(lora, base_path, model)


def build_lora_model(args, runtime, device, resume, base, lora):
    """``(model, optimizer, LoRA config)`` of a LoRA run: the base itself (no copy, frozen, in its file's dtype
    where autocast computes in bf16), adapters from ``lora``, a --adapter folder or the resumed checkpoint,
    only they in the optimizer."""
    set_seed(args.seed)  # the adapters' A are drawn
    if resume is not None:
        lora = LoRAConfig.from_dict(resume["lora"]["config"])
    if args.adapter and resume is None:
        if runtime.amp_dtype is None:
            base.float()
        lora = read_peft_folder(base, args.adapter)
    else:
        adapt(base, lora, runtime.amp_dtype)
    model = base.to(device)
    if resume is not None:
        apply_checkpoint(resume, model, source=f"checkpoint '{args.resume}'")
    optimizer = make_optimizer(model, args.lr, args.weight_decay, fused=runtime.fused_adamw,
                               betas=(args.beta1, args.beta2), decay=args.decay)
    return model, optimizer, lora


def loss_figure(state, settings, tokens_per_epoch, tokens_per_step):
    """The book's loss plot, against epochs, or against optimizer steps for a --max-steps/--max-tokens budget."""
    per_unit = tokens_per_step if settings.max_steps else tokens_per_epoch
    fig = plot_losses([t / per_unit for t in state.track_tokens_seen], state.track_tokens_seen,
                      state.train_losses, state.val_losses)
    if settings.max_steps:
        fig.axes[0].set_xlabel("Optimizer steps")
    tokens_axis = fig.axes[1]  # a few readable ticks with thousands separators, however many tokens
    tokens_axis.xaxis.set_major_locator(MaxNLocator(nbins=4))
    tokens_axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    return fig


def stored_tokenizer(ckpt) -> dict:
    """A checkpoint's tokenizer as a dict (checkpoints written before tokenizers were stored: GPT-2's)."""
    saved = ckpt.get("tokenizer", "gpt2")
    return {"format": "gpt2"} if saved == "gpt2" else saved


def wrap_model(model, device, rank, world_size, args):
    """DistributedDataParallel under torchrun (unless sharded), torch.compile if asked: what the trainer calls."""
    if args.fsdp:
        set_seed(args.seed + rank)  # different dropout masks per process
    elif world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        set_seed(args.seed + rank)  # different dropout masks per process, same weights (DDP broadcasts)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=model.cfg.ff == "moe")  # experts no token chose
    return torch.compile(model) if args.compile else model


def print_run_header(model, cfg, settings, device, world_size, data_path, train_loader, val_loader, args,
                     tokenizer, window_tokens):
    """The run's two lines: the model (its own context), the data (the windows it is trained on)."""
    n_params = sum(p.numel() for p in model.parameters())
    window = f", window {cfg.sliding_window}" if "sliding" in cfg.layer_types else ""
    experts = f", {cfg.n_experts} experts ({cfg.n_experts_per_token} per token)" if cfg.ff == "moe" else ""
    print(f"model: {TITLES.get(cfg.family, cfg.family)}, {n_params:,} parameters, "
          f"{cfg.n_layers} layers, {cfg.n_heads} heads ({cfg.n_kv_heads} kv){window}{experts}, "
          f"context {cfg.context_length}, {model.impl} layers, {'bf16 autocast' if settings.amp_dtype else 'fp32'}, device {device}"
          + (f", {world_size} processes" if world_size > 1 else ""))
    print(f"data: {data_path.name}: {plural(len(train_loader), 'training batch')} of {args.batch_size}x"
          f"{window_tokens} tokens, {plural(len(val_loader), 'validation batch')}; "
          f"tokenizer {describe_tokenizer(tokenizer)}"
          + (f"; budget {settings.max_steps:,} steps" if settings.max_steps else ""))
    if any(".adapters." in name for name, _ in model.named_parameters()):
        print(trainable_count(model))



if __name__ == "__main__":
    main()
