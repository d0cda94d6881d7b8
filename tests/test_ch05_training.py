import contextlib
import io
import math

import pytest
import torch

from ch02_text.dataloader import create_dataloader_v1
from ch02_text.errors import UserInputError
from ch03_attention.generator_dropout import dropout_generator, use_generator_dropout
from ch04_gpt.model import GPTModel
from ch05_pretraining.checkpoint import load_checkpoint, save_checkpoint
from ch05_pretraining.engine.trainer import set_rng_state
from ch05_pretraining.loss import calc_loss_batch, calc_loss_loader
from ch05_pretraining.engine.schedule import lr_at
from ch05_pretraining.engine.trainer import Trainer, TrainSettings, TrainState
from ch05_pretraining.book_loop import train_model_simple
from conftest import TINY as BASE

TINY = {**BASE, "vocab_size": 50257, "context_length": 32, "drop_rate": 0.1}  # GPT-2 ids: real text


@pytest.fixture(scope="module")
def text(verdict_text):
    return verdict_text[:5000]


def loaders(text, batch_size=2):
    torch.manual_seed(123)
    split = int(0.9 * len(text))
    return (create_dataloader_v1(text[:split], batch_size, 32, 32, shuffle=True, drop_last=True),
            create_dataloader_v1(text[split:], batch_size, 32, 32, shuffle=False, drop_last=False))


def fresh(cfg=TINY, impl="book", lr=4e-4):
    torch.manual_seed(123)
    model = GPTModel(cfg, impl=impl)
    return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)


def test_trainer_in_book_settings_equals_train_model_simple(text, gpt2_tok):
    tl, vl = loaders(text)
    model, opt = fresh()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        book = train_model_simple(model, tl, vl, opt, "cpu", 2, 5, 5, "Every effort moves you", gpt2_tok)
    tl, vl = loaders(text)
    model2, opt2 = fresh()
    lines = []
    state = Trainer(model2, opt2, tl, vl, "cpu", TrainSettings(epochs=2), tokenizer=gpt2_tok, log=lines.append).fit()
    assert (state.train_losses, state.val_losses, state.track_tokens_seen) == book
    assert lines == buf.getvalue().splitlines()
    assert lines[0].startswith("Ep 1 (Step 000000): Train loss ")


@pytest.mark.parametrize("own_dropout", [False, True], ids=["torch-dropout", "own-dropout"])
def test_resume_is_bit_for_bit(text, tmp_path, own_dropout):
    def fresh_model():
        model, opt = fresh(impl="fast" if own_dropout else "book")
        if own_dropout:  # the dropout generator's state travels in the RNG snapshots
            use_generator_dropout(model, torch.Generator().manual_seed(5))
        return model, opt

    tl, vl = loaders(text)
    model, opt = fresh_model()
    full = Trainer(model, opt, tl, vl, "cpu", TrainSettings(epochs=3, eval_freq=2)).fit()
    steps_per_epoch = len(tl)
    for stop_at in (3, steps_per_epoch, steps_per_epoch + 2):  # mid-epoch, epoch end, next epoch
        tl, vl = loaders(text)
        model, opt = fresh_model()
        part = Trainer(model, opt, tl, vl, "cpu", TrainSettings(epochs=3, eval_freq=2)).fit(stop_after_steps=stop_at)
        path = save_checkpoint(tmp_path / f"ck{stop_at}.pt", model, opt, trainer_state=part.to_dict(), rng=part.rng_now)
        torch.manual_seed(999)  # a different process state before resuming
        tl, vl = loaders(text)
        model2, opt2 = fresh_model()
        if own_dropout:
            dropout_generator(model2).manual_seed(999)  # a different state too
        ckpt = load_checkpoint(path, model2, opt2)
        state = TrainState.from_dict(ckpt["trainer_state"])
        set_rng_state(ckpt["rng"], dropout_generator(model2))
        resumed = Trainer(model2, opt2, tl, vl, "cpu", TrainSettings(epochs=3, eval_freq=2)).fit(state)
        assert resumed.train_losses == full.train_losses
        assert resumed.val_losses == full.val_losses
        assert resumed.tokens_seen == full.tokens_seen


