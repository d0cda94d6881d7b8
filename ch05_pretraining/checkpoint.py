"""Safe checkpoints (section 5.4, grown up): atomic writes, ``weights_only`` loads, clear errors.

What this adds over the book's ``torch.save(model.state_dict(), "model.pth")``: one
file holding everything needed to resume bit for bit (model, optimizer, config,
step, epoch, the trainer's RNG states, tokenizer, trainer state), written through a temp file
and a rename so a crash never leaves half a checkpoint, and loaded with
``weights_only=True`` so a checkpoint cannot run code.

>>> # save_checkpoint("run.pt", model, optimizer, step=10, epoch=1)
>>> # ckpt = load_checkpoint("run.pt", model, optimizer)     # -> dict with step, epoch, ...
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.serialization import config as serialization_config

from ch02_text.errors import UserInputError
from ch02_text.safe_files import atomic_writer

from .baselines import build_rung, split_legacy_rung
from .previous_chapters import GPT_CONFIG_124M, GPTModel, book_to_fast_state_dict, preset_heads, validate_config

FORMAT = "llms-from-scratch-checkpoint"
VERSION = 1


class CheckpointError(UserInputError):
    """A checkpoint that is missing, damaged, of another format, or for another model."""


def save_checkpoint(path, model, optimizer=None, *, step=0, epoch=0, tokenizer=None,
                    trainer_state=None, rng=None, run_options=None, model_state=None, optimizer_state=None,
                    classifier=None, lora=None, chat=None) -> Path:
    """Write a resumable checkpoint atomically; returns the path.

    ``run_options``: the command-line options of the run (plain values), so a resume can
    continue with them and refuse changes that would break it. ``model_state``/``optimizer_state``:
    states gathered already (a sharded model's, see engine/sharding.py) instead of the objects' own.
    ``lora``: the adapters' config and their base's path and fingerprint, for a ``model_state`` of the trained
    tensors alone (``adapter_state_dict``).
    ``chat``: an instruction-tuned model's prompt style: ``prompt_style``, ``chat_template`` (Jinja) and
    ``eos_token``, which ``generate --chat`` renders and stops at.
    ``classifier``: for a model whose output head is a classification head (chapter 6), what it classifies
    (class names, how texts are read); language-model loaders refuse such a checkpoint (``check_language_model``).
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "rung": getattr(model, "rung", None),  # a baseline of the ladder (baselines.py), None for GPTModel
        "impl": getattr(model, "impl", None),  # the kernels the optimizer state belongs to (not architecture)
        "model": model.state_dict() if model_state is None else model_state,
        "optimizer": optimizer_state if optimizer_state is not None else (
            None if optimizer is None else optimizer.state_dict()),
        "step": int(step),
        "epoch": int(epoch),
        "rng": rng,  # the trainer's RNG snapshot (engine/trainer.py's rng_state), if any
        "tokenizer": tokenizer or {"format": "gpt2"},  # the tokenizer itself (tokenizer_to_dict)
        "trainer_state": trainer_state or {},
        "run_options": run_options or {},
    }
    if classifier is not None:
        payload["classifier"] = classifier
    if lora is not None:  # LoRA: "model" holds the trained tensors only; the base is named here (adapters.py)
        payload["lora"] = lora
    if chat is not None:  # an instruction-tuned model's prompt style as a chat template (chapter 7)
        payload["chat"] = chat
    path = Path(path)
    with atomic_writer(path, direct=True) as f, without_zip_checksums():  # streamed: no copy of ~2 GB in memory
        torch.save(payload, f)
    return path


def without_zip_checksums():
    """``torch.save`` without the zip format's CRC-32 of each record, for as long as the context lasts.

    ``torch.load`` never checks them (a flipped byte in a tensor loads either way), yet computing them took
    a large share of saving the book model's 2 GB of weights and AdamW state (``python -m
    bench.checkpoint_speed``, bench/README.md); the atomic write and ``fsync`` are what keep a checkpoint whole. ``unzip -t``
    on such a file reports bad CRCs; ``torch.load`` reads it as any other.
    """
    return serialization_config.patch({"save.compute_crc32": False})


