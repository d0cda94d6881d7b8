"""Where a model to run comes from: a checkpoint of this project, a bare state dict, GPT-2's weights or a
Hugging Face folder, with its tokenizer; shared by ``generate`` and ``explore``.

Unlike ``checkpoint.load_model_file`` (weights only): the model arrives with the tokenizer it was trained
with, checked against its vocabulary, and the prompt its run started from (``--start-context``). A LoRA
checkpoint (adapters alone) arrives on its base, found by the path it names and checked by fingerprint; a PEFT
adapter folder (``--adapter``) on the base given. Both are merged into the weights unless ``merge=False``.

>>> # model, tokenizer, prompt = load_model(checkpoint="checkpoints/model.pt")
"""

from __future__ import annotations

from pathlib import Path

import torch

from ch02_text.errors import UserInputError
from ch02_text.option_types import positive_int

from ..adapters import fingerprint, read_peft_folder
from ..checkpoint import CheckpointError, apply_checkpoint, check_format, load_torch_file, model_of
from ..gpt2_weights import load_gpt2_safetensors
from ..hf_weights import load_hf
from ..previous_chapters import (
    GPTModel, LoRAConfig, adapted_layers, add_lora, choose_tokenizer, merge_and_unload, names_tokenizer,
    tokenizer_from_dict,
)

DEFAULT_PROMPT = "Every effort moves you"


