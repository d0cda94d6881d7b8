"""The explorer's test site: a tiny GPT on a short text, served on a free loopback port (shared by
tests/test_ch05_explore.py and tests/test_ch05_explore_browser.py)."""

import threading

import torch

from ch04_gpt.config import model_config
from ch04_gpt.model import GPTModel
from ch05_pretraining.engine.explorer import make_server

TEXT = "to be or not to be, that is the question: whether 'tis nobler in the mind to suffer\n" * 4
CONTEXT = 24


def tiny_model(tok, seed=0):
    torch.manual_seed(seed)
    cfg = model_config("gpt2-small", vocab_size=tok.n_vocab, context_length=CONTEXT, emb_dim=64, n_heads=4,
                       n_layers=3, drop_rate=0.0)
    model = GPTModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than GPT-2's init: peaked, varied attention
            p.normal_(0.0, 0.3)
    return model


def serve(explorer):
    server = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
