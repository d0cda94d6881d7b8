"""Where a model to run comes from: a checkpoint of this project, a bare state dict, GPT-2's weights or a
Hugging Face folder, with its tokenizer; shared by ``generate`` and ``explore``.

Unlike ``checkpoint.load_model_file`` (weights only): the model arrives with the tokenizer it was trained
with, checked against its vocabulary, and the prompt its run started from (``--start-context``).

>>> # model, tokenizer, prompt = load_model(checkpoint="checkpoints/model.pt")
"""

from __future__ import annotations

from pathlib import Path

from ch02_text.errors import UserInputError
from ch02_text.option_types import positive_int

from ..checkpoint import CheckpointError, load_model_file
from ..gpt2_weights import load_gpt2_safetensors
from ..hf_weights import load_hf
from ..previous_chapters import choose_tokenizer, names_tokenizer, tokenizer_from_dict

DEFAULT_PROMPT = "Every effort moves you"


def add_source_arguments(parser) -> None:
    """--checkpoint | --gpt2 | --hf (one of them), and --n-heads / --tokenizer for a bare state dict."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint written by ch05_pretraining.train, or a model state dict (.pth)")
    src.add_argument("--gpt2", metavar="SAFETENSORS",
                     help="GPT-2 weights in Hugging Face's layout: model.safetensors or its folder")
    src.add_argument("--hf", metavar="FOLDER",
                     help="a Hugging Face model folder (config.json, model.safetensors or shards, tokenizer.json)")
    parser.add_argument("--n-heads", type=positive_int, default=None,
                        help="head count of a bare state dict whose width is not a GPT-2 preset's")
    parser.add_argument("--tokenizer", default=None,
                        help="for a bare state dict or a folder without tokenizer.json: gpt2 or a tokenizer .json "
                             "file (None: gpt2 for a state dict, the folder's tokenizer.json); a checkpoint brings "
                             "its own")


def load_model(checkpoint=None, gpt2=None, hf=None, tokenizer=None, n_heads=None, device="cpu"):
    """``(model in eval mode, tokenizer, default prompt)`` of one source, the vocabulary checked against the
    tokenizer. A checkpoint carries its tokenizer and its run's --start-context; a bare state dict uses
    ``tokenizer``; GPT-2's weights GPT-2's; a model folder its tokenizer.json."""
    prompt = DEFAULT_PROMPT
    if checkpoint:
        model, ckpt = load_model_file(checkpoint, device=device, n_heads=n_heads)
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
    if model.cfg.vocab_size < tok.n_vocab:
        raise CheckpointError(f"{source} has {model.cfg['vocab_size']:,} token embeddings but the tokenizer "
                              f"has {tok.n_vocab:,} ids: it was not trained with this tokenizer")
    return model.eval(), tok, encodable_prompt(prompt, tok)


def load_model_path(path, tokenizer=None, device="cpu", n_heads=None):
    """``load_model`` of one path, its kind read off the file: a folder with config.json is a Hugging Face
    folder, a ``.safetensors`` file (or a folder holding only one) GPT-2's weights, anything else a checkpoint of
    this project or a bare state dict (``--init-from`` of chapter 6's train)."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"'{path}' does not exist: give a checkpoint, a state dict (.pth), GPT-2's "
                             "model.safetensors or a Hugging Face model folder")
    if path.is_dir() and (path / "config.json").is_file():
        return load_model(hf=path, tokenizer=tokenizer, device=device)
    if path.is_dir() or path.suffix == ".safetensors":
        return load_model(gpt2=path, tokenizer=tokenizer, device=device)
    return load_model(checkpoint=path, tokenizer=tokenizer, device=device, n_heads=n_heads)


def load_model_of(args, device="cpu"):
    """``load_model`` of the options ``add_source_arguments`` added (generate, explore)."""
    return load_model(args.checkpoint, args.gpt2, args.hf, args.tokenizer, args.n_heads, device)


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
