"""Safe checkpoints (section 5.4, grown up): atomic writes, ``weights_only`` loads, clear errors.

What this adds over the book's ``torch.save(model.state_dict(), "model.pth")``: one
file holding everything needed to resume bit for bit (model, optimizer, config,
step, epoch, RNG states, tokenizer name, trainer state), written through a temp file
and a rename so a crash never leaves half a checkpoint, and loaded with
``weights_only=True`` so a checkpoint cannot run code.

>>> # save_checkpoint("run.pt", model, optimizer, step=10, epoch=1)
>>> # ckpt = load_checkpoint("run.pt", model, optimizer)     # -> dict with step, epoch, ...
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path

import torch

from .previous_chapters import UserInputError, atomic_write_bytes

FORMAT = "llms-from-scratch-checkpoint"
VERSION = 1


class CheckpointError(UserInputError):
    """A checkpoint that is missing, damaged, of another format, or for another model."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, model, optimizer=None, *, step=0, epoch=0, tokenizer="gpt2",
                    trainer_state=None, rng=None) -> Path:
    """Write a resumable checkpoint atomically; returns the path."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": dict(model.cfg),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "step": int(step),
        "epoch": int(epoch),
        "rng": rng_state() if rng is None else rng,
        "tokenizer": tokenizer,
        "trainer_state": trainer_state or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load and validate a checkpoint file (no model needed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist: check the path or train one first")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' is damaged or not a checkpoint ({type(exc).__name__}): "
            "re-create it or pick another file"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint '{path}' is not a {FORMAT} file (a bare state_dict or another tool's?): "
            "save it with save_checkpoint"
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"checkpoint '{path}' has version {ckpt.get('version')}, this code reads {VERSION}")
    return ckpt


def check_state_dict_fits(model, state_dict, source) -> None:
    """Raise CheckpointError naming the first parameter that is missing or has another shape."""
    own = model.state_dict()
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
    if model is not None:
        check_state_dict_fits(model, ckpt["model"], source)
        model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise CheckpointError(f"{source} holds no optimizer state: it cannot resume training")
        optimizer.load_state_dict(ckpt["optimizer"])


def model_from_checkpoint(path, device="cpu"):
    """Build a ``GPTModel`` from a checkpoint's config and load its weights."""
    from .previous_chapters import GPTModel

    ckpt = read_checkpoint(path, map_location=device)
    model = GPTModel(ckpt["config"])
    apply_checkpoint(ckpt, model, source=f"checkpoint '{path}'")
    return model.to(device), ckpt
