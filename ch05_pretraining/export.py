"""python -m ch05_pretraining.export: a checkpoint as a Hugging Face folder that every other tool reads.

    python -m ch05_pretraining.export --checkpoint checkpoints/qwen3-shakespeare.pt --out out/qwen3-shakespeare
    python -m ch05_pretraining.export --checkpoint checkpoints/model.pt --out out/gpt2-verdict

Writes config.json and model.safetensors (transformers.AutoModelForCausalLM.from_pretrained reads them with
the same logits), and the tokenizer where it has a Hugging Face form: a model folder's own tokenizer.json
(with tokenizer_config.json and generation_config.json), or GPT-2's, built from gpt2/vocab.bpe and
gpt2/encoder.json. A character or own-BPE tokenizer has none: the command says so in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ch02_text.cli import CliParser, cli_errors
from ch02_text.data_files import find_data_file
from ch02_text.safe_files import atomic_write_bytes, check_folder

from .checkpoint import CheckpointError, load_model_file
from .hf_weights import export_hf
from .previous_chapters import GPTModel, HFTokenizer, describe_tokenizer, tokenizer_from_dict


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.export", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train (or a model state dict .pth)")
    p.add_argument("--out", required=True, help="the folder to write (made if missing)")
    return p


def gpt2_tokenizer_json() -> str:
    """GPT-2's byte-level BPE as a tokenizer.json, from the files tiktoken's encoding is built from."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = find_data_file("gpt2/encoder.json")
    merges = find_data_file("gpt2/vocab.bpe")
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok.to_str()


def tokenizer_files(tokenizer) -> dict[str, dict | str] | None:
    """File name -> contents of the tokenizer's Hugging Face form, None where it has none."""
    if isinstance(tokenizer, HFTokenizer):
        files = {"tokenizer.json": tokenizer.tokenizer_json, "tokenizer_config.json": tokenizer.config}
        if tokenizer.generation:
            files["generation_config.json"] = tokenizer.generation
        return files
    if getattr(tokenizer, "name", None) == "gpt2":
        config = {"tokenizer_class": "GPT2TokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                  "unk_token": "<|endoftext|>", "model_max_length": 1024}
        return {"tokenizer.json": gpt2_tokenizer_json(), "tokenizer_config.json": config}
    return None


def export(checkpoint, out) -> list[str]:
    """Write the folder; returns the names of the files written."""
    out = Path(out)
    check_folder(out, "--out")
    model, ckpt = load_model_file(checkpoint)
    if not isinstance(model, GPTModel):
        raise CheckpointError(f"--checkpoint '{checkpoint}' holds a baseline of the ladder, which no other tool "
                              "reads: export a GPTModel checkpoint")
    tokenizer = tokenizer_from_dict(ckpt.get("tokenizer", "gpt2"), f"--checkpoint '{checkpoint}'")
    files = tokenizer_files(tokenizer)  # before anything is written: GPT-2's files must be found first
    export_hf(model, out)
    written = ["config.json", "model.safetensors"]
    for name, content in (files or {}).items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False)
        atomic_write_bytes(out / name, text.encode("utf-8"))
        written.append(name)
    if files is None:
        print(f"tokenizer.json not written: the checkpoint's tokenizer ({describe_tokenizer(tokenizer)}) has no "
              "Hugging Face form; use this project's generate --checkpoint for text")
    return written


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        written = export(args.checkpoint, args.out)
        print(f"wrote {', '.join(written)} to {args.out}")
        return written


if __name__ == "__main__":
    main()
