"""Classification fine-tuning (sections 6.5-6.8): a class head on the last position, its loss and accuracy,
the book's training loop and plots, and classifying a new text.

Unlike chapter 5's next-token loss over every position: one label per text, read off the logits of the
last position only (``model(x)[:, -1, :]``, the one position whose causal attention has seen the whole
text), and a head of ``num_classes`` outputs in place of the 50,257-way one. The model is frozen but for
its last transformer block, final norm and new head. Chapter 5's ``calc_loss_loader`` and
``evaluate_model`` are reused, as the book reuses them, over this chapter's ``calc_loss_batch``; the
training loop prints chapter 5's ``Ep 1 (Step 000000): ...`` lines and the accuracies after each epoch.

>>> from ch06_classification.previous_chapters import GPT_CONFIG_124M, GPTModel
>>> cfg = {**GPT_CONFIG_124M, "vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2}
>>> _ = torch.manual_seed(123)
>>> model = to_classifier(GPTModel(cfg), num_classes=2)
>>> model(torch.tensor([[1, 2, 3]])).shape       # 2 class logits per position; only the last one is used
torch.Size([1, 3, 2])
>>> sorted({name.split(".")[0] + (name.split(".")[1] if name.startswith("trf") else "")
...         for name, p in model.named_parameters() if p.requires_grad})
['final_norm', 'out_head', 'trf_blocks1']
>>> batch = (torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([0, 1]))
>>> calc_accuracy_loader([batch], model, "cpu") in (0.0, 0.5, 1.0)
True
"""

from __future__ import annotations

import itertools

import torch

from . import previous_chapters as earlier
from .dataset import PAD_TOKEN_ID
from .previous_chapters import batches_to_use, format_eval_line, plot_over_epochs


def to_classifier(model, num_classes=2):
    """Section 6.5 and listing 6.7: freeze ``model``, give it a new head of ``num_classes`` outputs, and make
    the last transformer block and the final norm trainable again (the head is: new layers are).

    The new head draws its initial weights from torch's generator: the book seeds it first
    (``torch.manual_seed(123)``). Returns the model, changed in place.
    """
    for param in model.parameters():
        param.requires_grad = False

    model.out_head = torch.nn.Linear(in_features=model.cfg.emb_dim, out_features=num_classes)

    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    return model


def calc_accuracy_loader(data_loader, model, device, num_batches=None):
    """Listing 6.8: the share of texts whose last-position logits pick their label, over the first
    ``num_batches`` batches (all by default). Leaves the model in eval mode, as the book does."""
    model.eval()
    correct_predictions, num_examples = 0, 0
    num_batches = batches_to_use(data_loader, num_batches)  # an empty loader is an error, not a division by 0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            input_batch, target_batch = input_batch.to(device), target_batch.to(device)
            with torch.no_grad():
                logits = model(input_batch)[:, -1, :]  # Logits of last output token: (batch, num_classes)
            predicted_labels = torch.argmax(logits, dim=-1)

            num_examples += predicted_labels.shape[0]
            correct_predictions += (predicted_labels == target_batch).sum().item()
        else:
            break
    return correct_predictions / num_examples


def calc_loss_batch(input_batch, target_batch, model, device):
    """Section 6.6: cross-entropy of the last position's logits against each text's class label."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)[:, -1, :]  # Logits of last output token: (batch, num_classes)
    loss = torch.nn.functional.cross_entropy(logits, target_batch)
    return loss


def calc_loss_loader(data_loader, model, device, num_batches=None):
    """Listing 6.9: chapter 5's ``calc_loss_loader`` (the same, as the book says) over this chapter's
    ``calc_loss_batch``."""
    return earlier.calc_loss_loader(data_loader, model, device, num_batches, loss_of_batch=calc_loss_batch)


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    """Chapter 5's ``evaluate_model`` (the same, as the book says) over this chapter's ``calc_loss_batch``."""
    return earlier.evaluate_model(model, train_loader, val_loader, device, eval_iter, loss_of_batch=calc_loss_batch)


def train_classifier_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                            eval_freq, eval_iter, max_steps=None):
    """Listing 6.10: chapter 5's ``train_model_simple`` counting examples instead of tokens, and printing
    the training and validation accuracies (over ``eval_iter`` batches) after each epoch instead of a sample.

    ``max_steps`` (beyond the book, for a quick look): each epoch stops after that many batches.
    Returns ``train_losses, val_losses, train_accs, val_accs, examples_seen``.
    """
    # Initialize lists to track losses and examples seen
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1

    # Main training loop
    for epoch in range(num_epochs):
        model.train()  # Set model to training mode

        for input_batch, target_batch in itertools.islice(train_loader, max_steps):
            optimizer.zero_grad()  # Reset loss gradients from previous batch iteration
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()  # Calculate loss gradients
            optimizer.step()  # Update model weights using loss gradients
            examples_seen += input_batch.shape[0]  # New: track examples instead of tokens
            global_step += 1

            # Optional evaluation step
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                print(format_eval_line(epoch, global_step, train_loss, val_loss))

        # Calculate accuracy after each epoch
        train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=eval_iter)
        val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=eval_iter)
        print(f"Training accuracy: {train_accuracy*100:.2f}% | ", end="")
        print(f"Validation accuracy: {val_accuracy*100:.2f}%")
        train_accs.append(train_accuracy)
        val_accs.append(val_accuracy)

    return train_losses, val_losses, train_accs, val_accs, examples_seen


def plot_values(epochs_seen, examples_seen, train_values, val_values, label="loss"):
    """Listing 6.11: training and validation ``label`` (loss or accuracy) over epochs, with a second x-axis
    for the examples seen: chapter 5's figure (``plot_over_epochs``) for another quantity. Returns the figure
    (the book saves it as a PDF and shows it; the walk-through saves a PNG)."""
    return plot_over_epochs(epochs_seen, examples_seen, train_values, val_values, label=label,
                            seen_label="Examples seen", legend_loc="best", integer_epochs=False)


def classify_review(text, model, tokenizer, device, max_length=None, pad_token_id=PAD_TOKEN_ID):
    """Listing 6.12: "spam" or "not spam" for one text, prepared as ``SpamDataset`` prepares its texts.

    The text is cut to ``max_length`` tokens (None: the model's context length) and padded to it. The book
    reads the supported length off ``model.pos_emb.weight.shape[1]``, the embedding width (768 for GPT-2
    small); the context length is meant, and it is the same for the book's ``max_length`` of 120.
    """
    model.eval()

    # Prepare inputs to the model
    input_ids = tokenizer.encode(text)
    supported_context_length = model.context_length
    max_length = supported_context_length if max_length is None else min(max_length, supported_context_length)

    # Truncate sequences if they are too long
    input_ids = input_ids[:max_length]

    # Pad sequences to the longest sequence
    input_ids += [pad_token_id] * (max_length - len(input_ids))
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)  # add batch dimension: (1, max_length)

    # Model inference
    with torch.no_grad():
        logits = model(input_tensor)[:, -1, :]  # Logits of the last output token
    predicted_label = torch.argmax(logits, dim=-1).item()

    # Return the classified result
    return "spam" if predicted_label == 1 else "not spam"