def test_lr_warmup_and_cosine():
    assert lr_at(0, 1.0, warmup_steps=4) == 0.25
    assert lr_at(3, 1.0, warmup_steps=4) == 1.0            # last warmup step reaches the peak
    assert lr_at(4, 1.0, warmup_steps=4, total_steps=14, min_lr=0.1) == 1.0  # first decay step: still the peak
    assert lr_at(9, 1.0, warmup_steps=4, total_steps=14, min_lr=0.1) == pytest.approx(0.55)
    assert lr_at(14, 1.0, warmup_steps=4, total_steps=14, min_lr=0.1) == pytest.approx(0.1)
    assert lr_at(50, 1.0, warmup_steps=4, total_steps=14, min_lr=0.1) == pytest.approx(0.1)
    assert lr_at(7, 1.0) == 1.0  # no warmup, no floor: the book's constant rate


def test_schedule_is_applied_to_the_optimizer(text):
    tl, vl = loaders(text)
    model, opt = fresh()
    seen = []
    real_step = opt.step

    def spy(*a, **k):
        seen.append(opt.param_groups[0]["lr"])
        return real_step(*a, **k)

    opt.step = spy
    s = TrainSettings(epochs=2, lr=1e-3, warmup_steps=3, min_lr=1e-4, eval_freq=100)
    trainer = Trainer(model, opt, tl, vl, "cpu", s)
    trainer.fit()
    expected = [lr_at(i, 1e-3, 3, trainer.total_steps, 1e-4) for i in range(trainer.total_steps)]
    assert seen == pytest.approx(expected)
    assert seen[2] == pytest.approx(1e-3) and seen[3] == pytest.approx(1e-3)


def test_every_step_is_clipped_including_the_first_after_warmup(text, monkeypatch):
    tl, vl = loaders(text)
    model, opt = fresh(lr=1e-3)
    norms = []
    real_step = opt.step

    def spy(*a, **k):
        total = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
        norms.append(total.item())
        return real_step(*a, **k)

    opt.step = spy
    s = TrainSettings(epochs=1, warmup_steps=2, grad_clip=0.05, eval_freq=100)
    Trainer(model, opt, tl, vl, "cpu", s).fit()
    assert len(norms) == len(tl) and all(n <= 0.05 + 1e-6 for n in norms)
    assert norms[2] == pytest.approx(0.05, rel=1e-4)  # step index 2 = first post-warmup step


def test_gradient_accumulation_matches_a_bigger_batch(text):
    cfg = {**TINY, "drop_rate": 0.0}
    torch.manual_seed(123)
    tl1 = create_dataloader_v1(text, 1, 32, 32, shuffle=False, drop_last=True)
    tl2 = create_dataloader_v1(text, 2, 32, 32, shuffle=False, drop_last=True)
    results = []
    for loader, accum in ((tl1, 2), (tl2, 1)):
        model, opt = fresh(cfg)
        Trainer(model, opt, loader, loader, "cpu",
                TrainSettings(epochs=1, grad_accum=accum, eval_freq=1000)).fit(stop_after_steps=3)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], atol=2e-5, rtol=1e-4)


def test_a_partial_last_group_is_the_mean_of_its_own_micro_batches():
    """3 micro-batches, --grad-accum 2: the second step holds one micro-batch and must not be halved.

    With plain SGD the update is lr times the gradient, so the step equals one on that batch alone.
    """
    torch.manual_seed(0)
    data = torch.randint(0, TINY["vocab_size"], (3, 9))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data[:, :-1], data[:, 1:]), batch_size=1)
    cfg = {**TINY, "vocab_size": TINY["vocab_size"], "context_length": 8, "drop_rate": 0.0}

    def model_and_sgd():
        torch.manual_seed(1)
        model = GPTModel(cfg)
        return model, torch.optim.SGD(model.parameters(), lr=0.5)

    model, opt = model_and_sgd()
    Trainer(model, opt, loader, loader, "cpu", TrainSettings(epochs=1, grad_accum=2, eval_freq=1000, lr=0.5)).fit()
    ref, ref_opt = model_and_sgd()
    for group in ([0, 1], [2]):  # the same two steps by hand: the mean loss of each group
        ref_opt.zero_grad()
        torch.stack([torch.nn.functional.cross_entropy(ref(data[i:i + 1, :-1]).flatten(0, 1), data[i, 1:])
                     for i in group]).mean().backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_overfitting_one_batch_drives_loss_down(text):
    tl, _ = loaders(text)
    x, y = next(iter(tl))
    model, _ = fresh({**TINY, "drop_rate": 0.0}, impl="fast")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = calc_loss_batch(x, y, model, "cpu")
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_bf16_autocast_trains_with_fp32_loss(text):
    tl, vl = loaders(text)
    model, opt = fresh(impl="fast")
    s = TrainSettings(epochs=1, eval_freq=3, amp_dtype=torch.bfloat16)
    state = Trainer(model, opt, tl, vl, "cpu", s).fit()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert all(math.isfinite(v) for v in state.train_losses) and state.train_losses[-1] < state.train_losses[0]


