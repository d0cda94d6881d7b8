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
    return cross_entropy_by_rows(*kept_logits(model, input_batch, target_batch), grad_scale=grad_scale)


def kept_logits(model, input_batch, target_batch):
    """``(logits, targets)``, flattened, of the positions whose target counts (not -100): the model's head runs
    on those alone (its ``kept`` mask), and the mean loss over them is the loss over the whole batch. Where every
    target counts (chapter 5's windows) the model is called as the book calls it.

    >>> from ch04_gpt.model import GPTModel
    >>> model = GPTModel({"vocab_size": 11, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
    ...                   "drop_rate": 0.0, "qkv_bias": False}).eval()
    >>> ids, targets = torch.tensor([[1, 2, 3]]), torch.tensor([[2, -100, 4]])
    >>> logits, kept = kept_logits(model, ids, targets)
    >>> logits.shape, kept.tolist(), torch.allclose(logits, model(ids)[0, [0, 2]], atol=1e-6)
    (torch.Size([2, 11]), [2, 4], True)
    """
    kept = target_batch != -100
    if bool(kept.all()):
        return model(input_batch).flatten(0, 1), target_batch.flatten()
    return model(input_batch, kept=kept), target_batch[kept]


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
    """``evaluate_model``'s losses with the rows of both loaders' batches run through the model a few at a time.

    In eval mode the model sees each row alone, and a position after a row's last counted target (a pad)
    changes none of its losses, so the rows are cut there, sorted by length and run in passes of up to
    ``pass_tokens`` tokens (a row alone if longer; ``eval_pass_tokens`` chooses them for a vocabulary), with
    logits only where a target counts. Each batch's loss is still its own mean, as the book takes it: the
    losses are the book's (to rounding: the matrix products have other sizes), and the loaders are iterated
    as the book iterates them (the same draws from the global generator). Batches of different lengths
    (chapter 7's instructions) cost their real tokens, not their padding.
    """
    model.eval()
    with torch.no_grad():
        taken = [_first_batches(train_loader, eval_iter), _first_batches(val_loader, eval_iter)]
        rows = [(which, b, _used_length(targets[r]), inputs[r], targets[r]) for which, batches in enumerate(taken)
                for b, (inputs, targets) in enumerate(batches) for r in range(len(inputs))]
        sums = [torch.zeros(len(batches), dtype=torch.float64) for batches in taken]
        counts = [torch.zeros(len(batches), dtype=torch.float64) for batches in taken]
        for group in _passes(sorted(rows, key=lambda row: -row[2]), pass_tokens):
            inputs, targets = _stacked(group, device)
            row_sums, row_counts = _row_losses(model, inputs, targets)
            for (which, b, *_), row_sum, row_count in zip(group, row_sums.tolist(), row_counts.tolist()):
                sums[which][b] += row_sum
                counts[which][b] += row_count
    model.train()
    train_loss, val_loss = ((s / c).mean().item() for s, c in zip(sums, counts))
    return train_loss, val_loss


def _used_length(targets) -> int:
    """Positions up to a row's last counted target (the rest are pads whose losses are ignored)."""
    counted = (targets.reshape(targets.shape[0], -1) != -100).any(-1).nonzero()
    return int(counted[-1]) + 1 if len(counted) else 1


def _stacked(group, device):
    """One pass's rows, cut or padded (with ignored targets) to the longest used length among them."""
    _, _, length, first_inputs, first_targets = group[0]  # the rows are sorted: the first is the longest
    inputs = first_inputs.new_zeros((len(group), length, *first_inputs.shape[1:]))
    targets = first_targets.new_full((len(group), length, *first_targets.shape[1:]), -100)
    for i, (_, _, _, row_inputs, row_targets) in enumerate(group):
        n = min(length, len(row_inputs))
        inputs[i, :n], targets[i, :n] = row_inputs[:n], row_targets[:n]
    return inputs.to(device), targets.to(device)


def _row_losses(model, inputs, targets):
    """Each row's summed loss and counted targets (fp64, on the CPU), from logits at the counted positions only."""
    logits, kept_targets = kept_logits(model, inputs, targets)
    row_of = torch.arange(len(inputs), device=targets.device)[:, None].expand_as(targets)[targets != -100]
    step = max(1, SLICE_LOGITS // logits.shape[-1])
    losses = torch.cat([F.cross_entropy(logits[i:i + step].float(), kept_targets[i:i + step], reduction="none")
                        for i in range(0, len(logits), step)] or [logits.new_zeros(0, dtype=torch.float32)])
    sums = torch.zeros(len(inputs), dtype=torch.float64, device=logits.device).index_add_(0, row_of, losses.double())
    counts = (targets != -100).reshape(len(inputs), -1).sum(-1)
    return sums.cpu(), counts.double().cpu()


def _first_batches(data_loader, num_batches):
    """The batches ``calc_loss_loader`` takes, fetched as it fetches them (one more before it stops)."""
    num_batches, taken = batches_to_use(data_loader, num_batches), []
    for i, batch in enumerate(data_loader):
        if i >= num_batches:
            break
        taken.append(batch)
    return taken


def _passes(rows, pass_tokens):
    """``rows`` (``(which, batch, used length, inputs, targets)``, longest first) in order, in groups of at most
    ``pass_tokens`` tokens, each row counted at the group's first (longest) row's used length."""
    group = []
    for row in rows:
        if group and (len(group) + 1) * group[0][2] > pass_tokens:
            yield group
            group = []
        group.append(row)
    if group:
        yield group
