"""Model folders' tokenizers and chat (issue 21): tokenizer.json ids equal transformers', a chat template renders as
apply_chat_template renders it, and generate --hf chats in the REPL, stopping each reply at the end-of-turn id."""

import io
import json
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install -r requirements-dev.txt for the parity tests")
tokenizers = pytest.importorskip("tokenizers")

from ch02_text.hf_tokenizer import HFTokenizer, render_chat  # noqa: E402
from ch02_text.tokenizer_choice import tokenizer_from_dict, tokenizer_to_dict  # noqa: E402
from hf_tiny import chat_folder  # noqa: E402

TEXTS = ["Hello world, it's 2026!", "Café déjà vu — naïve", "東京は雨です。", "12345 678\n\n  indented\ttab",
         "<|im_start|>user\nhi<|im_end|>"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return chat_folder(tmp_path_factory.mktemp("qwen3-chat"))


def test_ids_equal_transformers_tokenizer(folder):
    ours = HFTokenizer.from_folder(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        ids = ours.encode(text, allowed_special="all")
        assert ids == theirs(text, add_special_tokens=False).input_ids, text
        assert ours.decode(ids) == text
    again = tokenizer_from_dict(tokenizer_to_dict(ours))  # stored whole in checkpoints
    assert again.encode(TEXTS[2]) == ours.encode(TEXTS[2]) and again.stop_ids() == ours.stop_ids() == [0]
    with pytest.raises(Exception, match="contains the special token"):
        ours.encode(TEXTS[4])  # as tiktoken: a special token in plain text must be allowed


def test_token_bytes_join_into_the_texts_utf8(folder):
    """The explorer's hover shows each token's bytes; a CJK character split over tokens has part of its bytes each."""
    from ch02_text.tokenizer_choice import token_bytes

    ours = HFTokenizer.from_folder(folder)
    for text in TEXTS:
        ids = ours.encode(text, allowed_special="all")
        assert b"".join(token_bytes(ours, i) for i in ids) == text.encode("utf-8"), text


def test_chat_template_renders_as_transformers(folder):
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Café?"}]
    ours = HFTokenizer.from_folder(folder)
    for prompt in (True, False):
        assert render_chat(ours.chat_template, messages, add_generation_prompt=prompt) == \
            theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def run_generate(argv, stdin, monkeypatch, capsys):
    from ch05_pretraining.generate import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    main(argv)
    return capsys.readouterr()


def test_generate_hf_chats_and_resets(folder, monkeypatch, capsys):
    out = run_generate(["--hf", str(folder), "--interactive", "--chat", "--max-new-tokens", "5"],
                       "Hello there\n:reset\nCafé?\n", monkeypatch, capsys)
    assert "(a new conversation)" in out.out and len(out.out.splitlines()) == 3


def test_a_reply_stops_at_the_end_of_turn_id(folder):
    from ch05_pretraining.generate import ChatFormat, Session
    from ch05_pretraining.hf_weights import load_hf
    from ch05_pretraining.sampling import SamplingSettings

    model = load_hf(folder)
    with torch.no_grad():
        model.out_head.weight.zero_()  # every logit 0: greedy picks id 0, <|im_end|>
    tok = HFTokenizer.from_folder(folder)
    session = Session(model, tok, "cpu", SamplingSettings(0.0, None, None, 20), chat=ChatFormat.of(tok))
    assert session.chat("Hi") == "" and session.history[-1] == {"role": "assistant", "content": ""}
    assert len(session.history) == 2


def test_chat_without_a_template_or_without_interactive_is_one_line(folder, tmp_path, monkeypatch, capsys):
    from ch05_pretraining.generate import main

    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (plain / name).write_bytes((folder / name).read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    for argv, message in ((["--hf", str(plain), "--interactive", "--chat"], "needs a chat template"),
                          (["--hf", str(folder), "--chat"], "give --interactive too"),
                          (["--hf", str(tmp_path / "nowhere")], "is not a folder")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.startswith("error:") and message in err, err


def test_train_init_from_a_folder_then_export_it_back(folder, corpus, tmp_path, capsys):
    from safetensors.torch import load_file

    from ch05_pretraining.checkpoint import read_checkpoint
    from ch05_pretraining.export import main as export
    from ch05_pretraining.train import main as train

    out = tmp_path / "cont.pt"
    state = train(["--init-from", str(folder), "--data", str(corpus), "--context-length", "32", "--batch-size", "2",
                   "--max-steps", "2", "--lr", "1e-12", "--eval-freq", "1", "--eval-iter", "1", "--no-progress",
                   "--start-context", "Every", "--out", str(out)])
    assert state.global_step + 1 == 2
    header = capsys.readouterr().out  # the model's own context, and the windows it is trained on
    assert "context 256," in header and " of 2x32 tokens" in header, header
    ckpt = read_checkpoint(out)
    assert ckpt["tokenizer"]["format"] == "hf-tokenizers" and ckpt["config"]["family"] == "qwen3"
    before = load_file(folder / "model.safetensors")
    after = ckpt["model"]["trf_blocks.1.ff.fc3.weight"]
    torch.testing.assert_close(after, before["model.layers.1.mlp.down_proj.weight"], atol=1e-6, rtol=0)
    # back to a folder transformers reads, with the tokenizer
    export(["--checkpoint", str(out), "--out", str(tmp_path / "hf")])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = torch.tensor([tok("Every effort", add_special_tokens=False).input_ids])
    from ch05_pretraining.checkpoint import model_from_checkpoint

    ours, _ = model_from_checkpoint(out)
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours.eval()(ids), atol=1e-4, rtol=1e-4)
    with pytest.raises(SystemExit):
        train(["--init-from", str(folder), "--data", str(corpus), "--emb-dim", "64", "--out", str(tmp_path / "x.pt")])
    assert "--emb-dim and --init-from" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_export_says_which_tokenizer_file_is_missing(corpus, tmp_path, capsys):
    from ch05_pretraining.export import main as export
    from ch05_pretraining.train import main as train

    train(["--data", str(corpus), "--tokenizer", "char", "--arch", "llama", "--emb-dim", "32", "--n-heads", "4",
           "--n-layers", "1", "--context-length", "16", "--max-steps", "1", "--no-progress", "--start-context", "I",
           "--out", str(tmp_path / "c.pt")])
    capsys.readouterr()
    written = export(["--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "hf")])
    assert written == ["config.json", "model.safetensors"]
    assert "tokenizer.json not written: the checkpoint's tokenizer (char:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        export(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "hf2")])
    assert capsys.readouterr().err.startswith("error:") and not (tmp_path / "hf2").exists()


def test_a_gpt2_checkpoint_exports_with_gpt2s_tokenizer_json(corpus, tmp_path, gpt2_tok):
    from ch05_pretraining.export import main as export
    from ch05_pretraining.train import main as train

    train(["--data", str(corpus), "--emb-dim", "32", "--n-heads", "2", "--n-layers", "1", "--context-length", "16",
           "--max-steps", "1", "--no-progress", "--out", str(tmp_path / "g.pt")])
    assert "tokenizer.json" in export(["--checkpoint", str(tmp_path / "g.pt"), "--out", str(tmp_path / "hf")])
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS[:4]:
        assert theirs(text).input_ids == gpt2_tok.encode(text), text
