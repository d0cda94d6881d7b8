"""LoRA in the training commands: the ``--lora-*`` options, their check, and the model they make.

Unlike ``ch04_gpt/lora.py`` (the layers): what every training command (chapter 5's train, chapter 6's
classifier, chapter 7's instruction tuning) shares to train adapters instead of the whole model, so each
command states only where its base comes from. The base stays frozen and in the dtype it was loaded in (bf16
where the file and the processor have it: no fp32 master copy of weights that take no updates); the adapters
are fp32 and alone in the optimizer; the checkpoint holds them and the base's path and fingerprint.

>>> args = build_lora_parser().parse_args(["--lora-rank", "8", "--lora-targets", "q_proj,v_proj"])
>>> lora_config_of(args, {"lora_rank": 8, "lora_targets": "q_proj,v_proj"})
LoRAConfig(rank=8, alpha=16, dropout=0.0, targets=('q_proj', 'v_proj'), scale='peft')
"""

from __future__ import annotations

import torch

from ch02_text.cli import CliParser
from ch02_text.errors import UserInputError
from ch02_text.option_types import fraction, positive_float, positive_int

from ..previous_chapters import FAMILY_SPECS, LORA_GROUPS, LORA_SCALES, LoRAConfig, add_lora
from .model_source import base_record

LORA_OPTIONS = ("lora_alpha", "lora_dropout", "lora_targets", "lora_scale")  # meaningful with --lora-rank only


def family_names() -> str:
    """Each family's layer names, for --help: ``gpt2, gpt1: c_attn, c_proj, c_fc; llama, ...: q_proj, ...``."""
    by_names: dict[tuple, list[str]] = {}
    for key, spec in FAMILY_SPECS.items():
        names = []
        for name in spec.lora_names.values():
            names.extend(name if isinstance(name, tuple) else (name,))
        by_names.setdefault(tuple(dict.fromkeys(names)), []).append(key)
    return "; ".join(f"{', '.join(keys)}: {', '.join(names)}" for names, keys in by_names.items())


def add_lora_arguments(parser) -> None:
    group = parser.add_argument_group("LoRA (appendix E): train low-rank adapters, the model frozen")
    group.add_argument("--lora-rank", type=positive_int, default=None,
                       help="rank of the adapters; LoRA is on when given (None: no LoRA)")
    group.add_argument("--lora-alpha", type=positive_float, default=16,
                       help="alpha: the adapters' output is scaled by alpha / rank (PEFT's default)")
    group.add_argument("--lora-dropout", type=fraction, default=0.0, help="dropout on the adapters' input")
    group.add_argument("--lora-targets", default="all-linear",
                       help=f"comma-separated: {', '.join(LORA_GROUPS)} (the output head; attention and mlp are "
                            "all-linear), or the layers' names, by family: " + family_names()
                            + "; an MoE router (gate) only when named")
    group.add_argument("--lora-scale", choices=LORA_SCALES, default="peft",
                       help="peft: alpha / rank; rslora: alpha / sqrt(rank); book: alpha itself, as appendix E "
                            "writes alpha * (x @ A @ B)")


def build_lora_parser():
    """A parser of the LoRA options alone (the docstring's example, tests)."""
    parser = CliParser(prog="lora")
    add_lora_arguments(parser)
    return parser


def lora_config_of(args, explicit) -> LoRAConfig | None:
    """The options' ``LoRAConfig``, None without --lora-rank (where the other --lora-* options are refused)."""
    if args.lora_rank is None:
        given = [name for name in LORA_OPTIONS if name in explicit]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UserInputError(f"{flag} configures LoRA, which --lora-rank turns on: give --lora-rank R too")
        return None
    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    if not targets:
        raise UserInputError("--lora-targets is empty: give all-linear, attention, mlp, head or layer names")
    return LoRAConfig(rank=args.lora_rank, alpha=args.lora_alpha, dropout=args.lora_dropout, targets=targets,
                      scale=args.lora_scale)


def adapt(model, config: LoRAConfig, amp_dtype) -> None:
    """Put the adapters on ``model`` (the base frozen); a bf16 base is kept only where autocast computes in
    bf16, else it is made fp32 (a CPU without bf16). A target that matches no layer is one line."""
    if amp_dtype is None and any(p.dtype != torch.float32 for p in model.parameters()):
        model.float()
    try:
        add_lora(model, config)
    except ValueError as exc:
        raise UserInputError(f"--lora-targets: {exc}") from None


def lora_record(config: LoRAConfig, base_path, base_model) -> dict:
    """The checkpoint's ``lora`` entry: the adapters' config and the base they belong to."""
    return {"config": config.to_dict(), "base": base_record(base_path, base_model)}


def trainable_count(model) -> str:
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"LoRA: {trained:,} of {total:,} parameters train ({100 * trained / total:.2f} %)"