def test_evaluation_under_autocast_casts_each_weight_once(text):
    """Inference mode would turn off autocast's cache of bf16 weight casts: every forward pass of an
    evaluation would cast every weight again."""
    from torch.profiler import ProfilerActivity, profile

    tl, vl = loaders(text)
    model, opt = fresh(impl="fast")
    trainer = Trainer(model, opt, tl, vl, "cpu", TrainSettings(eval_iter=3, amp_dtype=torch.bfloat16),
                      log=lambda *a: None)
    assert len(tl) >= 3
    shape = list(model.trf_blocks[0].ff.layers[0].weight.shape)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer._evaluate(TrainState(), epoch=0)
    casts = sum(e.count for e in prof.key_averages(group_by_input_shape=True)
                if e.key == "aten::_to_copy" and e.input_shapes and e.input_shapes[0] == shape)
    assert casts == len(model.trf_blocks)  # one cast of each block's weight, not one per batch


def test_loss_by_rows_equals_one_cross_entropy_over_all_rows():
    """From bf16 logits (the fast path's) and fp32, a row count no multiple of the slice; the loss and its
    gradient, also of a scaled loss (gradient accumulation) and with ignored targets."""
    import torch.nn.functional as F

    from ch05_pretraining.loss import cross_entropy_by_rows

    def loss_and_grad(fn, x, targets, scale=1.0):
        x = x.detach().requires_grad_()
        loss = fn(x, targets)
        (loss * scale).backward()
        return loss.detach(), x.grad

    torch.manual_seed(0)
    logits, targets = torch.randn(203, 1000) * 4, torch.randint(0, 1000, (203,))
    ignored = targets.clone()
    ignored[::3] = -100  # ignored, as F.cross_entropy ignores them
    for x in (logits, logits.bfloat16()):
        for t in (targets, ignored):
            book = lambda x, t: F.cross_entropy(x.float(), t)  # noqa: E731
            for scale, announced in ((1.0, 1.0), (1 / 3, 1 / 3), (1 / 3, 1.0)):  # the last: rescaled afterwards
                want_loss, want_grad = loss_and_grad(book, x, t, scale)
                for slice_logits in (8_000, 1_000, 10**6):  # slices of 8 rows, 1 row, all rows at once
                    loss, grad = loss_and_grad(lambda x, t: cross_entropy_by_rows(x, t, slice_logits, announced),
                                               x, t, scale)
                    torch.testing.assert_close(loss, want_loss, atol=2e-6, rtol=0)
                    assert grad.dtype == x.dtype
                    if x.dtype == torch.float32:
                        torch.testing.assert_close(grad, want_grad, atol=1e-9, rtol=1e-5)
                    else:  # the same fp32 values to rounding, then rounded to bf16: at most one step apart
                        steps = (grad.float() - want_grad.float()).abs() / want_grad.float().abs().clamp(min=1e-30)
                        same = (grad == want_grad).float().mean()
                        assert steps.max() <= 2 ** -7 * (1 if scale == announced else 2)
                        assert same > 0.999 if scale == announced or slice_logits == 10**6 else same < 0.999
                assert (grad[t == -100] == 0).all()
    assert cross_entropy_by_rows(logits, targets, 8_000).dtype == torch.float32
    assert not torch.allclose(cross_entropy_by_rows(logits, targets.roll(1), 8_000), F.cross_entropy(logits, targets))
    x = logits.detach().requires_grad_()
    assert not torch.allclose(loss_and_grad(lambda x, t: cross_entropy_by_rows(x, t, 8_000), x, targets.roll(1))[1],
                              loss_and_grad(lambda x, t: F.cross_entropy(x, t), x, targets)[1])
    grads = []  # backward three times through a retained graph: the gradients add up as PyTorch's do
    for fn in (lambda x: cross_entropy_by_rows(x, targets, 8_000), lambda x: F.cross_entropy(x, targets)):
        x = logits.detach().requires_grad_()
        loss = fn(x)
        for _ in range(3):
            loss.backward(retain_graph=True)
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=1e-5)
    with pytest.raises(IndexError, match="out of bounds"):  # as F.cross_entropy: only -100 is ignored
        cross_entropy_by_rows(logits.detach().requires_grad_(), targets.clone().fill_(-1), 8_000)


