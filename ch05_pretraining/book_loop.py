"""The book's training loop (listing 5.3, `train_model_simple`) and loss plot: the loop as the book writes it.

What this adds over the loss functions: updating the weights, with periodic
evaluation and a text sample after every epoch. ``train_model_simple`` stays exactly
as in the book (its numbers are the book's); the CLI uses ``trainer.Trainer``, which
is tested to give the same losses in its book mode.

>>> # train_losses, val_losses, tokens_seen = train_model_simple(model, train_loader, val_loader,
>>> #     optimizer, device, num_epochs=10, eval_freq=5, eval_iter=5,
>>> #     start_context="Every effort moves you", tokenizer=tokenizer)
"""

from __future__ import annotations

import torch

from .loss import calc_loss_batch, evaluate_model
from .previous_chapters import generate_text_simple
from .tokens import text_to_token_ids, token_ids_to_text


def format_eval_line(epoch, global_step, train_loss, val_loss):
    return f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"


def generate_and_print_sample(model, tokenizer, device, start_context, max_new_tokens=50):
    """Greedy-continue ``start_context`` and print it on one line (newlines as spaces)."""
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    with torch.no_grad():
        token_ids = generate_text_simple(
            model=model, idx=encoded,
            max_new_tokens=max_new_tokens, context_size=context_size
        )
    decoded_text = token_ids_to_text(token_ids, tokenizer)
    print(decoded_text.replace("\n", " "))  # Compact print format
    model.train()
    return decoded_text


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                       eval_freq, eval_iter, start_context, tokenizer):
    """Listing 5.3: train for ``num_epochs``, evaluating every ``eval_freq`` steps."""
    # Initialize lists to track losses and tokens seen
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1

    # Main training loop
    for epoch in range(num_epochs):
        model.train()  # Set model to training mode

        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # Reset loss gradients from previous batch iteration
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()  # Calculate loss gradients
            optimizer.step()  # Update model weights using loss gradients
            tokens_seen += input_batch.numel()
            global_step += 1

            # Optional evaluation step
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(
                    model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(format_eval_line(epoch, global_step, train_loss, val_loss))

        # Print a sample text after each epoch
        generate_and_print_sample(
            model, tokenizer, device, start_context
        )

    return train_losses, val_losses, track_tokens_seen


def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses):
    """Section 5.2: train/val loss over epochs, with a second x-axis for tokens seen."""
    return plot_over_epochs(epochs_seen, tokens_seen, train_losses, val_losses)


def plot_over_epochs(epochs_seen, seen, train_values, val_values, label="loss", seen_label="Tokens seen",
                     legend_loc="upper right", integer_epochs=True):
    """The book's two-axis figure (section 5.2; chapter 6's ``plot_values`` draws it for losses and accuracies
    over examples seen): training and validation ``label`` over epochs, a second x-axis for ``seen_label``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax1 = plt.subplots(figsize=(5, 3))

    # Plot training and validation values against epochs
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend(loc=legend_loc)
    if integer_epochs:
        ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # only show integer labels on x-axis

    # Create a second x-axis for what was seen
    ax2 = ax1.twiny()  # Create a second x-axis that shares the same y-axis
    ax2.plot(seen, train_values, alpha=0)  # Invisible plot for aligning ticks
    ax2.set_xlabel(seen_label)

    fig.tight_layout()  # Adjust layout to make room
    return fig
