"""Open-weight shapes against transformers: greedy decoding speed in fp32 and bf16, and loading memory.

    python -m bench.hf_speed                          # Llama-3.2-1B and Qwen3-0.6B shapes, 200 new tokens
    python -m bench.hf_speed --shapes qwen3-0.6b --new-tokens 50
    python -m bench.hf_speed --shapes all --decode-only --new-tokens 100   # every family (FAMILY_SHAPES)

For each shape a model with random weights is written by transformers (``save_pretrained``, bf16, as real
folders are), then, as separate processes, loaded by ``load_hf`` and by ``from_pretrained``: peak RSS above
the process's baseline (every weight read once, so memory-mapped pages count) and seconds. Then both decode
the same prompt greedily, batch 1, in fp32 and in bf16, beside the memory-bandwidth limit (weight bytes read
per token / measured copy bandwidth): ours with nn.Linear, transformers, ours with the weights packed for
decoding (``PackedLinear``) and, in bf16, ours through ATen's matrix-vector kernel (``MatVecLinear``); the row
that ``generate`` runs on this CPU is marked (``decoding_layer``), and the tokens are compared. Each way is
timed in ``--repeats`` rounds that take every way in turn: the table gives the best tokens/s, and the median
over the rounds of its share of the limit, each round's limit from the copy bandwidth measured just before it
(this VM's bandwidth drifts between about 30 and 50 GB/s from minute to minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from bench.generate_speed import memory_bandwidth, weight_bytes_per_token
from bench.timing import machine_line
from ch04_gpt.config import model_config, scaled_config
from ch04_gpt.generate import generate_text_cached
from ch04_gpt.packed_linear import MatVecLinear, PackedLinear, decoding_layer, pack_for_decoding

LOAD_SNIPPET = """
import json, sys, time, torch
kind, folder, dtype = sys.argv[1:4]
def high_water_kb():  # this process's own peak (ru_maxrss would carry the parent's over the exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
dtype = getattr(torch, dtype)
if kind == "ours":
    from ch05_pretraining.hf_weights import load_hf
else:
    import transformers
base = high_water_kb()
start = time.perf_counter()
if kind == "ours":
    model = load_hf(folder, dtype=dtype)
else:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
seconds = time.perf_counter() - start
with torch.no_grad():  # touch every page of every weight: a memory-mapped file counts once it is read
    sum(float(p.detach().reshape(-1)[::1024].float().sum()) for p in model.parameters())
peak = high_water_kb()
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"seconds": seconds, "peak_kb": peak - base, "weights": weights}))
"""


# Every family at about a billion parameters or less: its published shape where one is that small, else its
# parts on a smaller shape (``scaled_config``: the family's ratios kept), so that fp32 fits a 24 GB machine.
FAMILY_SHAPES = {
    "llama": ("llama-3.2-1b", {}), "qwen3": ("qwen3-0.6b", {}), "gemma3": ("gemma3-1b", {}),
    "olmo2": ("olmo2-1b", {}),
    "mistral": ("mistral-7b", dict(emb_dim=2048, n_layers=16, n_heads=16)),
    "olmo3": ("olmo3-7b", dict(emb_dim=2048, n_layers=16, n_heads=16)),
    # mixtures of experts at half the layers: transformers' load of 16 (fp32) runs a 24 GB machine out of memory
    "mixtral": ("mixtral-8x7b", dict(emb_dim=1024, n_layers=8, n_heads=16)),
    "qwen3-moe": ("qwen3-30b-a3b", dict(emb_dim=1024, n_layers=8, n_heads=16, n_experts=32)),
}


def shape_config(shape: str):
    """A preset by name, or a family's bench shape (``FAMILY_SHAPES``), at a context of 2048."""
    if shape in FAMILY_SHAPES:
        preset, sizes = FAMILY_SHAPES[shape]
        return scaled_config(preset, **sizes, context_length=2048)
    return model_config(shape, context_length=2048)


def write_random_folder(shape: str, folder: str) -> None:
    import transformers

    from ch05_pretraining.hf_weights import hf_config

    config = hf_config(shape_config(shape))
    hf = transformers.AutoConfig.for_model(**config)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = transformers.AutoModelForCausalLM.from_config(hf, dtype=torch.bfloat16)
    model.save_pretrained(folder)


