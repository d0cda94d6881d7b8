"""Cross-entropy loss over batches and data loaders (section 5.1.3), and evaluation.

What this adds over chapter 4: a number that says how well the model predicts the
next token. Unlike the book, an empty data loader is an error that explains itself
instead of a silent NaN. Beyond the book, what the train CLI uses on a CPU: ``cross_entropy_by_rows``,
the same loss and gradient computed a few rows at a time, and ``evaluate_in_passes``, the same evaluation
with several batches in one forward pass.

>>> # calc_loss_loader(train_loader, model, device)  -> 10.98758... for the untrained 124M model
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ch02_text.errors import UserInputError


def calc_loss_batch(input_batch, target_batch, model, device):
    """Mean cross-entropy of one batch of next-token targets."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    # .float(): a no-op for the book's fp32 logits; under bf16 autocast it keeps the loss in fp32
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target_batch.flatten())


SLICE_LOGITS = 8 * 50_257  # logits per slice in cross_entropy_by_rows: 8 rows of GPT-2's, 1.6 MB in fp32


def cross_entropy_by_rows(logits, targets, slice_logits=SLICE_LOGITS, grad_scale=1.0):
    """``F.cross_entropy(logits.float(), targets)`` in fp32 slices of whole rows, about ``slice_logits``
    logits each (a small vocabulary: one slice); its gradient too, in ``logits``' dtype.

    One call over all rows makes an fp32 copy of the whole (tokens, vocab) logits and a log-softmax of
    the same size (100 MB each for a batch of 2 x 256 GPT-2 tokens) and reads them back from memory; its
    backward pass writes two more (the zeros of the loss's gradient, the log-softmax's) before the cast back
    to bf16. A slice stays in the cache, and when the logits need a gradient it is made in the same pass over
    each slice (the exp of its log-softmax, minus the targets' one-hot) and held for the backward pass (faster
    than ``F.cross_entropy`` in fp32 and from bf16 logits, forward and backward: bench/README.md). The mean agrees to about 1e-7 (its sum runs in another order, in fp64), the
    gradient to one rounding step of its dtype. ``grad_scale``: what the caller multiplies the loss by before
    its backward pass (``1 / group_size`` under gradient accumulation), so that the gradient made ahead is the
    one asked for; another factor scales it after rounding.

    >>> logits, targets = torch.randn(20, 7, requires_grad=True), torch.randint(0, 7, (20,))
    >>> loss = cross_entropy_by_rows(logits, targets, slice_logits=21)
    >>> torch.allclose(loss, F.cross_entropy(logits, targets))
    True
    >>> loss.backward()
    >>> torch.allclose(logits.grad, torch.func.grad(lambda x: F.cross_entropy(x, targets))(logits.detach()))
    True
    """
    rows = max(1, slice_logits // logits.shape[-1])
    if rows >= logits.shape[0]:
        return F.cross_entropy(logits.float(), targets)
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return (_loss_and_grad_by_rows(logits, targets, rows)[0] / _counted(targets)).float()
    return _CrossEntropyByRows.apply(logits, targets, rows, grad_scale)


class _CrossEntropyByRows(torch.autograd.Function):
    """``cross_entropy_by_rows`` with a gradient: made in the forward pass for a backward pass that scales the
    loss by ``grad_scale``; one read of the logits instead of two."""

    @staticmethod
    def forward(ctx, logits, targets, rows, grad_scale):
        counted = _counted(targets)
        ctx.expected = float(torch.tensor(grad_scale, dtype=torch.float32))  # as autograd's fp32 grad_loss holds it
        total, grad = _loss_and_grad_by_rows(logits, targets, rows, ctx.expected / max(counted, 1))
        ctx.save_for_backward(grad)  # freed after the backward pass, kept for a retained graph's next one
        return (total / counted).float()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        factor = float(grad_loss)
        if factor != ctx.expected:  # not the scale announced: the gradient made ahead, rescaled
            grad = (grad.float() * (factor / ctx.expected)).to(grad.dtype)
        return grad, None, None, None


def _counted(targets) -> int:
    """The targets not ignored (-100): F.cross_entropy's mean is over these."""
    return int((targets != -100).sum())


def _loss_and_grad_by_rows(logits, targets, rows, grad_scale=None):
    """(summed loss in fp64, gradient of ``grad_scale`` x that sum in ``logits``' dtype, None without a
    ``grad_scale``), ``rows`` rows at a time: the gradient is the exp of the log-softmax, minus the targets'
    one-hot, zero in an ignored target's row."""
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    if grad_scale is None:
        for start in range(0, logits.shape[0], rows):
            total += F.cross_entropy(logits[start:start + rows].float(), targets[start:start + rows], reduction="sum")
        return total, None
    grad, kept = torch.empty_like(logits), targets != -100
    if bool((targets[kept] < 0).any()):
        raise IndexError(f"target {int(targets[kept].min())} is out of bounds (a class id, or -100 to ignore)")
    ignores = not bool(kept.all())
    for start in range(0, logits.shape[0], rows):
        part = slice(start, start + rows)
        log_probs = torch.log_softmax(logits[part].float(), dim=-1)
        target, keep = targets[part, None].clamp(min=0), kept[part, None]
        total -= log_probs.gather(1, target).masked_fill_(~keep, 0).sum(dtype=torch.float64)
        probs = log_probs.exp_().scatter_add_(1, target, keep.to(log_probs.dtype).neg_())
        if ignores:
            probs.mul_(keep)
        torch.mul(probs, grad_scale, out=grad[part])
    return total, grad


def calc_loss_batch_by_rows(input_batch, target_batch, model, device, grad_scale=1.0):
    """``calc_loss_batch`` with the loss by ``cross_entropy_by_rows`` (what the train CLI trains and
    evaluates with on a CPU); ``grad_scale`` as there."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    return cross_entropy_by_rows(model(input_batch).flatten(0, 1), target_batch.flatten(), grad_scale=grad_scale)


def calc_loss_loader(data_loader, model, device, num_batches=None, loss_of_batch=calc_loss_batch):
    """Average batch loss over the first ``num_batches`` batches (all by default); ``loss_of_batch`` (beyond
    the book) computes each batch's."""
    total_loss = 0.
    num_batches = batches_to_use(data_loader, num_batches)
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            loss = loss_of_batch(input_batch, target_batch, model, device)
            total_loss += loss.item()
        else:
            break
    return total_loss / num_batches


def batches_to_use(data_loader, num_batches=None) -> int:
    """How many of ``data_loader``'s batches an evaluation of ``num_batches`` takes: all by default, and at
    most as many as it has."""
    if len(data_loader) == 0:
        raise UserInputError(
            "data loader has no batches (the book returns NaN here): the split has fewer "
            "tokens than one batch of windows; use more text, a larger split ratio, a smaller "
            "context length or a smaller batch size"
        )
    elif num_batches is None:
        return len(data_loader)
    # Reduce the number of batches to match the total number of batches in the data loader
    # if num_batches exceeds the number of batches in the data loader
    return min(num_batches, len(data_loader))


def evaluate_model(model, train_loader, val_loader, device, eval_iter, loss_of_batch=calc_loss_batch):
    """Train and validation loss over ``eval_iter`` batches each, in eval mode."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, eval_iter, loss_of_batch)
        val_loss = calc_loss_loader(val_loader, model, device, eval_iter, loss_of_batch)
    model.train()
    return train_loss, val_loss


EVAL_PASS_TOKENS = 3 * 512  # tokens per forward pass of evaluate_in_passes: 3 of the book's batches of 2 x 256
EVAL_PASS_LOGITS = EVAL_PASS_TOKENS * 50_257  # and at most as many logits as that makes with GPT-2's vocabulary


def eval_pass_tokens(vocab_size: int) -> int:
    """Tokens per forward pass of ``evaluate_in_passes`` for a vocabulary: ``EVAL_PASS_TOKENS``, fewer where
    their logits would pass ``EVAL_PASS_LOGITS`` (a bigger vocabulary).

    >>> eval_pass_tokens(50257), eval_pass_tokens(65), eval_pass_tokens(262_144)
    (1536, 1536, 294)
    """
    return max(1, min(EVAL_PASS_TOKENS, EVAL_PASS_LOGITS // vocab_size))


def evaluate_in_passes(model, train_loader, val_loader, device, eval_iter, pass_tokens=EVAL_PASS_TOKENS):
    """``evaluate_model``'s losses with the batches of both loaders run through the model a few at a time.

    Up to ``pass_tokens`` tokens a forward pass (a batch alone if bigger; ``eval_pass_tokens`` chooses them
    for a vocabulary), each batch's loss by ``cross_entropy_by_rows``. In eval mode the model sees each row
    alone, so the losses are the book's (to rounding: the matrix products are larger), and the loaders are
    iterated as the book iterates them (the same draws from the global generator).
    """
    model.eval()
    with torch.no_grad():
        taken = [_first_batches(train_loader, eval_iter), _first_batches(val_loader, eval_iter)]
        totals = [0., 0.]
        for group in _passes([(which, batch) for which, batches in enumerate(taken) for batch in batches],
                             pass_tokens):
            logits = model(torch.cat([inputs for _, (inputs, _) in group]).to(device))
            start = 0
            for which, (inputs, targets) in group:
                rows = logits[start:start + len(inputs)]  # (batch, num_tokens, vocab)
                totals[which] += cross_entropy_by_rows(rows.flatten(0, 1), targets.to(device).flatten()).item()
                start += len(inputs)
            del logits, rows  # before the next pass: one pass's logits at a time
    model.train()
    return totals[0] / len(taken[0]), totals[1] / len(taken[1])


def _first_batches(data_loader, num_batches):
    """The batches ``calc_loss_loader`` takes, fetched as it fetches them (one more before it stops)."""
    num_batches, taken = batches_to_use(data_loader, num_batches), []
    for i, batch in enumerate(data_loader):
        if i >= num_batches:
            break
        taken.append(batch)
    return taken


def _passes(batches, pass_tokens):
    """``batches`` in order, in groups of the same sequence length with at most ``pass_tokens`` tokens."""
    group, tokens = [], 0
    for item in batches:
        inputs = item[1][0]
        if group and (tokens + inputs.numel() > pass_tokens or inputs.shape[1:] != group[0][1][0].shape[1:]):
            yield group
            group, tokens = [], 0
        group.append(item)
        tokens += inputs.numel()
    if group:
        yield group
