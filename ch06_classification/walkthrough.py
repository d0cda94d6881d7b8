# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Chapter 6: Fine-tuning for classification
#
# The chapter's listings in the book's order, printing what the book prints: GPT-2 small becomes a spam
# classifier. Run with `python -m ch06_classification` (5 epochs of GPT-124M: half a minute on a GPU, about
# half an hour on two CPU cores); `--epochs 1 --max-steps 5` for a quick look, `--tiny` for the whole chapter
# in seconds on a tiny fresh GPT. Figures go to `image/`, the data splits and the classifier to `checkpoints/`.
#
# The book's values need GPT-2's weights: place `model.safetensors` of huggingface.co/openai-community/gpt2
# as `data/gpt2-small-124M.safetensors`. Without them every step runs all the same, from chapter 5's model
# (`checkpoints/model.pth`) or a fresh GPT-124M, and the run says which.

# %%
import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ch02_text.data_files import find_data_file
from ch02_text.figures import save_figure
from ch02_text.hardware import pick_device
from ch06_classification.classifier import (
    calc_accuracy_loader, calc_loss_loader, classify_review, plot_values, to_classifier, train_classifier_simple,
)
from ch06_classification.dataset import SpamDataset
from ch06_classification.pretrained import (
    CH05_MODEL, GPT2_WEIGHTS, TINY_SIZES, check_fits, gpt2_weights_path, starting_model,
)
from ch06_classification.previous_chapters import (
    DOWNLOAD_HINT, generate_text_simple, gpt2_tokenizer, text_to_token_ids, token_ids_to_text,
)
from ch06_classification.spam_data import (
    DATA_FILE, create_balanced_dataset, encode_labels, format_counts, random_split, read_sms_spam, value_counts,
    write_csv,
)

ARGS = globals().get("ARGS") or argparse.Namespace(
    epochs=5, max_steps=None, device="auto", out_dir="checkpoints", image_dir=None, gpt2_weights=None, tiny=False)

# %% [markdown]
# ## 6.1 Different categories of fine-tuning
#
# No code in this section: classification fine-tuning (this chapter) teaches a model a fixed set of
# classes; instruction fine-tuning (chapter 7) teaches it to follow instructions.

# %% [markdown]
# ## 6.2 Preparing the dataset
#
# Listing 6.1: Downloading and unzipping the dataset (`find_data_file`, `read_sms_spam`)
#
# `SMSSpamCollection` is found like every data file (`data/`, `$LLMS_DATA_DIR`, else downloaded from the
# book's zip and unzipped into `data/`), and read without pandas (`read_sms_spam` in
# `ch06_classification/spam_data.py` reads it as the book's `pd.read_csv(..., sep="\t", header=None)`).

# %%
data_file_path = find_data_file(DATA_FILE)
rows = read_sms_spam(data_file_path)  # [(label, text)]: the book's DataFrame with columns Label and Text
print(f"{len(rows)} rows x 2 columns; the first: {rows[0]}")

# %%
print(format_counts(value_counts(rows)))

# %% [markdown]
# Listing 6.2: Creating a balanced dataset (`create_balanced_dataset` in `spam_data.py`)
#
# As many "ham" messages, drawn at random, as there are "spam" messages.

# %%
balanced_rows = create_balanced_dataset(rows)
print(format_counts(value_counts(balanced_rows)))

# %%
balanced_rows = encode_labels(balanced_rows)  # the labels as integers: "ham" 0, "spam" 1

# %% [markdown]
# Listing 6.3: Splitting the dataset (`random_split` and `write_csv` in `spam_data.py`)
#
# 70% training, 10% validation, the rest (20%) test. The book writes the three CSV files into the current
# folder; here they go to `--out-dir`.

# %%
train_rows, validation_rows, test_rows = random_split(balanced_rows, 0.7, 0.1)
# Test size is implied to be 0.2 as the remainder

out_dir = Path(ARGS.out_dir)
train_csv = write_csv(train_rows, out_dir / "train.csv")
validation_csv = write_csv(validation_rows, out_dir / "validation.csv")
test_csv = write_csv(test_rows, out_dir / "test.csv")
print(f"{len(train_rows)} training, {len(validation_rows)} validation and {len(test_rows)} test rows "
      f"written to {out_dir}")

# %% [markdown]
# ## 6.3 Creating data loaders
#
# The messages differ in length: each is padded to the longest training message with `<|endoftext|>`.

# %%
tokenizer = gpt2_tokenizer()  # = tiktoken.get_encoding("gpt2"), built offline
print(tokenizer.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}))

# %% [markdown]
# Listing 6.4: Setting up a Pytorch Dataset class (`SpamDataset` in `ch06_classification/dataset.py`)

