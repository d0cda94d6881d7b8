"""LoRA in chapter 5's train (issue 34): every family trains adapters and its loss falls, the checkpoint holds the
adapters and their base's fingerprint, resume is bit for bit, generate and export read it (merged, or a PEFT
folder that peft puts on transformers' model), and every mistake is one line with nothing written."""

import pytest
import torch

from ch04_gpt.families import FAMILIES
from ch05_pretraining.checkpoint import read_checkpoint
from ch05_pretraining.engine.model_source import load_model

SMALL = ["--n-layers", "2", "--emb-dim", "32", "--n-heads", "4", "--context-length", "16", "--batch-size", "4",
         "--no-progress", "--start-context", "I"]


def train(argv):
    from ch05_pretraining.train import main
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def bases(corpus, tmp_path_factory):
    """A base checkpoint of each family, trained a few steps from scratch (character tokenizer)."""
    folder, made = tmp_path_factory.mktemp("bases"), {}

    def base(arch):
        if arch not in made:
            made[arch] = folder / f"{arch}.pt"
            extra = ["--n-experts", "4", "--n-experts-per-token", "2"] if FAMILIES[arch].get("ff") == "moe" else []
            train(["--data", corpus, "--arch", arch, "--tokenizer", "char", *SMALL, *extra, "--max-steps", "3",
                   "--out", made[arch]])
        return made[arch]
    return base


def lora_run(corpus, base, out, *more):
    return train(["--data", corpus, "--init-from", base, "--context-length", "16", "--batch-size", "4",
                  "--no-progress", "--start-context", "I", "--lora-rank", "4", "--lr", "1e-2", "--out", out, *more])


@pytest.mark.parametrize("arch", [a for a in FAMILIES if a != "gpt1"])
def test_every_family_trains_adapters_and_its_loss_falls(arch, corpus, bases, tmp_path, capsys):
    base = bases(arch)
    state = lora_run(corpus, base, tmp_path / "lora.pt", "--max-steps", "25", "--eval-freq", "24", "--lr", "3e-2",
                     "--lora-targets", "all-linear")
    assert "LoRA: " in capsys.readouterr().out
    assert state.val_losses[-1] < state.val_losses[0]
    ckpt = read_checkpoint(tmp_path / "lora.pt")
    assert ckpt["model"] and all(".adapters." in k for k in ckpt["model"])  # the adapters alone
    assert ckpt["lora"]["base"]["path"] == str(base.resolve())
    if FAMILIES[arch].get("ff") == "moe":
        assert any(".experts." in k for k in ckpt["model"]) and not any(".ff.gate." in k for k in ckpt["model"])
    full = read_checkpoint(base)["model"]
    assert sum(t.numel() for t in ckpt["model"].values()) < sum(t.numel() for t in full.values()) / 2


def test_resume_is_bit_for_bit_and_generate_reads_the_adapters_merged(corpus, bases, tmp_path, capsys):
    base = bases("llama")
    lora_run(corpus, base, tmp_path / "whole.pt", "--max-steps", "6", "--lora-dropout", "0.1")
    lora_run(corpus, base, tmp_path / "half.pt", "--max-steps", "3", "--lora-dropout", "0.1")
    train(["--resume", tmp_path / "half.pt", "--max-steps", "6", "--no-progress"])
    whole, half = read_checkpoint(tmp_path / "whole.pt"), read_checkpoint(tmp_path / "half.pt")
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, half["model"][name]), name
    merged, _, _ = load_model(checkpoint=tmp_path / "whole.pt")
    adapted, _, _ = load_model(checkpoint=tmp_path / "whole.pt", merge=False)
    ids = torch.randint(0, 50, (1, 10))
    base_model, _, _ = load_model(checkpoint=base)
    with torch.no_grad():
        assert (adapted(ids) - base_model(ids)).abs().max() > 1e-4  # trained adapters change the model
        torch.testing.assert_close(merged(ids), adapted(ids), atol=1e-5, rtol=1e-5)
    from ch05_pretraining.generate import main as generate
    capsys.readouterr()
    generate(["--checkpoint", str(tmp_path / "whole.pt"), "--prompt", "I", "--max-new-tokens", "5"])
    assert capsys.readouterr().out.startswith("I")


