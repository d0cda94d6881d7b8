"""``python -m ch04_gpt.presets``: every preset's size, from its config alone (no model is built).

Unlike the chapter's estimate of the four GPT-2 sizes: one table for all the families of
``families.py``, with active parameters for mixtures of experts and the KV cache a token costs.

>>> rows = preset_rows()
>>> rows["qwen3-0.6b"]["params"], rows["mixtral-8x7b"]["active_params"] < rows["mixtral-8x7b"]["params"]
(596049920, True)
"""

from __future__ import annotations

from ch02_text.cli import CliParser

from .config import ALL_PRESETS, estimate, model_config
from .families import TITLES, WHAT_IT_CHANGES


def preset_rows() -> dict:
    rows = {}
    for name in ALL_PRESETS:
        cfg = model_config(name)
        rows[name] = {**estimate(cfg), "cfg": cfg}
    return rows


def window_text(cfg) -> str:
    if "sliding" not in cfg.layer_types:
        return "-"
    n_sliding = cfg.layer_types.count("sliding")
    share = "all" if n_sliding == cfg.n_layers else f"{n_sliding}/{cfg.n_layers} layers"
    return f"{cfg.sliding_window:,} ({share})"


def print_table(rows) -> None:
    print("| preset | family | parameters | active | KV cache / token (bf16) | layers | heads / kv | window |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, row in rows.items():
        cfg = row["cfg"]
        print(f"| {name} | {TITLES[cfg.family]} | {row['params'] / 1e6:,.1f}M | {row['active_params'] / 1e6:,.1f}M | "
              f"{row['kv_bytes_per_token_bf16'] / 1024:,.0f} KiB | {cfg.n_layers} | {cfg.n_heads} / {cfg.n_kv_heads} | "
              f"{window_text(cfg)} |")
    print("\nwhat each family changes:")
    for family, text in WHAT_IT_CHANGES.items():
        print(f"  {TITLES[family]}: {text}")


def main(argv=None):
    CliParser(prog="python -m ch04_gpt.presets", description=__doc__.splitlines()[0]).parse_args(argv)
    print_table(preset_rows())


if __name__ == "__main__":
    main()
