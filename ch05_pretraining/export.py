"""python -m ch05_pretraining.export: a checkpoint as a Hugging Face folder that every other tool reads.

    python -m ch05_pretraining.export --checkpoint checkpoints/qwen3-shakespeare.pt --out out/qwen3-shakespeare
    python -m ch05_pretraining.export --checkpoint checkpoints/model.pt --out out/gpt2-verdict

Writes config.json and model.safetensors (transformers.AutoModelForCausalLM.from_pretrained reads them with
the same logits), and the tokenizer where it has a Hugging Face form: a model folder's own tokenizer.json
(with tokenizer_config.json and generation_config.json), or GPT-2's, built from gpt2/vocab.bpe and
gpt2/encoder.json. A character or own-BPE tokenizer has none: the command says so in one line.

LoRA: a LoRA checkpoint (or any model given with --adapter, a PEFT adapter folder) is exported merged, the
adapters folded into the weights; --adapter-only writes the adapters alone as a PEFT folder instead
(adapter_config.json + adapter_model.safetensors), which peft.PeftModel.from_pretrained puts on the base:

    python -m ch05_pretraining.export --checkpoint checkpoints/lora.pt --out out/merged
    python -m ch05_pretraining.export --checkpoint checkpoints/lora.pt --adapter-only --out out/adapter
    python -m ch05_pretraining.export --hf models/Qwen3-0.6B --adapter downloads/my-adapter --out out/merged
"""

from __future__ import annotations

import json
from pathlib import Path

from ch02_text.cli import CliParser, cli_errors
from ch02_text.data_files import find_data_file
from ch02_text.safe_files import atomic_write_bytes, check_folder

from .adapters import write_peft_folder
from .checkpoint import CheckpointError, load_torch_file
from .engine.model_source import add_source_arguments, load_model_of
from .hf_weights import export_hf
from .previous_chapters import GPTModel, HFTokenizer, describe_tokenizer


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.export", description=__doc__)
    add_source_arguments(p)
    p.add_argument("--out", required=True, help="the folder to write (made if missing)")
    p.add_argument("--adapter-only", action="store_true",
                   help="write the LoRA adapters alone as a PEFT folder (a LoRA checkpoint's, or --adapter's), "
                        "not the merged model")
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


def export(args) -> list[str]:
    """Write the folder; returns the names of the files written."""
    out = Path(args.out)
    check_folder(out, "--out")
    model, tokenizer, _ = load_model_of(args, merge=not args.adapter_only)
    if not isinstance(model, GPTModel):
        raise CheckpointError(f"--checkpoint '{args.checkpoint}' holds a baseline of the ladder, which no other tool "
                              "reads: export a GPTModel checkpoint")
    if args.adapter_only:
        return write_peft_folder(model, out, base_name(args))
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


def base_name(args) -> str:
    """The adapters' base as PEFT's ``base_model_name_or_path`` names it: a LoRA checkpoint's base, else the
    model given."""
    if args.checkpoint:
        ckpt = load_torch_file(args.checkpoint)
        if isinstance(ckpt, dict) and ckpt.get("lora"):
            return ckpt["lora"]["base"]["path"]
    return str(args.checkpoint or args.hf or args.gpt2)


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        written = export(args)
        print(f"wrote {', '.join(written)} to {args.out}")
        return written


if __name__ == "__main__":
    main()