def test_evaluation_in_passes_gives_the_books_losses_and_draws(text):
    """``evaluate_in_passes`` (the CLI's fast path on a CPU) against the book's ``evaluate_model``: the same
    losses, the same draws from the global generator (the train loader shuffles), fewer forward passes."""
    from ch05_pretraining.loss import evaluate_in_passes, evaluate_model

    tl, vl = loaders(text)  # the validation loader: a batch of 2 rows, then one of 1
    model, _ = fresh(impl="fast")
    calls = []
    model.register_forward_hook(lambda module, inputs, out: calls.append(tuple(inputs[0].shape)))
    for train in (loaders(text, batch_size=3)[0], tl):
        results = []
        for evaluate in (evaluate_model, evaluate_in_passes):
            torch.manual_seed(5)
            calls.clear()
            passes = {} if evaluate is evaluate_model else {"pass_tokens": 4 * 32 * 2}
            losses = evaluate(model, train, vl, "cpu", 4, **passes)
            results.append((losses, torch.get_rng_state(), list(calls)))
        (book, book_rng, book_calls), (passes, rng, pass_calls) = results
        assert passes == pytest.approx(book, abs=1e-5) and torch.equal(rng, book_rng)
        assert sum(c[0] for c in pass_calls) == sum(c[0] for c in book_calls)  # every row once
        assert all(c[0] * c[1] <= 4 * 32 * 2 for c in pass_calls) and len(pass_calls) < len(book_calls)
    assert pass_calls == [(8, 32), (2 + 1, 32)]  # 4 train batches of 2 rows, then the 2 val batches
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        bf16 = evaluate_in_passes(model, tl, vl, "cpu", 4, pass_tokens=10**6), evaluate_model(model, tl, vl, "cpu", 4)
    assert bf16[0] == pytest.approx(bf16[1], abs=0.02)  # bf16 matrix products of another size: to rounding
    with pytest.raises(UserInputError, match="no batches"):
        evaluate_in_passes(model, tl, torch.utils.data.DataLoader([]), "cpu", 4)


def test_evaluation_in_passes_of_padded_batches_of_other_lengths_gives_the_books_losses():
    """Chapter 7's batches (each padded to its own longest row, pads ignored): ``evaluate_in_passes`` cuts each row
    after its last counted target, sorts the rows by length and runs them in passes; every batch's loss is still
    its own mean, so the losses are the book's ``evaluate_model``'s, and no pass holds more than ``pass_tokens``."""
    from ch05_pretraining.loss import evaluate_in_passes, evaluate_model

    g = torch.Generator().manual_seed(7)

    def batch(lengths, width):
        inputs = torch.randint(0, 50, (len(lengths), width), generator=g)
        targets = torch.randint(0, 50, (len(lengths), width), generator=g)
        for row, n in enumerate(lengths):
            targets[row, n:] = -100
        targets[0, :2] = -100  # a masked prompt: no logits there, yet its tokens are context
        return inputs, targets

    train = [batch([5, 9, 3], 9), batch([12, 2], 12), batch([4, 4, 7, 1], 7)]
    val = [batch([6, 3], 6), batch([8], 8)]
    model, _ = fresh(impl="fast")
    calls = []
    model.register_forward_hook(lambda module, inputs, out: calls.append(tuple(inputs[0].shape)))
    book = evaluate_model(model, train, val, "cpu", 3)
    calls.clear()
    passes = evaluate_in_passes(model, train, val, "cpu", 3, pass_tokens=30)
    assert passes == pytest.approx(book, abs=1e-5)
    assert sum(c[0] for c in calls) == 12 and all(c[0] * c[1] <= 30 or c[0] == 1 for c in calls)
    assert calls[0] == (2, 12) and sum(c[0] * c[1] for c in calls) < sum(i.numel() for i, _ in train + val)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_fast_training_and_evaluation_by_rows_give_the_books_losses(text, monkeypatch, grad_accum):
    """The trainer with ``loss_by_rows`` and ``eval_pass_tokens`` (the CLI's fast path on a CPU) against the
    book's loss, on the same weights and batches, for a few steps; it is the one that runs, and under gradient
    accumulation its gradient is made for the scaled loss (never rescaled afterwards)."""
    import ch05_pretraining.loss as loss

    calls, scales = [], []
    real = loss.cross_entropy_by_rows
    monkeypatch.setattr(loss, "cross_entropy_by_rows",
                        lambda logits, t, **kw: calls.append(logits.shape) or real(logits, t, **kw))
    real_backward = loss._CrossEntropyByRows.backward
    monkeypatch.setattr(loss._CrossEntropyByRows, "backward", staticmethod(
        lambda ctx, grad_loss: scales.append((float(grad_loss), ctx.expected)) or real_backward(ctx, grad_loss)))
    runs = []
    for by_rows in (False, True):
        tl, vl = loaders(text)
        model, opt = fresh(impl="fast")
        settings = TrainSettings(epochs=1, eval_iter=3, eval_freq=2, sample_tokens=0, loss_by_rows=by_rows,
                                 eval_pass_tokens=3 * 64 if by_rows else None, grad_accum=grad_accum)
        torch.manual_seed(5)
        state = Trainer(model, opt, tl, vl, "cpu", settings, log=lambda *a: None).fit(stop_after_steps=5)
        runs.append((state.train_losses, state.val_losses, torch.get_rng_state(), model.out_head.weight.detach()))
    (book_train, book_val, book_rng, book_w), (train, val, rng, w) = runs
    assert calls and train == pytest.approx(book_train, abs=1e-5) and val == pytest.approx(book_val, abs=1e-5)
    assert torch.equal(rng, book_rng) and len(train) == 3
    torch.testing.assert_close(w, book_w, atol=1e-6, rtol=1e-5)
    assert calls[0] == (64, 50257) and 50257 * 64 > loss.SLICE_LOGITS  # GPT-2's vocabulary: in slices
    assert len(scales) == 5 * grad_accum and all(got == expected == pytest.approx(1 / grad_accum)
                                                 for got, expected in scales)


