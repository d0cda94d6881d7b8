"""Chapter 6's classifier trained data-parallel (issue 33): two gloo processes, each on half a batch, take the step
one process takes on the whole batch (the gradients averaged by average_gradients, the model called through its
parts); the command under torchrun trains, rank 0 alone prints and saves, and the checkpoint classifies;
--book under torchrun is one error line."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from ch06_classification.tail import hidden_before, make_classifier, tail_logits
from cli_checks import fails_with_one_line
from conftest import require_data
from fine_tuning import small_model

IDS = torch.randint(0, 50257, (4, 7), generator=torch.Generator().manual_seed(0))
LABELS, LENGTHS = torch.tensor([0, 1, 1, 0]), torch.tensor([7, 5, 6, 3])


def classifier(seed):
    model = make_classifier(small_model(), 2, "last-block")  # the head drawn under ``seed`` (as the CLI seeds it)
    if seed is not None:
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.out_head.weight)
    return model


def step(model, rows):
    """One SGD step on ``rows`` of the batch, through the model's parts as chapter 6's tail calls them."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    logits = tail_logits(model, hidden_before(model, IDS[rows], 2), LENGTHS[rows], "last", 2)
    F.cross_entropy(logits, LABELS[rows]).backward()
    opt.step()
    return model


def worker(rank, world_size, port, out_path):
    from ch05_pretraining.engine.runtime import average_gradients, finish_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    completed = False
    try:
        model = classifier(seed=rank)  # different heads: rank 0's must reach every process
        assert average_gradients(model) == sum(1 for p in model.parameters() if p.requires_grad)
        step(model, slice(2 * rank, 2 * rank + 2))
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out_path)
        completed = True
    finally:
        finish_distributed(completed)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_halves_take_the_step_of_one_on_the_whole_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.start_processes(worker, args=(2, free_port(), str(out)), nprocs=2, join=True, start_method="spawn")
    together = torch.load(out, weights_only=True)
    alone = step(classifier(seed=0), slice(0, 4)).state_dict()
    for name, value in alone.items():
        torch.testing.assert_close(together[name], value, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(together["out_head.weight"], classifier(seed=0).out_head.weight)


@pytest.fixture
def small_pth(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(small_model().state_dict(), path)
    return path


def test_the_command_under_torchrun_trains_and_rank_0_alone_prints_and_saves(small_pth, tmp_path):
    require_data("SMSSpamCollection")
    from ch02_text.paths import REPO_ROOT
    from ch05_pretraining.checkpoint import read_checkpoint

    out = tmp_path / "c.pt"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
            "ch06_classification.train", "--init-from", str(small_pth), "--n-heads", "4", "--max-steps", "3",
            "--epochs", "2", "--eval-freq", "2", "--out", str(out), "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Test accuracy:") == 2 and done.stdout.count("saved the classifier") == 1, done.stdout
    ckpt = read_checkpoint(out)
    assert ckpt["trainer_state"]["global_step"] == 5 and ckpt["classifier"]["classes"] == ["ham", "spam"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_book_under_torchrun_is_one_line(capsys, monkeypatch, small_pth, tmp_path):
    from ch06_classification import train

    monkeypatch.setenv("WORLD_SIZE", "2")
    fails_with_one_line(capsys, train.main, ["--book", "--init-from", str(small_pth), "--n-heads", "4", "--out",
                                             str(tmp_path / "c.pt")], "--book runs the book's loop in one process")
    assert not (tmp_path / "c.pt").exists()
