# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Appendix E: Parameter-efficient fine-tuning with LoRA
#
# Chapter 6's spam classifier again, but instead of training the last block, the final norm and the head,
# every linear layer gets a low-rank adapter and only the adapters train. Run with
# `python -m ch06_classification.lora` (5 epochs of GPT-124M); `--epochs 1 --max-steps 5` for a quick look,
# `--tiny` for the whole appendix in seconds on a tiny fresh GPT. The book's values need GPT-2's weights
# (`data/gpt2-small-124M.safetensors`); without them every step runs all the same and the run says so.

# %%
import argparse
import time
from pathlib import Path

import torch

from ch02_text.figures import save_figure
from ch02_text.hardware import pick_device
from ch04_gpt.lora import LinearWithLoRA, LoRALayer, replace_linear_with_lora  # noqa: F401 (the appendix's names)
from ch06_classification.classifier import calc_accuracy_loader, plot_values, train_classifier_simple
from ch06_classification.dataset import spam_datasets, spam_loaders
from ch06_classification.pretrained import CH05_MODEL, GPT2_WEIGHTS, TINY_SIZES, gpt2_weights_path, starting_model
from ch06_classification.previous_chapters import DOWNLOAD_HINT

ARGS = globals().get("ARGS") or argparse.Namespace(
    epochs=5, max_steps=None, device="auto", out_dir="checkpoints", image_dir=None, gpt2_weights=None, tiny=False)

# %% [markdown]
# ## E.1 Introduction to LoRA
#
# A weight update ΔW of a layer is approximated by the product of two small matrices, A (in × rank) and
# B (rank × out): the layer computes `x @ W + alpha * (x @ A @ B)`, W frozen (`ch04_gpt/lora.py`).

# %% [markdown]
# ## E.2 Preparing the dataset
#
# Chapter 6's data: the balanced SMS Spam Collection split 70/10/20, written to `--out-dir`, three
# `SpamDataset`s padded to the longest training text and the loaders of listing 6.5.

# %%
train_dataset, val_dataset, test_dataset = spam_datasets(Path(ARGS.out_dir))
train_loader, val_loader, test_loader = spam_loaders((train_dataset, val_dataset, test_dataset))

print(f"{len(train_loader)} training batches")
print(f"{len(val_loader)} validation batches")
print(f"{len(test_loader)} test batches")

# %% [markdown]
# ## E.3 Initializing the model

# %%
BASE_CONFIG = {
    "vocab_size": 50257,     # Vocabulary size
    "context_length": 1024,  # Context length
    "drop_rate": 0.0,        # Dropout rate
    "qkv_bias": True,        # Query-key-value bias
    "emb_dim": 768, "n_layers": 12, "n_heads": 12,  # gpt2-small (124M)
}
if ARGS.tiny:  # beyond the book: a tiny fresh GPT, for tests and quick looks (--tiny)
    BASE_CONFIG.update(TINY_SIZES)

gpt2_path = None if ARGS.tiny else gpt2_weights_path(ARGS.gpt2_weights)
if gpt2_path is None and not ARGS.tiny:
    print(f"GPT-2 weights not found: {DOWNLOAD_HINT} and save it as data/{GPT2_WEIGHTS} "
          "(or in $LLMS_DATA_DIR)")
start = starting_model(BASE_CONFIG, gpt2_path, None if ARGS.tiny else Path(ARGS.out_dir) / CH05_MODEL)
print("Starting from", start.description)
model = start.model
model.eval();  # noqa: E703

# %%
torch.manual_seed(123)

num_classes = 2
model.out_head = torch.nn.Linear(in_features=BASE_CONFIG["emb_dim"], out_features=num_classes)

device = pick_device(ARGS.device)  # the book: cuda if available, else cpu
model.to(device);  # noqa: E703

# %%
torch.manual_seed(123)
train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=10)
val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=10)
test_accuracy = calc_accuracy_loader(test_loader, model, device, num_batches=10)

print(f"Training accuracy: {train_accuracy*100:.2f}%")
print(f"Validation accuracy: {val_accuracy*100:.2f}%")
print(f"Test accuracy: {test_accuracy*100:.2f}%")

# %% [markdown]
# ## E.4 Parameter-efficient fine-tuning with LoRA
#
# Listing E.5: Implementing a LoRA layer (`LoRALayer` in `ch04_gpt/lora.py`)
#
# Listing E.6: A LinearWithLora layer to replace Linear layers (`LinearWithLoRA`, `replace_linear_with_lora`)

# %%
total_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"Total trainable parameters before: {total_params:,}")

for param in model.parameters():
    param.requires_grad = False

total_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"Total trainable parameters after: {total_params:,}")

# %%
replace_linear_with_lora(model, rank=16, alpha=16)

total_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"Total trainable LoRA parameters: {total_params:,}")

# %%
model.to(device)
print(model)

# %%
torch.manual_seed(123)
train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=10)
val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=10)
test_accuracy = calc_accuracy_loader(test_loader, model, device, num_batches=10)

print(f"Training accuracy: {train_accuracy*100:.2f}%")
print(f"Validation accuracy: {val_accuracy*100:.2f}%")
print(f"Test accuracy: {test_accuracy*100:.2f}%")

# %%
start_time = time.time()

torch.manual_seed(123)

optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)

num_epochs = ARGS.epochs
train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
    model, train_loader, val_loader, optimizer, device,
    num_epochs=num_epochs, eval_freq=50, eval_iter=5, max_steps=ARGS.max_steps,
)

end_time = time.time()
execution_time_minutes = (end_time - start_time) / 60
print(f"Training completed in {execution_time_minutes:.2f} minutes.")

# %%
epochs_tensor = torch.linspace(0, num_epochs, len(train_losses))
examples_seen_tensor = torch.linspace(0, examples_seen, len(train_losses))

fig = plot_values(epochs_tensor, examples_seen_tensor, train_losses, val_losses, label="loss")
print("Saved figure:", save_figure(fig, "ch06_lora_loss.png", ARGS.image_dir))

# %%
train_accuracy = calc_accuracy_loader(train_loader, model, device)
val_accuracy = calc_accuracy_loader(val_loader, model, device)
test_accuracy = calc_accuracy_loader(test_loader, model, device)

print(f"Training accuracy: {train_accuracy*100:.2f}%")
print(f"Validation accuracy: {val_accuracy*100:.2f}%")
print(f"Test accuracy: {test_accuracy*100:.2f}%")
if not start.book_numbers:
    print("(not the book's values: this run did not start from GPT-2's weights)")