# %%
train_dataset = SpamDataset(
    csv_file=train_csv,
    max_length=None,
    tokenizer=tokenizer
)

print(train_dataset.max_length)

# %%
val_dataset = SpamDataset(
    csv_file=validation_csv,
    max_length=train_dataset.max_length,
    tokenizer=tokenizer
)
test_dataset = SpamDataset(
    csv_file=test_csv,
    max_length=train_dataset.max_length,
    tokenizer=tokenizer
)

# %% [markdown]
# Listing 6.5: Creating PyTorch data loaders

# %%
num_workers = 0
batch_size = 8

torch.manual_seed(123)

train_loader = DataLoader(
    dataset=train_dataset,
    batch_size=batch_size,
    shuffle=True,
    num_workers=num_workers,
    drop_last=True,
)

val_loader = DataLoader(
    dataset=val_dataset,
    batch_size=batch_size,
    num_workers=num_workers,
    drop_last=False,
)

test_loader = DataLoader(
    dataset=test_dataset,
    batch_size=batch_size,
    num_workers=num_workers,
    drop_last=False,
)

# %%
print("Train loader:")
for input_batch, target_batch in train_loader:
    pass

print("Input batch dimensions:", input_batch.shape)
print("Label batch dimensions", target_batch.shape)

# %%
print(f"{len(train_loader)} training batches")
print(f"{len(val_loader)} validation batches")
print(f"{len(test_loader)} test batches")

# %% [markdown]
# ## 6.4 Initializing a model with pretrained weights

# %%
CHOOSE_MODEL = "gpt2-small (124M)"
INPUT_PROMPT = "Every effort moves"

BASE_CONFIG = {
    "vocab_size": 50257,     # Vocabulary size
    "context_length": 1024,  # Context length
    "drop_rate": 0.0,        # Dropout rate
    "qkv_bias": True         # Query-key-value bias
}

model_configs = {
    "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large (774M)": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl (1558M)": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}

BASE_CONFIG.update(model_configs[CHOOSE_MODEL])

# %%
if ARGS.tiny:  # beyond the book: a tiny fresh GPT, for tests and quick looks (--tiny)
    BASE_CONFIG.update(TINY_SIZES)

# %% [markdown]
# Listing 6.6: Loading a pretrained GPT model (`starting_model` in `ch06_classification/pretrained.py`)
#
# The book loads OpenAI's TensorFlow checkpoint; here GPT-2's `model.safetensors`
# (`data/gpt2-small-124M.safetensors` or `--gpt2-weights`), else chapter 5's model, else a fresh GPT-124M.

# %%
gpt2_path = None if ARGS.tiny else gpt2_weights_path(ARGS.gpt2_weights)
if gpt2_path is None and not ARGS.tiny:
    print(f"GPT-2 weights not found: {DOWNLOAD_HINT} and save it as data/{GPT2_WEIGHTS} "
          "(or in $LLMS_DATA_DIR)")
start = starting_model(BASE_CONFIG, gpt2_path, None if ARGS.tiny else out_dir / CH05_MODEL)
print("Starting from", start.description)
check_fits(train_dataset.max_length, start.model)  # the book asserts this on BASE_CONFIG

model = start.model
model.eval();  # noqa: E703

# %%
text_1 = "Every effort moves you"

token_ids = generate_text_simple(
    model=model,
    idx=text_to_token_ids(text_1, tokenizer),
    max_new_tokens=15,
    context_size=BASE_CONFIG["context_length"]
)

print(token_ids_to_text(token_ids, tokenizer))

# %%
text_2 = (
    "Is the following text 'spam'? Answer with 'yes' or 'no':"
    " 'You are a winner you have been specially"
    " selected to receive $1000 cash or a $2000 award.'"
)

token_ids = generate_text_simple(
    model=model,
    idx=text_to_token_ids(text_2, tokenizer),
    max_new_tokens=23,
    context_size=BASE_CONFIG["context_length"]
)

print(token_ids_to_text(token_ids, tokenizer))

# %% [markdown]
# ## 6.5 Adding a classification head

# %%
print(model)

# %% [markdown]
# Listing 6.7: Adding a classification layer (`to_classifier` in `ch06_classification/classifier.py`)
#
# It freezes the model, replaces `model.out_head` by `torch.nn.Linear(BASE_CONFIG["emb_dim"], num_classes)`
# and makes the last transformer block and the final norm trainable again.

# %%
torch.manual_seed(123)

num_classes = 2
model = to_classifier(model, num_classes=num_classes)

# %%
inputs = tokenizer.encode("Do you have time")
inputs = torch.tensor(inputs).unsqueeze(0)
print("Inputs:", inputs)
print("Inputs dimensions:", inputs.shape)  # shape: (batch_size, num_tokens)

# %%
with torch.no_grad():
    outputs = model(inputs)

print("Outputs:\n", outputs)
print("Outputs dimensions:", outputs.shape)  # shape: (batch_size, num_tokens, num_classes)

# %%
print("Last output token:", outputs[:, -1, :])

# %% [markdown]
# ## 6.6 Calculating the classification loss and accuracy

# %%
probas = torch.softmax(outputs[:, -1, :], dim=-1)
label = torch.argmax(probas)
print("Class label:", label.item())

# %%
logits = outputs[:, -1, :]
label = torch.argmax(logits)
print("Class label:", label.item())

# %% [markdown]
# Listing 6.8: Calculating the classification accuracy (`calc_accuracy_loader`)

# %%
device = pick_device(ARGS.device)  # the book: cuda if available, else cpu
model.to(device)  # no assignment model = model.to(device) necessary for nn.Module classes

torch.manual_seed(123)  # For reproducibility due to the shuffling in the training data loader

train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=10)
val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=10)
test_accuracy = calc_accuracy_loader(test_loader, model, device, num_batches=10)