def test_a_moved_or_changed_base_is_one_line(corpus, bases, tmp_path, capsys):
    import shutil

    from ch05_pretraining.generate import main as generate

    shutil.copy(bases("qwen3"), tmp_path / "base.pt")
    lora_run(corpus, tmp_path / "base.pt", tmp_path / "run" / "lora.pt", "--max-steps", "1")
    (tmp_path / "base.pt").rename(tmp_path / "run" / "base.pt")  # moved beside the checkpoint: found there
    generate(["--checkpoint", str(tmp_path / "run" / "lora.pt"), "--prompt", "I", "--max-new-tokens", "2"])
    shutil.copy(bases("llama"), tmp_path / "run" / "base.pt")  # another model in its place
    capsys.readouterr()
    with pytest.raises(SystemExit):
        generate(["--checkpoint", str(tmp_path / "run" / "lora.pt"), "--prompt", "I"])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "fingerprint" in err and err.count("\n") == 1
    (tmp_path / "run" / "base.pt").unlink()
    with pytest.raises(SystemExit):
        train(["--resume", tmp_path / "run" / "lora.pt", "--max-steps", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert "which is not there" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--lora-rank", "0"], "--lora-rank: must be a positive integer"),
    (["--lora-rank", "2", "--lora-alpha", "-1"], "--lora-alpha"),
    (["--lora-alpha", "8"], "--lora-alpha configures LoRA, which --lora-rank turns on"),
    (["--lora-rank", "2", "--lora-targets", "q_proj,w9"], "'w9' matches no layer of this llama model"),
    (["--lora-rank", "2", "--lora-dropout", "1.5"], "--lora-dropout"),
    (["--lora-rank", "2", "--fsdp"], "--fsdp and LoRA"),
    (["--lora-rank", "2", "--adapter", "x"], "--adapter brings its own rank"),
])
def test_lora_mistakes_are_one_line_and_write_nothing(argv, message, corpus, bases, tmp_path, capsys):
    out = tmp_path / "x.pt"
    with pytest.raises(SystemExit) as exc:
        train(["--data", corpus, "--init-from", bases("llama"), "--context-length", "16", "--start-context", "I",
               "--no-progress", "--max-steps", "1", "--out", out, *argv])
    assert exc.value.code in (1, 2)
    err = capsys.readouterr().err
    if message:
        assert message in err
    assert err.count("error:") == 1 and "Traceback" not in err and not out.exists()


def test_lora_without_a_model_to_adapt_is_refused(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train(["--data", corpus, "--lora-rank", "2", "--out", tmp_path / "x.pt"])
    assert "--lora-rank adapts a trained model: give it with --init-from" in capsys.readouterr().err


def test_peft_folders_out_and_in_through_the_commands(corpus, tmp_path, capsys):
    """train --init-from a transformers folder with LoRA, export --adapter-only: peft on transformers' model gives
    our logits; export merged: transformers alone gives them; generate --hf --adapter reads the folder back."""
    transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt")
    peft = pytest.importorskip("peft", reason="pip install -r requirements-dev.txt")
    from hf_tiny import tiny_hf

    from ch05_pretraining.export import main as export

    tiny_hf("mistral").save_pretrained(tmp_path / "base")
    lora_run(corpus, tmp_path / "base", tmp_path / "lora.pt", "--tokenizer", "char", "--max-steps", "2",
             "--lora-targets", "attention,down_proj")
    ours, _, _ = load_model(checkpoint=tmp_path / "lora.pt", merge=False)
    for layer in ours.modules():  # trained B is tiny after 2 steps: make the check sharp
        if hasattr(layer, "adapters"):
            for lora in layer.adapters.values():
                torch.nn.init.normal_(lora.B, std=0.3)
    ckpt = read_checkpoint(tmp_path / "lora.pt")
    ckpt["model"] = {k: v for k, v in ours.state_dict().items() if ".adapters." in k}
    torch.save(ckpt, tmp_path / "lora.pt")
    export(["--checkpoint", str(tmp_path / "lora.pt"), "--adapter-only", "--out", str(tmp_path / "adapter")])
    export(["--checkpoint", str(tmp_path / "lora.pt"), "--out", str(tmp_path / "merged")])
    ids = torch.randint(0, 60, (2, 10))
    with torch.no_grad():
        expected = ours(ids)
        base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.float32)
        theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        torch.testing.assert_close(theirs(ids).logits, expected, atol=1e-4, rtol=1e-4)
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
        torch.testing.assert_close(merged(ids).logits, expected, atol=1e-4, rtol=1e-4)
    from ch05_pretraining.adapters import read_peft_folder
    from ch05_pretraining.engine.model_source import load_weights_path
    model = load_weights_path(tmp_path / "base")
    read_peft_folder(model.float(), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected, atol=1e-4, rtol=1e-4)
    capsys.readouterr()
    with pytest.raises(SystemExit):  # adapters on adapters
        export(["--checkpoint", str(tmp_path / "lora.pt"), "--adapter", str(tmp_path / "adapter"),
                "--out", str(tmp_path / "twice")])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "adapters already" in err and not (tmp_path / "twice").exists()