def load_torch_file(path, map_location="cpu", what="checkpoint"):
    """``torch.load(weights_only=True)`` where every failure is one sentence naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} '{path}' is a directory: give the checkpoint file inside it")
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist: check the path or train one first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{what} '{path}' cannot be read ({exc.strerror or exc})") from None
    except Exception:  # noqa: BLE001 - any unpickling failure means: not a checkpoint we can read
        kind = "a text file" if _looks_like_text(path) else "damaged or not a PyTorch checkpoint"
        raise CheckpointError(f"{what} '{path}' is {kind}: re-create it or pick another file") from None


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in head


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load and validate a checkpoint file (no model needed)."""
    return check_format(load_torch_file(path, map_location, "checkpoint"), path)


def check_format(ckpt, path) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = ("it holds only model weights (a state dict such as the walk-through's model.pth): "
                "python -m ch05_pretraining.generate --checkpoint reads it; training needs a checkpoint "
                "written by python -m ch05_pretraining.train"
                if isinstance(ckpt, dict) and "tok_emb.weight" in ckpt else "written by another tool?")
        raise CheckpointError(f"checkpoint '{path}' is not a {FORMAT} file: {hint}")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"checkpoint '{path}' has version {ckpt.get('version')}, this code reads {VERSION}")
    return ckpt


def check_state_dict_fits(model, state_dict, source) -> None:
    """Raise CheckpointError naming the first parameter that is missing or has another shape."""
    check_tensors_fit(model.state_dict(), state_dict, source)


def check_tensors_fit(own: dict, state_dict, source) -> None:
    """``check_state_dict_fits`` against the tensors ``own`` (some of a model's)."""
    for name, tensor in own.items():
        if name not in state_dict:
            raise CheckpointError(f"{source} does not fit this model: parameter {name} is missing from it")
        if tuple(state_dict[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source} does not fit this model: parameter {name} has shape "
                f"{tuple(state_dict[name].shape)} in the file but {tuple(tensor.shape)} in the model"
            )
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise CheckpointError(f"{source} does not fit this model: unexpected parameter {extra[0]}")


def load_checkpoint(path, model=None, optimizer=None, map_location="cpu") -> dict:
    """Read a checkpoint and load it into ``model`` (and ``optimizer``) if given.

    Without a model, build one from ``ckpt["config"]`` (see ``model_from_checkpoint``).
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    apply_checkpoint(ckpt, model, optimizer, f"checkpoint '{path}'")
    return ckpt


def apply_checkpoint(ckpt, model=None, optimizer=None, source="checkpoint") -> None:
    """Load an already-read checkpoint's weights (and optimizer state) after checking they fit."""
    if model is not None and ckpt.get("lora"):  # the adapters (and any other trained part) on their base
        trained = {name: t for name, t in model.state_dict().items() if name in ckpt["model"] or ".adapters." in name}
        check_tensors_fit(trained, ckpt["model"], source)
        model.load_state_dict(ckpt["model"], strict=False)
    elif model is not None:
        state = ckpt["model"]
        if isinstance(model, GPTModel):  # files of earlier versions in the book's layout migrate
            state = book_to_fast_state_dict(state)
        check_state_dict_fits(model, state, source)
        model.load_state_dict(state)
    if optimizer is not None:
        optimizer.load_state_dict(by_index(model, optimizer_state(ckpt, source)))


def optimizer_state(ckpt, source="checkpoint") -> dict:
    """The checkpoint's optimizer state; a checkpoint without one cannot resume training."""
    if ckpt["optimizer"] is None:
        raise CheckpointError(f"{source} holds no optimizer state: it cannot resume training")
    return ckpt["optimizer"]


def by_index(model, optimizer_state: dict) -> dict:
    """An optimizer state keyed by parameter index, as ``optimizer.load_state_dict`` takes it (a sharded run
    saves it keyed by parameter name; engine/sharding.py loads either into a sharded model)."""
    index = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    if not any(isinstance(k, str) for k in optimizer_state["state"]):
        return optimizer_state
    return {"state": {index[k]: v for k, v in optimizer_state["state"].items()},
            "param_groups": [{**g, "params": [index[p] for p in g["params"]]} for g in optimizer_state["param_groups"]]}


