"""LoRA fine-tuning steps against what a user would run instead: transformers + PEFT on the same model.

    python -m bench.lora_speed                 # Qwen3-0.6B's shape, random weights: about 15 minutes on 2 cores
    python -m bench.lora_speed --layers 4      # the same widths, 4 layers: a quick look

A Qwen3-0.6B-shaped model (random weights, written once as a Hugging Face folder in bf16, as the published
one is) fine-tuned with rank-16 adapters on every linear layer (alpha 32), context 512, batch 4, AdamW:
each setting runs in a process of its own, in turn (peak memory is that process's maximum resident set),
and prints the median seconds of its measured steps (after one warm-up step) as tokens/s.

* ours: ``ch05_pretraining.train``'s engine as the CLI runs it (the base kept in the file's bf16 under bf16
  autocast, fused AdamW over the adapters alone, the loss a few rows of logits at a time); ``--no-amp``:
  fp32 throughout;
* transformers + PEFT as their documentation loads a model: ``from_pretrained(dtype=torch.float32)``, the
  same under ``torch.autocast`` bf16 (what ``Trainer(bf16=True)`` does on a CPU), and
  ``from_pretrained(dtype=torch.bfloat16)``; ``get_peft_model`` with the same rank, alpha and targets;
  ``torch.optim.AdamW`` over the trainable parameters.

Then the whole command (``python -m ch05_pretraining.train --init-from FOLDER --lora-rank 16 ...``), timed
from outside, and what full fine-tuning of the model would need (``ch04_gpt.config.estimate``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.timing import machine_line

RANK, ALPHA, CONTEXT, BATCH = 16, 32, 512, 4
SETTINGS = {  # name: (child, dtype)
    "ours, bf16 autocast (the default)": ("ours", "bf16"),
    "ours, fp32 (--no-amp)": ("ours", "fp32"),
    "transformers + PEFT, fp32 load": ("theirs", "fp32"),
    "transformers + PEFT, fp32 load + bf16 autocast": ("theirs", "autocast"),
    "transformers + PEFT, bf16 load": ("theirs", "bf16"),
}


def config(layers):
    from ch04_gpt.config import model_config

    return model_config("qwen3-0.6b", n_layers=layers, context_length=CONTEXT)


def write_folder(folder: Path, layers: int) -> None:
    """A Qwen3-0.6B-shaped model with its family's random initial weights, as a bf16 Hugging Face folder."""
    from safetensors.torch import save_file

    from ch04_gpt.initial_weights import initialise
    from ch04_gpt.model import GPTModel
    from ch05_pretraining.hf_weights import hf_config, hf_state_dict

    torch.manual_seed(0)
    model = initialise(GPTModel(config(layers)), "family")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16) for k, v in hf_state_dict(model).items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**hf_config(model.cfg), "dtype": "bfloat16"}, indent=2))


def batch(vocab):
    ids = torch.randint(0, vocab, (BATCH, CONTEXT + 1), generator=torch.Generator().manual_seed(1))
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def ours(folder: Path, dtype: str):
    """One training step of ours, as the train CLI makes it: returns ``step()``."""
    from ch05_pretraining.engine.lora_options import adapt
    from ch05_pretraining.engine.runtime import Runtime
    from ch05_pretraining.engine.trainer import Trainer, TrainSettings, TrainState, make_optimizer
    from ch05_pretraining.hf_weights import load_hf
    from ch05_pretraining.previous_chapters import LoRAConfig

    device = torch.device("cpu")
    runtime = Runtime.choose(device, amp=dtype == "bf16")
    runtime.apply(device)
    model = load_hf(folder)
    adapt(model, LoRAConfig(rank=RANK, alpha=ALPHA, targets=("all-linear",)), runtime.amp_dtype)
    model.train()
    optimizer = make_optimizer(model, 1e-4, 0.0, fused=runtime.fused_adamw)
    inputs, targets = batch(model.cfg.vocab_size)
    loader = [(inputs, targets)]
    trainer = Trainer(model, optimizer, loader, loader, device,
                      TrainSettings(epochs=1, lr=1e-4, **runtime.train_settings(model.cfg.vocab_size)))
    state = TrainState()

    def step():
        optimizer.zero_grad()
        loss = trainer.backward(inputs, targets)
        trainer.optimizer_step(state)
        return float(loss)
    return step