print(f"Training accuracy: {train_accuracy*100:.2f}%")
print(f"Validation accuracy: {val_accuracy*100:.2f}%")
print(f"Test accuracy: {test_accuracy*100:.2f}%")

# %% [markdown]
# Listing 6.9: Calculating the classification loss (`calc_loss_loader`)
#
# Chapter 5's `calc_loss_loader` over the last position's loss (`calc_loss_batch`).

# %%
with torch.no_grad():  # Disable gradient tracking for efficiency because we are not training, yet
    train_loss = calc_loss_loader(train_loader, model, device, num_batches=5)
    val_loss = calc_loss_loader(val_loader, model, device, num_batches=5)
    test_loss = calc_loss_loader(test_loader, model, device, num_batches=5)

print(f"Training loss: {train_loss:.3f}")
print(f"Validation loss: {val_loss:.3f}")
print(f"Test loss: {test_loss:.3f}")

# %% [markdown]
# ## 6.7 Fine-tuning the model on supervised data
#
# Listing 6.10: Fine-tuning the model to classify spam (`train_classifier_simple`)
#
# `--max-steps N` stops each epoch after N steps (a quick look, not the book's run).

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

# %% [markdown]
# Listing 6.11: Plotting the classification loss (`plot_values`)

# %%
epochs_tensor = torch.linspace(0, num_epochs, len(train_losses))
examples_seen_tensor = torch.linspace(0, examples_seen, len(train_losses))

fig = plot_values(epochs_tensor, examples_seen_tensor, train_losses, val_losses)
loss_figure = save_figure(fig, "ch06_loss.png", ARGS.image_dir)
print("Saved figure:", loss_figure)

# %%
epochs_tensor = torch.linspace(0, num_epochs, len(train_accs))
examples_seen_tensor = torch.linspace(0, examples_seen, len(train_accs))

fig = plot_values(epochs_tensor, examples_seen_tensor, train_accs, val_accs, label="accuracy")
accuracy_figure = save_figure(fig, "ch06_accuracy.png", ARGS.image_dir)
print("Saved figure:", accuracy_figure)

# %%
train_accuracy = calc_accuracy_loader(train_loader, model, device)
val_accuracy = calc_accuracy_loader(val_loader, model, device)
test_accuracy = calc_accuracy_loader(test_loader, model, device)

print(f"Training accuracy: {train_accuracy*100:.2f}%")
print(f"Validation accuracy: {val_accuracy*100:.2f}%")
print(f"Test accuracy: {test_accuracy*100:.2f}%")

# %% [markdown]
# ## 6.8 Using the LLM as a spam classifier
#
# Listing 6.12: Using the model to classify new texts (`classify_review`)

# %%
text_1 = (
    "You are a winner you have been specially"
    " selected to receive $1000 cash or a $2000 award."
)

print(classify_review(
    text_1, model, tokenizer, device, max_length=train_dataset.max_length
))

# %%
text_2 = (
    "Hey, just wanted to check if we're still on"
    " for dinner tonight? Let me know!"
)

print(classify_review(
    text_2, model, tokenizer, device, max_length=train_dataset.max_length
))

# %% [markdown]
# Saving the classifier and loading it back (into `--out-dir`; the book uses the current folder).

# %%
classifier_path = out_dir / "review_classifier.pth"
torch.save(model.state_dict(), classifier_path)

# %%
model_state_dict = torch.load(classifier_path, map_location=device, weights_only=True)
print(model.load_state_dict(model_state_dict))