def test_per_epoch_samples_guessed_from_the_training_text_are_greedy_decoding(text, gpt2_tok):
    from ch04_gpt.generate import generate_text_simple
    from ch05_pretraining.engine.trainer import sample_text, training_drafts

    tl, vl = loaders(text)
    model, opt = fresh(impl="fast", lr=3e-3)
    Trainer(model, opt, tl, vl, "cpu", TrainSettings(epochs=3, eval_freq=100), log=lambda *a: None).fit()
    drafts = training_drafts(tl)
    assert sum(len(t) for t in drafts.texts) == len(tl.dataset) * 32
    model.eval()
    idx = torch.tensor([gpt2_tok.encode("Every effort moves you")])
    expected = gpt2_tok.decode(generate_text_simple(model, idx, 20, 32)[0].tolist())
    assert sample_text(model, gpt2_tok, "cpu", "Every effort moves you", 20, drafts) == expected


def test_empty_loader_is_explained_not_nan(text):
    empty = create_dataloader_v1(text[:400], 50, 32, 32, shuffle=False, drop_last=True)
    assert len(empty) == 0
    with pytest.raises(ValueError, match="data loader has no batches"):
        calc_loss_loader(empty, fresh()[0], "cpu")


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"eval_freq": 0}, {"grad_accum": 0}, {"lr": 0.0},
                                    {"grad_clip": -1.0}, {"min_lr": 1.0, "lr": 0.1}, {"warmup_steps": -1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        TrainSettings(**kwargs)


def test_phase_clock_times_each_phase_of_a_run(text, gpt2_tok):
    """Each step, evaluation and sample is timed once, in its own phase."""
    from ch05_pretraining.engine.trainer import PhaseClock

    entered = []

    class CountingClock(PhaseClock):
        @contextlib.contextmanager
        def phase(self, name):
            entered.append(name)
            with super().phase(name):
                yield

    tl, vl = loaders(text)
    model, opt = fresh(impl="fast")
    state = Trainer(model, opt, tl, vl, "cpu", TrainSettings(epochs=2, eval_freq=3, sample_tokens=2),
                    tokenizer=gpt2_tok, log=lambda *a: None, clock=CountingClock()).fit()
    assert entered.count("forward + backward") == 2 * len(tl)
    assert entered.count("optimizer step") == state.global_step + 1
    assert entered.count("evaluation") == len(state.val_losses) > 0
    assert entered.count("per-epoch samples") == 2
