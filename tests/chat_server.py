"""The server of ch07_instructions.serve over a tiny chat model, and what generate alone answers it: shared by
tests/test_ch07_serve.py and tests/test_ch07_chat_page.py (conftest's ``served`` fixture)."""

import torch

from ch02_text.hf_tokenizer import HFTokenizer, render_chat
from ch05_pretraining.engine.chat import ChatFormat
from ch05_pretraining.engine.explorer import Explorer
from ch05_pretraining.hf_weights import load_hf
from ch05_pretraining.sampling import generate
from ch07_instructions.api import Limits
from ch07_instructions.serve import Service, make_service_server
from hf_tiny import chat_folder
from local_servers import serving

NAME = "tiny-chat"
MESSAGES = [{"role": "user", "content": "Every effort moves you"}]


def serve_tiny_chat(tmp_path_factory):
    """The server on a free loopback port over a tiny random chat model (--max-new-tokens 64, --max-prompt-tokens
    200, --max-queue 2): yields (url, model, tokenizer, service) until the generator closes."""
    folder = chat_folder(tmp_path_factory.mktemp("chat"))
    model = load_hf(folder, dtype=torch.float32)
    tok = HFTokenizer.from_folder(folder)
    service = Service(model, tok, NAME, ChatFormat.of(tok), Limits(64, 200), max_queue=2, api_key=None)
    with serving(make_service_server(service, Explorer(model, tok, "Hi", str(folder)))) as url:
        yield url, model, tok, service


def greedy_reply(model, tok, messages, n):
    """What generate alone answers: the chat template's prompt, greedy, stopping at the end-of-turn ids."""
    prompt = render_chat(tok.chat_template, messages, bos_token=tok.bos_token or "", eos_token=tok.eos_token or "")
    ids = tok.encode(prompt, allowed_special="all")
    out = generate(model, torch.tensor([ids]), n, model.context_length, eos_id=tok.stop_ids())
    return tok.decode(out[0, len(ids):].tolist())
