"""Two gloo processes on a tiny config take the same optimizer step as one process on the combined batch."""

import argparse
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from ch04_gpt.config import GPT_CONFIG_124M, scaled_config
from ch04_gpt.model import GPTModel

CONFIGS = {
    "gpt2": {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 8, "emb_dim": 16, "n_heads": 2,
             "n_layers": 1, "drop_rate": 0.0},
    # grouped-query heads, QK-norm, RoPE, a sliding window: every block found and sharded by type
    "qwen3": scaled_config("qwen3-0.6b", emb_dim=16, n_heads=4, n_layers=2, sliding_window=4, vocab_size=97,
                           context_length=8, drop_rate=0.0),
}


def dataset():
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 97, (16, 9), generator=g)
    return torch.utils.data.TensorDataset(data[:, :-1], data[:, 1:])


def fresh(arch="gpt2"):
    torch.manual_seed(0)
    model = GPTModel(CONFIGS[arch])
    # SGD: the update is proportional to the gradient, so equal updates mean equal averaged gradients
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def worker(rank, world_size, port, out_path, sharded=False, arch="gpt2"):
    """One optimizer step on each rank's shard of the batch, replicated (DDP) or sharded (FSDP2)."""
    from torch.nn.parallel import DistributedDataParallel

    from ch05_pretraining.engine.runtime import finish_distributed
    from ch05_pretraining.engine.sharding import full_state, shard
    from ch05_pretraining.engine.trainer import Trainer, TrainSettings
    from ch05_pretraining.train import make_loaders

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    completed = False
    try:
        model, _ = fresh(arch)
        if sharded:
            shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        ds = dataset()
        train_loader, val_loader = make_loaders(argparse.Namespace(batch_size=2), ds, ds, rank, world_size, seed=123)
        wrapped = model if sharded else DistributedDataParallel(model)
        Trainer(wrapped, opt, train_loader, val_loader, "cpu", TrainSettings(epochs=1, eval_freq=1000, lr=0.5)).fit(
            stop_after_steps=1)
        params = full_state(model, opt)[0] if sharded else model.state_dict()  # gathering is collective
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in params.items()}, out_path)
        completed = True
    finally:
        finish_distributed(completed)  # a barrier first: a rank leaving early can abort the other in gloo


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sharded,arch", [(False, "gpt2"), (True, "gpt2"), (True, "qwen3")],
                         ids=["ddp", "fsdp", "fsdp-qwen3"])
def test_two_processes_equal_one_process_on_the_combined_batch(tmp_path, sharded, arch):
    out = tmp_path / "ddp.pt"
    mp.start_processes(worker, args=(2, free_port(), str(out), sharded, arch), nprocs=2, join=True,
                       start_method="spawn")
    ddp_params = torch.load(out, weights_only=True)

    # the samples each rank saw in its first batch
    ds = dataset()
    first = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=123,
                                                      drop_last=True)
        sampler.set_epoch(0)
        first += list(sampler)[:2]
    x = torch.stack([ds[i][0] for i in first])
    y = torch.stack([ds[i][1] for i in first])
    model, opt = fresh(arch)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    opt.step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp_params[name], value, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(ddp_params["tok_emb.weight"], fresh(arch)[0].state_dict()["tok_emb.weight"])


def test_fsdp_cli_run_saves_one_checkpoint_that_resumes_in_one_process(corpus, tmp_path):
    """train --fsdp under torchrun (2 gloo processes), then --resume without torchrun."""
    import subprocess
    import sys

    from ch02_text.paths import REPO_ROOT
    from ch05_pretraining.checkpoint import read_checkpoint

    out = tmp_path / "fsdp.pt"
    tiny = ["--n-layers", "2", "--emb-dim", "32", "--n-heads", "2", "--context-length", "32", "--batch-size", "2",
            "--eval-freq", "2", "--eval-iter", "2", "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "ch05_pretraining.train", "--fsdp", "--data", str(corpus), *tiny, "--max-steps", "3",
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(out)
    assert ckpt["trainer_state"]["global_step"] == 2 and "trf_blocks.1.ff.layers.0.weight" in ckpt["model"]
    assert ckpt["model"]["tok_emb.weight"].shape == (50257, 32)  # whole, not a shard
    proc = subprocess.run([sys.executable, "-m", "ch05_pretraining.train", "--resume", str(out), "--max-steps", "5"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_checkpoint(out)["trainer_state"]["global_step"] == 4
