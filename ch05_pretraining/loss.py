"""Cross-entropy loss over batches and data loaders (section 5.1.3), and evaluation.

What this adds over chapter 4: a number that says how well the model predicts the
next token. Unlike the book, an empty data loader is an error that explains itself
instead of a silent NaN.

>>> # calc_loss_loader(train_loader, model, device)  -> 10.98758... for the untrained 124M model
"""

from __future__ import annotations

import torch

from ch02_text.common import UserInputError


def calc_loss_batch(input_batch, target_batch, model, device):
    """Mean cross-entropy of one batch of next-token targets."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    # .float(): a no-op for the book's fp32 logits; under bf16 autocast it keeps the loss in fp32
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target_batch.flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None):
    """Average batch loss over the first ``num_batches`` batches (all by default)."""
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
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            total_loss += loss.item()
        else:
            break
    return total_loss / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    """Train and validation loss over ``eval_iter`` batches each, in eval mode."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss
