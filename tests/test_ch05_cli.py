"""The train and generate CLIs: tiny runs, resume, Ctrl-C, and one-line errors for bad input."""

import os
import re
import signal
import subprocess
import sys

import pytest

from ch02_text.paths import REPO_ROOT
from ch05_pretraining.checkpoint import read_checkpoint
from conftest import TINY_ARGS

def train(argv):
    from ch05_pretraining.train import main

    return main(argv)


@pytest.fixture(scope="module")
def tiny_ckpt(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train(["--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY_ARGS])
    return out


def one_line_error(capsys, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


def test_train_writes_checkpoint_and_plot_then_resumes(corpus, tmp_path, capsys):
    out = tmp_path / "run.pt"
    state = train(["--data", str(corpus), "--epochs", "1", "--out", str(out), *TINY_ARGS])
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 5_000
    assert "Ep 1 (Step 000000): Train loss" in capsys.readouterr().out
    ckpt = read_checkpoint(out)
    assert ckpt["epoch"] == 1 and "impl" not in ckpt["config"]  # kernels are no architecture
    resumed = train(["--data", str(corpus), "--epochs", "2", "--out", str(out), "--resume", str(out), *TINY_ARGS])
    assert resumed.epoch == 2 and resumed.train_losses[: len(state.train_losses)] == state.train_losses
    assert read_checkpoint(out)["epoch"] == 2


def test_book_mode_and_schedule_options(corpus, tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        state = train(["--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "b.pt"), "--book",
                       "--warmup-steps", "2", "--min-lr", "1e-5", "--grad-clip", "1.0", "--grad-accum", "2",
                       "--plot", str(tmp_path / "loss.png"), "--threads", "1", "--tie-weights", "--drop-rate",
                       "0.0", "--start-context", "Hello", *TINY_ARGS])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert read_checkpoint(tmp_path / "b.pt")["run_options"]["book"] is True
    assert (tmp_path / "loss.png").is_file() and state.global_step >= 0
    cfg = read_checkpoint(tmp_path / "b.pt")["config"]
    assert cfg["tie_weights"] and cfg["drop_rate"] == 0.0
    assert all(s.startswith("Hello") for s in state.samples)


def test_keep_freed_memory_toggles_glibc():
    from ch05_pretraining.engine.runtime import keep_freed_memory

    if sys.platform != "linux":
        pytest.skip("glibc only")
    assert keep_freed_memory(True) and keep_freed_memory(False)


@pytest.mark.parametrize("setup,args,match", [
    (None, ["--data", "MISSING"], "does not exist"),
    ("latin1", [], "is not UTF-8"),
    ("short", [], "needs at least 33: lower --context-length"),
    ("noval", ["--train-ratio", "0.999"], "validation split of"),
    (None, ["--preset", "gpt7"], "unknown model preset 'gpt7'"),
    (None, ["--resume", "MISSING.pt"], "does not exist"),
    (None, ["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
    (None, ["--book", "--own-dropout"], "--own-dropout is part of the fast path"),
])
def test_train_bad_input_is_one_line(corpus, tmp_path, capsys, setup, args, match):
    data = corpus
    if setup == "latin1":
        data = tmp_path / "latin1.txt"
        data.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    elif setup == "short":
        data = tmp_path / "short.txt"
        data.write_text("Only a few words here.")
    args = [str(tmp_path / a) if a.startswith("MISSING") else a for a in args]
    if "--data" not in args:
        args = ["--data", str(data), *args]
    with pytest.raises(SystemExit) as info:
        train([*args, "--out", str(tmp_path / "x.pt"), *TINY_ARGS])
    assert info.value.code == 1
    one_line_error(capsys, match)
    assert not (tmp_path / "x.pt").exists()


def test_ctrl_c_saves_a_resumable_checkpoint(corpus, tmp_path):
    out = tmp_path / "int.pt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ch05_pretraining.train", "--data", str(corpus), "--epochs", "50",
         "--out", str(out), *TINY_ARGS], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("Ep 1 (Step 000004)"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "saved a resumable checkpoint" in err and "Traceback" not in err
    ckpt = read_checkpoint(out)
    assert 0 < ckpt["step"] < 50 * 100 and ckpt["trainer_state"]["global_step"] >= 4


def test_generate_from_checkpoint_and_interactive(tiny_ckpt, capsys, monkeypatch):
    from ch05_pretraining.generate import main

    out = tiny_ckpt
    capsys.readouterr()
    text = main(["--checkpoint", str(out), "--prompt", "Every effort", "--max-new-tokens", "5"])
    assert text.startswith("Every effort") and capsys.readouterr().out.strip() == text
    sampled = main(["--checkpoint", str(out), "--max-new-tokens", "5", "--temperature", "1.0",
                    "--top-k", "10", "--top-p", "0.9", "--seed", "1"])
    assert sampled == main(["--checkpoint", str(out), "--max-new-tokens", "5", "--temperature", "1.0",
                            "--top-k", "10", "--top-p", "0.9", "--seed", "1"])
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "Every effort\n:top 3 Every effort moves\n:tok Hello world\n:set top_k 5\n:set top_p 7\n:nope\n:quit\nignored\n"))
    capsys.readouterr()
    main(["--checkpoint", str(out), "--interactive", "--max-new-tokens", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Every effort")
    assert len([l for l in lines[1:4] if l.strip()[0].isdigit()]) == 3
    assert "15496  'Hello'" in lines[4] and "995  ' world'" in lines[5]
    assert "top_k = 5" in lines[6] and "error: top_p must be in (0, 1]" in lines[7]
    assert "unknown command ':nope'" in lines[8] and len(lines) == 9


@pytest.mark.parametrize("args,match", [
    (["--checkpoint", "MISSING.pt"], "does not exist"),
    (["--gpt2", "MISSING.safetensors"], "do not exist"),
    (["--checkpoint", "CKPT", "--temperature", "-1"], "argument --temperature: must be a number >= 0"),
    (["--checkpoint", "CKPT", "--temperature", "nan"], "argument --temperature: must be a number >= 0"),
    (["--checkpoint", "CKPT", "--top-k", "-1"], "argument --top-k: must be an integer >= 0"),
    (["--checkpoint", "CKPT", "--top-p", "1.5"], "argument --top-p: must be a number in (0, 1]"),
    (["--checkpoint", "CKPT", "--prompt", ""], "zero tokens"),
    (["--checkpoint", "TRUNC"], "is damaged or not a PyTorch checkpoint"),
])
def test_generate_bad_input_is_one_line(tiny_ckpt, tmp_path, capsys, args, match):
    from ch05_pretraining.generate import main

    ckpt = tiny_ckpt
    (tmp_path / "t.pt").write_bytes(ckpt.read_bytes()[:500])
    subst = {"CKPT": str(ckpt), "TRUNC": str(tmp_path / "t.pt")}
    args = [subst.get(a, str(tmp_path / a) if a.startswith("MISSING") else a) for a in args]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    one_line_error(capsys, match)


def test_compile_option_trains(corpus, tmp_path):
    """--compile (opt-in torch.compile) trains and saves; inductor needs a C++ compiler."""
    import shutil

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    out = tmp_path / "c.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "ch05_pretraining.train", "--data", str(corpus), "--epochs", "1", "--compile",
         "--out", str(out), *TINY_ARGS], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "saved checkpoint" in proc.stdout
    assert not any(k.startswith("_orig_mod.") for k in read_checkpoint(out)["model"])


KEEP_FREED_PROBE = """
import resource, sys, torch
from ch05_pretraining.engine.runtime import keep_freed_memory
if not keep_freed_memory(True):
    print("unavailable"); sys.exit()
def faults_of_a_fresh_big_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 1024 * 1024).fill_(1.0)  # 64 MiB = 16,384 pages of 4 KiB, freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[faults_of_a_fresh_big_tensor() for _ in range(16)])
"""


def test_keep_freed_memory_serves_a_big_block_again_without_page_faults():
    """The fast path's allocator setting: a freed 64 MiB tensor's pages are reused, not faulted in again.

    In a process of its own: the suite's earlier tests leave the heap in any state."""
    pytest.importorskip("resource")
    out = subprocess.run([sys.executable, "-c", KEEP_FREED_PROBE], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT).stdout.split()
    if out == ["unavailable"]:
        pytest.skip("glibc's mallopt is not available here")
    faults = [int(n) for n in out]
    # glibc needs a few rounds (up to about 10 in a fresh process) to hold enough freed blocks (aligned
    # allocations leave gaps),
    # then serves the tensor from memory it already has; with the default thresholds
    # (or a trim threshold that overflowed to 0) every round faults all 16,384 pages in again.
    assert sum(faults[-3:]) < 2000, faults


def test_generate_continues_several_prompts_in_one_batch(tiny_ckpt, capsys):
    from ch05_pretraining.generate import main

    prompts = ["Every effort", "I had always thought Jack", "The"]
    alone = [main(["--checkpoint", str(tiny_ckpt), "--prompt", p, "--max-new-tokens", "6"]) for p in prompts]
    args = ["--checkpoint", str(tiny_ckpt), "--max-new-tokens", "6"]
    for p in prompts:
        args += ["--prompt", p]
    capsys.readouterr()
    assert main(args) == alone
    assert capsys.readouterr().out.strip() == "\n".join(f"--- {i} ---\n{t}" for i, t in enumerate(alone, 1))


def test_generate_dtype_option(tiny_ckpt, capsys):
    from ch05_pretraining.generate import main

    fp32 = main(["--checkpoint", str(tiny_ckpt), "--prompt", "Every effort", "--max-new-tokens", "5",
                 "--dtype", "float32"])
    bf16 = main(["--checkpoint", str(tiny_ckpt), "--prompt", "Every effort", "--max-new-tokens", "5",
                 "--dtype", "bfloat16"])
    assert fp32.startswith("Every effort") and bf16.startswith("Every effort")
    with pytest.raises(SystemExit) as info:
        main(["--checkpoint", str(tiny_ckpt), "--dtype", "float16"])
    assert info.value.code == 1 and "argument --dtype" in capsys.readouterr().err


def test_breakdown_accounts_for_the_whole_run(corpus, tmp_path, capsys):
    state = train(["--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "b.pt"), "--breakdown",
                   *TINY_ARGS])
    out = capsys.readouterr().out
    table = out[out.index("breakdown of the whole run:"):].splitlines()[1:]
    rows = [re.match(r"^(.*?)\s+([\d.]+) s\s+[\d.]+ %$", line) for line in table]
    seconds = {row[1]: float(row[2]) for row in rows if row}
    for phase in ("start-up: building the model", "forward + backward",
                  "optimizer step", "evaluation", "per-epoch samples", "final checkpoint", "loss plot"):
        assert seconds[phase] > 0, phase
    whole = float(table[-1].split()[2])
    assert abs(sum(seconds.values()) - whole) < 0.05  # every second is in one phase
    assert state.val_losses


def test_own_dropout_run_resumes_bit_for_bit(corpus, tmp_path):
    """--own-dropout: the masks' generator is saved with the run and restored on --resume."""
    whole = train(["--data", str(corpus), "--epochs", "2", "--out", str(tmp_path / "whole.pt"), "--own-dropout",
                   *TINY_ARGS])
    train(["--data", str(corpus), "--epochs", "1", "--out", str(tmp_path / "part.pt"), "--own-dropout", *TINY_ARGS])
    assert "dropout" in read_checkpoint(tmp_path / "part.pt")["trainer_state"]["rng_now"]
    resumed = train(["--resume", str(tmp_path / "part.pt"), "--epochs", "2"])
    assert resumed.train_losses == whole.train_losses and resumed.val_losses == whole.val_losses
    default = train(["--data", str(corpus), "--epochs", "2", "--out", str(tmp_path / "d.pt"), *TINY_ARGS])
    assert default.train_losses != whole.train_losses  # other masks: the option is in effect


def test_default_run_draws_the_books_masks_ahead_and_changes_nothing(corpus, tmp_path, monkeypatch):
    """On a CPU `train` draws each step's dropout masks before the step, on two cores (thresholds lowered so
    that a tiny model splits them too): the run is the one PyTorch's own dropout gives, loss for loss."""
    import torch

    import ch03_attention.prefetched_dropout as prefetched
    import ch05_pretraining.train as train_module

    monkeypatch.setattr(prefetched, "TWO_CORES_FROM", 1000)
    monkeypatch.setattr(prefetched, "JUMP_HEAD_START", 10)
    calls = []
    real = prefetched._draw_from_jump
    monkeypatch.setattr(prefetched, "_draw_from_jump", lambda *a: calls.append(1) or real(*a))
    args = ["--data", str(corpus), "--epochs", "2", *TINY_ARGS]
    ahead = train([*args, "--out", str(tmp_path / "ahead.pt")])
    assert len(calls) >= ahead.global_step  # every step but the first, which learns the plan
    monkeypatch.setattr(train_module, "use_prefetched_dropout", lambda model: None)
    plain = train([*args, "--out", str(tmp_path / "plain.pt")])
    assert len(calls) <= ahead.global_step + 1
    assert (ahead.train_losses, ahead.val_losses) == (plain.train_losses, plain.val_losses)
    assert torch.equal(ahead.rng_now["torch"], plain.rng_now["torch"])


def test_masks_drawn_ahead_resume_and_accumulate_as_the_book(corpus, tmp_path, monkeypatch):
    """The same on two cores with gradient accumulation, stopped after an epoch and resumed: the resumed run
    is the whole one, and both are PyTorch's own dropout's run."""
    import ch03_attention.prefetched_dropout as prefetched
    import ch05_pretraining.train as train_module

    monkeypatch.setattr(prefetched, "TWO_CORES_FROM", 1000)
    monkeypatch.setattr(prefetched, "JUMP_HEAD_START", 10)
    args = ["--data", str(corpus), "--grad-accum", "2", *TINY_ARGS]
    whole = train([*args, "--epochs", "2", "--out", str(tmp_path / "whole.pt")])
    train([*args, "--epochs", "1", "--out", str(tmp_path / "part.pt")])
    resumed = train(["--resume", str(tmp_path / "part.pt"), "--epochs", "2"])
    assert (resumed.train_losses, resumed.val_losses) == (whole.train_losses, whole.val_losses)
    monkeypatch.setattr(train_module, "use_prefetched_dropout", lambda model: None)
    plain = train([*args, "--epochs", "2", "--out", str(tmp_path / "plain.pt")])
    assert (plain.train_losses, plain.val_losses) == (whole.train_losses, whole.val_losses)


def test_ctrl_c_twice_while_the_checkpoint_is_written_lets_it_finish(corpus, tmp_path, monkeypatch, capsys):
    """Two Ctrl-C during the final write: the write finishes (said in one line), exit 130, no traceback, the
    checkpoint whole and resumable, no temporary file."""
    import ch05_pretraining.train as train_cli

    real_save = train_cli.save_checkpoint

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(train_cli, "save_checkpoint", interrupted_save)
    out = tmp_path / "run.pt"
    with pytest.raises(SystemExit) as info:
        train_cli.main(["--data", str(corpus), "--max-steps", "2", "--out", str(out), *TINY_ARGS])
    err = capsys.readouterr().err
    assert info.value.code == 130 and "Traceback" not in err
    assert f"finishing the checkpoint {out} first" in err and err.count("finishing the checkpoint") == 1
    assert read_checkpoint(out)["trainer_state"]["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temporary file, no plot


def test_ctrl_c_twice_in_a_row_during_training_exits_130_without_a_traceback(corpus, tmp_path):
    """Two Ctrl-C a few milliseconds apart in a running training process: exit 130, no traceback, and the
    checkpoint is either whole or, if the second one came before the write, the earlier one as it was."""
    import time

    out = tmp_path / "int.pt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ch05_pretraining.train", "--data", str(corpus), "--epochs", "50",
         "--save-every", "3", "--out", str(out), *TINY_ARGS], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("Ep 1 (Step 000008)"):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.03)
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "saved a resumable checkpoint" in err or "stopped at once without saving" in err, err
    assert read_checkpoint(out)["trainer_state"]["global_step"] >= 2  # the --save-every one at least
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