def load_cost(kind: str, folder: str, dtype: str) -> dict:
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, kind, folder, dtype], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def decode_rates(folder: str, dtype, n: int, repeats: int) -> tuple[list[tuple], bool]:
    """``(name, tokens/s, weight bytes per token)`` of each way to decode, the best of ``repeats`` rounds that
    take every way in turn (this VM's speed drifts), and whether all gave the same tokens."""
    import transformers

    from ch05_pretraining.hf_weights import load_hf

    ours = load_hf(folder, dtype=dtype)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    idx = torch.tensor([[128, 2000, 311, 4000, 17]])
    per_token = weight_bytes_per_token(ours)  # before packing: the packed weights are buffers
    runs = {"ours, nn.Linear": lambda: generate_text_cached(ours, idx, n, 2048),
            "transformers generate": lambda: theirs.generate(idx, max_new_tokens=n, min_new_tokens=n,
                                                             do_sample=False, pad_token_id=0)}
    layers = {"packed": PackedLinear, "ATen matrix-vector": MatVecLinear}
    for label, layer in layers.items():
        if layer is MatVecLinear and dtype != torch.bfloat16:
            continue
        model = load_hf(folder, dtype=dtype)  # a copy of its own: packing replaces the layers
        pack_for_decoding(model, layer=layer)
        runs[f"ours, {label}"] = lambda model=model: generate_text_cached(model, idx, n, 2048)
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up
    rates, shares, bandwidths = {name: [] for name in runs}, {name: [] for name in runs}, []
    for _ in range(repeats):
        for name, fn in runs.items():
            bandwidth = memory_bandwidth(megabytes=256, repeats=3)  # now: this VM's bandwidth drifts
            start = time.perf_counter()
            fn()
            rates[name].append(n / (time.perf_counter() - start))
            shares[name].append(rates[name][-1] * per_token / bandwidth)
            bandwidths.append(bandwidth)
    picked = decoding_layer(dtype)  # what generate and the explorer run here (None: nn.Linear)
    picked = next((f"ours, {label}" for label, layer in layers.items() if layer is picked), "ours, nn.Linear")
    first = next(iter(outputs.values()))
    same = all(torch.equal(first, out) for out in outputs.values())
    rows = [(f"{name} (generate's choice here)" if name == picked else name, max(rates[name]), per_token,
             statistics.median(shares[name])) for name in runs]
    return rows, same, (min(bandwidths), max(bandwidths))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.hf_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["llama-3.2-1b", "qwen3-0.6b"],
                   help=f"presets, or families at a bench shape: {', '.join(FAMILY_SHAPES)} (all: every family)")
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3, help="rounds of decoding, each way in turn; the best counts")
    p.add_argument("--load-only", action="store_true", help="only the loading table")
    p.add_argument("--decode-only", action="store_true", help="only the decoding table")
    args = p.parse_args(argv)
    if args.shapes == ["all"]:
        args.shapes = list(FAMILY_SHAPES)
    bandwidth = memory_bandwidth()
    print(f"machine: {machine_line()}; memory bandwidth (copy) {bandwidth / 1e9:.1f} GB/s")
    for shape in args.shapes:
        with tempfile.TemporaryDirectory() as folder:
            write_random_folder(shape, folder)
            print(f"\n{shape} shape, random weights saved by transformers in bf16")
            print("| load | dtype | seconds | peak RSS | weights | peak / weights |")
            print("| --- | --- | ---: | ---: | ---: | ---: |")
            for dtype in () if args.decode_only else ("bfloat16", "float32"):
                for kind, label in (("ours", "load_hf"), ("transformers", "from_pretrained")):
                    cost = load_cost(kind, folder, dtype)
                    peak = cost["peak_kb"] * 1024
                    print(f"| {label} | {dtype} | {cost['seconds']:.1f} | {peak / 1e9:.2f} GB | "
                          f"{cost['weights'] / 1e9:.2f} GB | {peak / cost['weights']:.2f} |")
            if args.load_only:
                continue
            print(f"| decoding, {args.new_tokens} new tokens, batch 1 | dtype | tokens/s (best) | weight bytes per "
                  "token | share of the limit (median) |")
            print("| --- | --- | ---: | ---: | ---: |")
            for dtype in (torch.float32, torch.bfloat16):
                rows, same, (low, high) = decode_rates(folder, dtype, args.new_tokens, args.repeats)
                for name, rate, per_token, share in rows:
                    print(f"| {name} | {str(dtype)[6:]} | {rate:.2f} | {per_token / 1e9:.2f} GB | {share:.0%} |")
                print(f"| (all rows give the same tokens: {same}; copy bandwidth {low / 1e9:.1f}-{high / 1e9:.1f} "
                      "GB/s) | | | | |")
    return 0


if __name__ == "__main__":
    main()
