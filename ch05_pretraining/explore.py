"""python -m ch05_pretraining.explore: look inside your own model in the browser.

    python -m ch05_pretraining.explore --checkpoint checkpoints/model.pt
    python -m ch05_pretraining.explore --checkpoint checkpoints/model.pth --open     # the walk-through's model
    python -m ch05_pretraining.explore --gpt2 data/gpt2-small-124M.safetensors --port 0
    python -m ch05_pretraining.explore --hf models/Qwen3-0.6B

Serves one page on this computer (nothing is fetched from anywhere else, so it works offline): the prompt's
tokens with their ids and bytes, the attention weights of a chosen layer and head as a heatmap (or their
average over heads), the KV-cache bytes the prompt takes, the next-token distribution as bars that follow
temperature, top-k and top-p exactly as generate samples, and generation streamed token by token (greedy at
temperature 0, seeded). The page's state is in its address: copy it to share or reload a view.
Ctrl-C stops the server.
"""

from __future__ import annotations

import sys
import webbrowser

from ch02_text.cli import CliParser, add_device_argument, cli_errors
from ch02_text.hardware import pick_device
from ch02_text.option_types import port_number

from .engine.explorer import Explorer, bind
from .engine.model_source import add_source_arguments, load_model_of
from .previous_chapters import decode_dtype


def build_parser():
    p = CliParser(prog="python -m ch05_pretraining.explore", description=__doc__)
    add_source_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on: 127.0.0.1 is this computer only; 0.0.0.0 opens it to your network")
    p.add_argument("--port", type=port_number, default=8000, help="port to serve on; 0 = any free port")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="weights while exploring: auto = bfloat16 where the processor has bf16, else float32")
    add_device_argument(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    with cli_errors():
        device = pick_device(args.device)
        dtype = decode_dtype(device, args.dtype)
        server = bind(args.host, args.port)
        try:
            model, tokenizer, prompt = load_model_of(args, device)
            source = args.checkpoint or args.gpt2 or args.hf
            explorer = server.RequestHandlerClass.explorer = Explorer(model.to(dtype), tokenizer, prompt, source)
            host, port = server.server_address[:2]
            url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
            print(f"serving on {url}", flush=True)
            if args.open and not webbrowser.open(url):
                print(f"--open: no browser found here; open {url} in one", flush=True)
            try:
                server.serve_forever(poll_interval=0.25)
            except KeyboardInterrupt:
                explorer.close()  # no generation thread may still compute while Python exits
                raise
        finally:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
