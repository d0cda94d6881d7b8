"""Cross-entropy loss over batches and data loaders (section 5.1.3), and evaluation.

What this adds over chapter 4: a number that says how well the model predicts the
next token. Unlike the book, an empty data loader is an error that explains itself
instead of a silent NaN. Beyond the book: ``cross_entropy_by_rows``, the same loss for an
evaluation computed a few rows at a time (what the train CLI evaluates with).

>>> # calc_loss_loader(train_loader, model, device)  -> 10.98758... for the untrained 124M model
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ch02_text.common import UserInputError


def calc_loss_batch(input_batch, target_batch, model, device):
    """Mean cross-entropy of one batch of next-token targets."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    # .float(): a no-op for the book's fp32 logits; under bf16 autocast it keeps the loss in fp32
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target_batch.flatten())


SLICE_LOGITS = 8 * 50_257  # logits per slice in cross_entropy_by_rows: 8 rows of GPT-2's, 1.6 MB in fp32


def cross_entropy_by_rows(logits, targets, slice_logits=SLICE_LOGITS):
    """``F.cross_entropy(logits.float(), targets)`` without autograd, in fp32 slices of whole rows, about
    ``slice_logits`` logits each (a small vocabulary: one slice).

    One call over all rows makes an fp32 copy of the whole (tokens, vocab) logits and a log-softmax of
    the same size (100 MB each for a batch of 2 x 256 GPT-2 tokens) and reads them back from memory; a
    slice stays in the cache. The book's evaluation batch: 9 ms against 13 ms in fp32, 10 against 20 ms
    from bf16 logits; the mean agrees to about 1e-7 (its sum runs in another order, in fp64).

    >>> logits, targets = torch.randn(20, 7), torch.randint(0, 7, (20,))
    >>> torch.allclose(cross_entropy_by_rows(logits, targets, slice_logits=21), F.cross_entropy(logits, targets))
    True
    """
    rows = max(1, slice_logits // logits.shape[-1])
    if rows >= logits.shape[0]:
        return F.cross_entropy(logits.float(), targets)
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    for start in range(0, logits.shape[0], rows):
        total += F.cross_entropy(logits[start:start + rows].float(), targets[start:start + rows], reduction="sum")
    return (total / (targets != -100).sum()).float()  # F.cross_entropy's mean: over the targets not ignored


def calc_eval_loss_batch(input_batch, target_batch, model, device):
    """``calc_loss_batch`` for an evaluation (no autograd): the loss by ``cross_entropy_by_rows``."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    return cross_entropy_by_rows(model(input_batch).flatten(0, 1), target_batch.flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None, loss_of_batch=calc_loss_batch):
    """Average batch loss over the first ``num_batches`` batches (all by default); ``loss_of_batch`` (beyond
    the book) computes each batch's."""
    total_loss = 0.
    if len(data_loader) == 0:
        raise UserInputError(
            "data loader has no batches (the book returns NaN here): the split has fewer "
            "tokens than one batch of windows; use more text, a larger split ratio, a smaller "
            "context length or a smaller batch size"
        )
    elif num_batches is None:
        num_batches = len(data_loader)
    else:
        # Reduce the number of batches to match the total number of batches in the data loader
        # if num_batches exceeds the number of batches in the data loader
        num_batches = min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            loss = loss_of_batch(input_batch, target_batch, model, device)
            total_loss += loss.item()
        else:
            break
    return total_loss / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter, loss_of_batch=calc_loss_batch):
    """Train and validation loss over ``eval_iter`` batches each, in eval mode."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, eval_iter, loss_of_batch)
        val_loss = calc_loss_loader(val_loader, model, device, eval_iter, loss_of_batch)
    model.train()
    return train_loss, val_loss