def theirs(folder: Path, dtype: str):
    """One training step of transformers + PEFT: returns ``step()``."""
    import contextlib

    import peft
    import transformers

    from ch05_pretraining.engine.runtime import physical_cores

    torch.set_num_threads(physical_cores())
    load = torch.bfloat16 if dtype == "bf16" else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=load)
    model = peft.get_peft_model(model, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules="all-linear",
                                                       lora_dropout=0.0))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    inputs, targets = batch(model.config.vocab_size)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype == "autocast" \
        else contextlib.nullcontext

    def step():
        optimizer.zero_grad()
        with autocast():
            logits = model(input_ids=inputs).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        return float(loss)
    return step


def child(kind: str, folder: Path, dtype: str, steps: int) -> None:
    started = time.perf_counter()
    step = (ours if kind == "ours" else theirs)(folder, dtype)
    loaded = time.perf_counter() - started
    losses, times = [step()], []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": statistics.median(times), "peak_mib": peak_mib, "load_seconds": loaded,
                      "losses": losses}))


def run(argv) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.lora_speed", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def whole_command(folder: Path, steps: int, tmp: str) -> tuple[float, str]:
    from ch02_text.data_files import find_data_file

    argv = [sys.executable, "-m", "ch05_pretraining.train", "--init-from", str(folder), "--tokenizer", "gpt2",
            "--data", str(find_data_file("tinyshakespeare.txt")), "--lora-rank", str(RANK), "--lora-alpha",
            str(ALPHA), "--context-length", str(CONTEXT), "--batch-size", str(BATCH), "--max-steps", str(steps),
            "--eval-freq", "1000", "--eval-iter", "1", "--no-progress", "--out", f"{tmp}/lora.pt"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the train command failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.lora_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=28, help="layers of the model (28: Qwen3-0.6B's)")
    p.add_argument("--steps", type=int, default=2, help="measured steps per setting, after one warm-up step")
    p.add_argument("--child", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, Path(args.folder), args.dtype, args.steps)
    from ch04_gpt.config import estimate
    from ch02_text.hardware import bf16_supported

    print(f"machine: {machine_line()}; bf16 instructions: {bf16_supported(torch.device('cpu'))}")
    tokens = BATCH * CONTEXT
    print(f"model: Qwen3-0.6B's shape, {args.layers} layers, random weights; LoRA rank {RANK}, alpha {ALPHA}, every "
          f"linear layer; batch {BATCH} x {CONTEXT} tokens")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qwen3-shaped"
        write_folder(folder, args.layers)
        results = {}
        for name, (kind, dtype) in SETTINGS.items():
            results[name] = r = run(["--child", kind, "--dtype", dtype, "--folder", str(folder), "--steps",
                                     str(args.steps)])
            print(f"{name:<48} {tokens / r['seconds']:8.0f} tokens/s  peak {r['peak_mib']:7.0f} MiB  "
                  f"(first loss {r['losses'][0]:.3f})", flush=True)
        ours_bf16 = results["ours, bf16 autocast (the default)"]
        for name, r in results.items():
            if name.startswith("transformers"):
                print(f"ours (default) against {name[len('transformers + PEFT, '):]}: "
                      f"{r['seconds'] / ours_bf16['seconds']:.2f}x the tokens/s, "
                      f"{ours_bf16['peak_mib'] / r['peak_mib']:.2f}x the peak memory")
        fp32 = results["ours, fp32 (--no-amp)"], results["transformers + PEFT, fp32 load"]
        print(f"ours --no-amp against their fp32 load: {fp32[1]['seconds'] / fp32[0]['seconds']:.2f}x the tokens/s, "
              f"{fp32[0]['peak_mib'] / fp32[1]['peak_mib']:.2f}x the peak memory")
        seconds, out = whole_command(folder, args.steps + 1, tmp)
        print(f"the whole command (train --init-from FOLDER --lora-rank {RANK}, {args.steps + 1} steps, start-up, "
              f"two evaluations of one batch each and the checkpoint included): {seconds:.1f} s; "
              + next(line for line in out.splitlines() if line.startswith("LoRA:")))
    e = estimate(config(args.layers))
    print(f"full fine-tuning instead: {e['params']:,} parameters; AdamW in fp32 needs "
          f"{e['adamw_train_bytes_fp32'] / 2**30:.1f} GiB for weights, gradients and moments before activations")


if __name__ == "__main__":
    main()