def add_source_arguments(parser) -> None:
    """--checkpoint | --gpt2 | --hf (one of them), and --n-heads / --tokenizer for a bare state dict."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint written by ch05_pretraining.train, or a model state dict (.pth)")
    src.add_argument("--gpt2", metavar="SAFETENSORS",
                     help="GPT-2 weights in Hugging Face's layout: model.safetensors or its folder")
    src.add_argument("--hf", metavar="FOLDER",
                     help="a Hugging Face model folder (config.json, model.safetensors or shards, tokenizer.json)")
    parser.add_argument("--adapter", metavar="FOLDER", default=None,
                        help="a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to put "
                             "on the model given")
    parser.add_argument("--n-heads", type=positive_int, default=None,
                        help="head count of a bare state dict whose width is not a GPT-2 preset's")
    parser.add_argument("--tokenizer", default=None,
                        help="for a bare state dict or a folder without tokenizer.json: gpt2 or a tokenizer .json "
                             "file (None: gpt2 for a state dict, the folder's tokenizer.json); a checkpoint brings "
                             "its own")


def load_model(checkpoint=None, gpt2=None, hf=None, tokenizer=None, n_heads=None, device="cpu", adapter=None,
               merge=True):
    """``(model in eval mode, tokenizer, default prompt)`` of one source, the vocabulary checked against the
    tokenizer. A checkpoint carries its tokenizer and its run's --start-context; a bare state dict uses
    ``tokenizer``; GPT-2's weights GPT-2's; a model folder its tokenizer.json. Adapters (a LoRA checkpoint's,
    ``adapter``'s) are merged into the weights unless ``merge=False``."""
    prompt = DEFAULT_PROMPT
    if checkpoint:
        model, ckpt = load_checkpoint_model(checkpoint, device, n_heads)
        source = f"--checkpoint '{checkpoint}'"
        if "format" in ckpt:
            if n_heads is not None:
                raise UserInputError(f"--n-heads is read off a bare state dict; {source} stores its whole config: "
                                     "leave --n-heads out")
            prompt = (ckpt.get("run_options") or {}).get("start_context") or DEFAULT_PROMPT
            tok = _checkpoint_tokenizer(ckpt, tokenizer, source)
        else:
            tok = _state_dict_tokenizer(model, tokenizer, source)
    elif hf:
        source = f"--hf '{hf}'"
        model = load_hf(hf, device=device)
        tok = choose_tokenizer(tokenizer or _folder_tokenizer(hf, model.cfg.family))
    else:
        model = load_gpt2_safetensors(gpt2, device=device)
        source = f"--gpt2 '{gpt2}'"
        tok = choose_tokenizer(tokenizer or "gpt2")
    if adapter:
        if adapted_layers(model):
            raise UserInputError(f"--adapter '{adapter}' and {source}, which holds LoRA adapters already: export it "
                                 "merged first, then give that folder with --hf")
        read_peft_folder(model, adapter)
    if merge:
        merge_and_unload(model)
    if model.cfg.vocab_size < tok.n_vocab:
        raise CheckpointError(f"{source} has {model.cfg['vocab_size']:,} token embeddings but the tokenizer "
                              f"has {tok.n_vocab:,} ids: it was not trained with this tokenizer")
    return model.eval(), tok, encodable_prompt(prompt, tok)


def load_checkpoint_model(path, device="cpu", n_heads=None):
    """``(model, ckpt)`` of a checkpoint or a bare state dict; a LoRA checkpoint's adapters on their base."""
    raw = load_torch_file(path, device)
    if not (isinstance(raw, dict) and raw.get("lora")):
        return model_of(raw, path, device, n_heads)
    ckpt = check_format(raw, path)
    return adapted_model(ckpt, path, device), ckpt


def adapted_model(ckpt, path, device="cpu"):
    """A LoRA checkpoint's base (the path it names, checked by fingerprint) with its adapters."""
    model, _ = load_base(ckpt["lora"]["base"], path, device)
    add_lora(model, LoRAConfig.from_dict(ckpt["lora"]["config"]))
    apply_checkpoint(ckpt, model, source=f"checkpoint '{path}'")
    return model


def base_record(path, model) -> dict:
    """What a LoRA checkpoint keeps of its base: the path (absolute), the weights' fingerprint and the head
    count (which a bare state dict does not hold)."""
    return {"path": str(Path(path).resolve()), "fingerprint": fingerprint(model), "n_heads": model.cfg.n_heads}


def load_base(record, checkpoint, device="cpu"):
    """``(model, path)`` of the base a LoRA checkpoint names (``find_base``), checked by fingerprint."""
    path = find_base(record, checkpoint)
    model = load_weights_path(path, device, record.get("n_heads"))
    check_base(model, record, f"checkpoint '{checkpoint}'", path)
    return model, path


def find_base(record, checkpoint) -> Path:
    """The base a LoRA checkpoint names, where it was, else beside the checkpoint (a moved pair)."""
    stored = Path(record["path"])
    for candidate in (stored, Path(checkpoint).parent / stored.name):
        if candidate.exists():
            return candidate
    raise CheckpointError(f"checkpoint '{checkpoint}' holds LoRA adapters for the base '{stored}' (fingerprint "
                          f"{record['fingerprint']}), which is not there: put that model back, or beside the "
                          "checkpoint")


def check_base(model, record, source, base) -> None:
    found = fingerprint(model)
    if found != record["fingerprint"]:
        raise CheckpointError(f"{source} holds LoRA adapters for a base of fingerprint {record['fingerprint']}, but "
                              f"'{base}' has fingerprint {found}: it is another model (or was changed); give the "
                              "base the adapters were trained on")


def load_weights_path(path, device="cpu", n_heads=None):
    """The model of one path without its tokenizer (see ``load_model_path``), plain: a base."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf(path, device=device)
    if path.is_dir() or path.suffix == ".safetensors":
        return load_gpt2_safetensors(path, device=device)
    return merge_and_unload(load_checkpoint_model(path, device, n_heads)[0])  # a LoRA checkpoint's, merged


def without_dropout(model):
    """``model`` built with ``drop_rate`` 0 (fine-tuning as the book's chapters 6 and 7 do), its tensors shared,
    not copied: the module attributes that hold the rate are set where the model is built."""
    if model.cfg.drop_rate == 0:
        return model
    with torch.device("meta"):
        plain = GPTModel(model.cfg.replace(drop_rate=0.0), impl=model.impl)
    plain.load_state_dict(model.state_dict(), assign=True)
    if plain.cfg.tie_weights:
        plain.out_head.weight = plain.tok_emb.weight
    device = model.tok_emb.weight.device
    for rope in getattr(plain, "rope", {}).values():
        rope.reset_buffers(device)  # non-persistent buffers: computed, not read
    for name, buffer in model.named_buffers():  # the book's causal masks, if any
        if not name.startswith("rope"):
            plain.get_buffer(name).data = buffer
    return plain.train(model.training)


def load_model_path(path, tokenizer=None, device="cpu", n_heads=None, merge=True):
    """``load_model`` of one path, its kind read off the file: a folder with config.json is a Hugging Face
    folder, a ``.safetensors`` file (or a folder holding only one) GPT-2's weights, anything else a checkpoint of
    this project or a bare state dict (``--init-from`` of chapter 6's train)."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"'{path}' does not exist: give a checkpoint, a state dict (.pth), GPT-2's "
                             "model.safetensors or a Hugging Face model folder")
    if path.is_dir() and (path / "config.json").is_file():
        return load_model(hf=path, tokenizer=tokenizer, device=device, merge=merge)
    if path.is_dir() or path.suffix == ".safetensors":
        return load_model(gpt2=path, tokenizer=tokenizer, device=device, merge=merge)
    return load_model(checkpoint=path, tokenizer=tokenizer, device=device, n_heads=n_heads, merge=merge)


def load_model_of(args, device="cpu", merge=True):
    """``load_model`` of the options ``add_source_arguments`` added (generate, explore, export)."""
    return load_model(args.checkpoint, args.gpt2, args.hf, args.tokenizer, args.n_heads, device, args.adapter, merge)


def encodable_prompt(prompt: str, tok) -> str:
    """``prompt``, or where ``tok`` cannot encode it (a character tokenizer of a text without some of its
    letters) the first character it knows: a default prompt must not be the first error a reader sees."""
    try:
        tok.encode(prompt)
        return prompt
    except UserInputError:
        return tok.decode([0])


def _folder_tokenizer(folder, family) -> str:
    """What names a folder's tokenizer: GPT-2's for a GPT-2 folder, else the folder's tokenizer.json, which a
    folder exported from a character or own-BPE model lacks (said in one line)."""
    if family == "gpt2":
        return "gpt2"
    if not (Path(folder) / "tokenizer.json").is_file():
        raise UserInputError(f"--hf '{folder}' has no Hugging Face tokenizer (no tokenizer.json; a folder exported "
                             "from a character or own-BPE model has none): pass the one it was trained with as "
                             "--tokenizer FILE.json (an own BPE) or --tokenizer gpt2, or generate from the run's "
                             "checkpoint with --checkpoint, which carries its tokenizer")
    return str(folder)


def _checkpoint_tokenizer(ckpt, name, source):
    """A checkpoint of this project brings its own tokenizer, whatever --tokenizer says."""
    tok = tokenizer_from_dict(ckpt["tokenizer"], source)
    if name is not None and not names_tokenizer(name, tok):
        raise UserInputError(f"--tokenizer {name} is not the tokenizer {source} was trained with (a checkpoint "
                             "brings its own): leave --tokenizer out")
    return tok


def _state_dict_tokenizer(model, name, source):
    if name == "char":
        raise UserInputError(f"--tokenizer char is read off the training text, which the bare state dict {source} "
                             "does not carry: generate from a checkpoint written by train (it carries its tokenizer)")
    tok = choose_tokenizer(name or "gpt2")
    if model.cfg.vocab_size != tok.n_vocab:
        raise CheckpointError(f"{source} has {model.cfg.vocab_size:,} token embeddings but the tokenizer has "
                              f"{tok.n_vocab:,} ids: give the --tokenizer it was trained with")
    return tok