def checkpoint_impl(ckpt) -> str:
    """The kernels a checkpoint's optimizer state was made with ("book" or "fast"; a model state loads in either)."""
    return ckpt.get("impl") or ckpt["config"].get("impl") or "fast"


def model_from_checkpoint(path, device="cpu"):
    """Build a ``GPTModel`` from a checkpoint's config and load its weights."""
    ckpt = read_checkpoint(path, map_location=device)
    return _build(ckpt, path, device), ckpt


def check_language_model(ckpt, path) -> None:
    """A classifier's checkpoint (chapter 6) has a class head, not the vocabulary's: it generates no text."""
    if ckpt.get("classifier"):
        classes = ", ".join(ckpt["classifier"].get("classes", []))
        raise CheckpointError(f"checkpoint '{path}' is a text classifier ({classes}), not a language model: "
                              f"classify texts with python -m ch06_classification.classify --checkpoint {path}")


def _build(ckpt, path, device):
    check_language_model(ckpt, path)
    if ckpt.get("lora"):
        raise CheckpointError(f"checkpoint '{path}' holds LoRA adapters without their base: load it with "
                              "engine/model_source.load_model, which finds the base")
    config, legacy_rung = split_legacy_rung(ckpt["config"])
    model = build_rung(config, ckpt.get("rung") or legacy_rung)
    apply_checkpoint(ckpt, model, source=f"checkpoint '{path}'")
    return model.to(device)


def config_from_state_dict(sd: dict, n_heads=None, source="state dict") -> dict:
    """A ``GPTModel`` config read off a bare state dict's names and shapes.

    Everything shows in the shapes except the head count: ``n_heads``, else the GPT-2
    preset of that width.
    """
    if "tok_emb.weight" not in sd or "pos_emb.weight" not in sd:
        raise CheckpointError(f"{source} is not a GPTModel state dict (no tok_emb/pos_emb weights)")
    vocab_size, emb_dim = sd["tok_emb.weight"].shape
    n_heads = n_heads or preset_heads(emb_dim)
    if n_heads is None:
        raise CheckpointError(f"{source}: the head count of a width-{emb_dim} model is not in the file: "
                              "pass --n-heads")
    return validate_config({
        **GPT_CONFIG_124M, "vocab_size": vocab_size, "emb_dim": emb_dim,
        "context_length": sd["pos_emb.weight"].shape[0], "n_heads": n_heads,
        "n_layers": len({k.split(".")[1] for k in sd if k.startswith("trf_blocks.")}),
        "qkv_bias": any(k.endswith(("att.W_query.bias", "att.qkv.bias")) for k in sd),
        "block": "pre" if "final_norm.scale" in sd else "post",
        "family": "gpt2" if "final_norm.scale" in sd else "gpt1",
        "tie_weights": "out_head.weight" in sd and torch.equal(sd["out_head.weight"], sd["tok_emb.weight"]),
    })


def load_model_file(path, device="cpu", n_heads=None):
    """A ``GPTModel`` from our checkpoint or from a bare state dict (the book's ``model.pth``).

    Returns ``(model, ckpt)``; for a state dict ``ckpt`` holds just its ``config``.
    """
    return model_of(load_torch_file(path, device), path, device, n_heads)


def model_of(raw, path, device="cpu", n_heads=None):
    """``load_model_file`` of a file already read (``load_torch_file``)."""
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        ckpt = check_format(raw, path)
        return _build(ckpt, path, device), ckpt
    source = f"'{path}'"
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{source} is neither a checkpoint of this project nor a model state dict")
    cfg = config_from_state_dict(raw, n_heads, source)
    model = GPTModel(cfg)
    raw = book_to_fast_state_dict(raw)  # the book's layout (W_query, W_key, W_value) -> the one layout
    check_state_dict_fits(model, raw, source)
    model.load_state_dict(raw)
    return model.to(device), {"config": cfg, "tokenizer": "gpt2"}
