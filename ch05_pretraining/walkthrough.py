# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Chapter 5: Pretraining on unlabeled data
#
# The chapter's listings in the book's order, printing what the book prints.
# Run with `python -m ch05_pretraining` (about 10 minutes on a laptop CPU for the
# book's 10 epochs; `--epochs 1` for a quick look). Figures go to `image/`,
# the saved models to `checkpoints/`.
#
# The model uses the book's own classes (`impl="book"`) so dropout draws random
# numbers exactly as in the book and the printed losses match.

# %%
import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ch05_pretraining.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ch05_pretraining.loss import calc_loss_loader  # noqa: E402
from ch02_text.data_files import find_local_data_file, read_data_text
from ch02_text.figures import save_figure
from ch02_text.hardware import pick_device
from ch05_pretraining.previous_chapters import GPTModel, create_dataloader_v1, generate_text_simple, gpt2_tokenizer
from ch05_pretraining.sampling import generate, print_sampled_tokens, softmax_with_temperature  # noqa: E402
from ch05_pretraining.tokens import text_to_token_ids, token_ids_to_text  # noqa: E402
from ch05_pretraining.book_loop import plot_losses, train_model_simple  # noqa: E402

ARGS = globals().get("ARGS") or argparse.Namespace(
    epochs=10, device="auto", out_dir="checkpoints", image_dir=None, gpt2_weights=None)

# %% [markdown]
# ## 5.1 Evaluating generative text models

# %%
GPT_CONFIG_124M = {
    "vocab_size": 50257,   # Vocabulary size
    "context_length": 256, # Shortened context length (orig: 1024)
    "emb_dim": 768,        # Embedding dimension
    "n_heads": 12,         # Number of attention heads
    "n_layers": 12,        # Number of layers
    "drop_rate": 0.1,      # Dropout rate
    "qkv_bias": False      # Query-key-value bias
}

torch.manual_seed(123)
model = GPTModel(GPT_CONFIG_124M, impl="book")
model.eval();  # Disable dropout during inference  # noqa: E703

# %%
start_context = "Every effort moves you"
tokenizer = gpt2_tokenizer()  # = tiktoken.get_encoding("gpt2"), built offline

token_ids = generate_text_simple(
    model=model,
    idx=text_to_token_ids(start_context, tokenizer),
    max_new_tokens=10,
    context_size=GPT_CONFIG_124M["context_length"]
)

print("Output text:\n", token_ids_to_text(token_ids, tokenizer))

# %% [markdown]
# ### 5.1.2 Calculating the text generation loss

# %%
inputs = torch.tensor([[16833, 3626, 6100],   # ["every effort moves",
                       [40,    1107, 588]])   #  "I really like"]

targets = torch.tensor([[3626, 6100, 345  ],  # [" effort moves you",
                        [1107,  588, 11311]]) #  " really like chocolate"]

# %%
with torch.no_grad():
    logits = model(inputs)

probas = torch.softmax(logits, dim=-1)  # Probability of each token in vocabulary
print(probas.shape)  # Shape: (batch_size, num_tokens, vocab_size)

# %%
token_ids = torch.argmax(probas, dim=-1, keepdim=True)
print("Token IDs:\n", token_ids)

# %%
print(f"Targets batch 1: {token_ids_to_text(targets[0], tokenizer)}")
print(f"Outputs batch 1: {token_ids_to_text(token_ids[0].flatten(), tokenizer)}")

# %%
text_idx = 0
target_probas_1 = probas[text_idx, [0, 1, 2], targets[text_idx]]
print("Text 1:", target_probas_1)

text_idx = 1
target_probas_2 = probas[text_idx, [0, 1, 2], targets[text_idx]]
print("Text 2:", target_probas_2)

# %%
# Compute logarithm of all token probabilities
log_probas = torch.log(torch.cat((target_probas_1, target_probas_2)))
print(log_probas)

# %%
# Calculate the average probability for each token
avg_log_probas = torch.mean(log_probas)
print(avg_log_probas)

# %%
neg_avg_log_probas = avg_log_probas * -1
print(neg_avg_log_probas)

# %%
# Logits have shape (batch_size, num_tokens, vocab_size)
print("Logits shape:", logits.shape)

# Targets have shape (batch_size, num_tokens)
print("Targets shape:", targets.shape)

# %%
logits_flat = logits.flatten(0, 1)
targets_flat = targets.flatten()

print("Flattened logits:", logits_flat.shape)
print("Flattened targets:", targets_flat.shape)

# %%
loss = torch.nn.functional.cross_entropy(logits_flat, targets_flat)
print(loss)

# %%
perplexity = torch.exp(loss)
print(perplexity)

# %% [markdown]
# ### 5.1.3 Calculating the training and validation set losses

# %%
text_data = read_data_text("the-verdict.txt")

# %%
# First 99 characters
print(text_data[:99])

# %%
# Last 99 characters
print(text_data[-99:])

# %%
total_characters = len(text_data)
total_tokens = len(tokenizer.encode(text_data))

print("Characters:", total_characters)
print("Tokens:", total_tokens)

# %%
# Train/validation ratio
train_ratio = 0.90
split_idx = int(train_ratio * len(text_data))
train_data = text_data[:split_idx]
val_data = text_data[split_idx:]


torch.manual_seed(123)

train_loader = create_dataloader_v1(
    train_data,
    batch_size=2,
    max_length=GPT_CONFIG_124M["context_length"],
    stride=GPT_CONFIG_124M["context_length"],
    drop_last=True,
    shuffle=True,
    num_workers=0
)

val_loader = create_dataloader_v1(
    val_data,
    batch_size=2,
    max_length=GPT_CONFIG_124M["context_length"],
    stride=GPT_CONFIG_124M["context_length"],
    drop_last=False,
    shuffle=False,
    num_workers=0
)

# %%
print("Train loader:")
for x, y in train_loader:
    print(x.shape, y.shape)

print("\nValidation loader:")
for x, y in val_loader:
    print(x.shape, y.shape)

# %%
train_tokens = 0
for input_batch, target_batch in train_loader:
    train_tokens += input_batch.numel()

val_tokens = 0
for input_batch, target_batch in val_loader:
    val_tokens += input_batch.numel()

print("Training tokens:", train_tokens)
print("Validation tokens:", val_tokens)
print("All tokens:", train_tokens + val_tokens)

# %%
device = pick_device(ARGS.device)  # the book: cuda if available, else cpu
model.to(device)  # no assignment model = model.to(device) necessary for nn.Module classes

torch.manual_seed(123)  # For reproducibility due to the shuffling in the data loader

with torch.no_grad():  # Disable gradient tracking for efficiency because we are not training, yet
    train_loss = calc_loss_loader(train_loader, model, device)
    val_loss = calc_loss_loader(val_loader, model, device)

print("Training loss:", train_loss)
print("Validation loss:", val_loss)

# %% [markdown]
# ## 5.2 Training an LLM (listing 5.3: `train_model_simple` in `ch05_pretraining/book_loop.py`)

# %%
start_time = time.time()

torch.manual_seed(123)
model = GPTModel(GPT_CONFIG_124M, impl="book")
model.to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)

num_epochs = ARGS.epochs
train_losses, val_losses, tokens_seen = train_model_simple(
    model, train_loader, val_loader, optimizer, device,
    num_epochs=num_epochs, eval_freq=5, eval_iter=5,
    start_context="Every effort moves you", tokenizer=tokenizer
)

end_time = time.time()
execution_time_minutes = (end_time - start_time) / 60
print(f"Training completed in {execution_time_minutes:.2f} minutes.")

# %%
epochs_tensor = torch.linspace(0, num_epochs, len(train_losses))
fig = plot_losses(epochs_tensor, tokens_seen, train_losses, val_losses)
loss_figure = save_figure(fig, "ch05_loss.png", ARGS.image_dir)
print("Saved figure:", loss_figure)

# %% [markdown]
# ## 5.3 Decoding strategies to control randomness

# %%
model.to("cpu")
model.eval()

tokenizer = gpt2_tokenizer()

token_ids = generate_text_simple(
    model=model,
    idx=text_to_token_ids("Every effort moves you", tokenizer),
    max_new_tokens=25,
    context_size=GPT_CONFIG_124M["context_length"]
)

print("Output text:\n", token_ids_to_text(token_ids, tokenizer))

# %% [markdown]
# ### 5.3.1 Temperature scaling

# %%
vocab = {
    "closer": 0,
    "every": 1,
    "effort": 2,
    "forward": 3,
    "inches": 4,
    "moves": 5,
    "pizza": 6,
    "toward": 7,
    "you": 8,
}

inverse_vocab = {v: k for k, v in vocab.items()}

# Suppose input is "every effort moves you", and the LLM
# returns the following logits for the next token:
next_token_logits = torch.tensor(
    [4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79]
)

probas = torch.softmax(next_token_logits, dim=0)
next_token_id = torch.argmax(probas).item()

# The next generated token is then as follows:
print(inverse_vocab[next_token_id])

# %%
torch.manual_seed(123)
next_token_id = torch.multinomial(probas, num_samples=1).item()
print(inverse_vocab[next_token_id])

# %%
sampled_counts = print_sampled_tokens(probas, inverse_vocab)

# %%
# Temperature values
temperatures = [1, 0.1, 5]  # Original, higher confidence, and lower confidence

# Calculate scaled probabilities
scaled_probas = [softmax_with_temperature(next_token_logits, T) for T in temperatures]

# %%
# Plotting
x = torch.arange(len(vocab))
bar_width = 0.15

fig, ax = plt.subplots(figsize=(5, 3))
for i, T in enumerate(temperatures):
    rects = ax.bar(x + i * bar_width, scaled_probas[i], bar_width, label=f'Temperature = {T}')

ax.set_ylabel('Probability')
ax.set_xticks(x)
ax.set_xticklabels(vocab.keys(), rotation=90)
ax.legend()

plt.tight_layout()
temperature_figure = save_figure(fig, "ch05_temperature.png", ARGS.image_dir)
print("Saved figure:", temperature_figure)

# %%
for T, scaled in zip(temperatures[1:], scaled_probas[1:]):
    print(f"\nTemperature = {T}:")
    print_sampled_tokens(scaled, inverse_vocab)

# %% [markdown]
# ### 5.3.2 Top-k sampling

# %%
top_k = 3
top_logits, top_pos = torch.topk(next_token_logits, top_k)

print("Top logits:", top_logits)
print("Top positions:", top_pos)

# %%
new_logits = torch.where(
    condition=next_token_logits < top_logits[-1],
    input=torch.tensor(float("-inf")),
    other=next_token_logits
)

print(new_logits)

# %%
topk_probas = torch.softmax(new_logits, dim=0)
print(topk_probas)

# %% [markdown]
# ### 5.3.3 Modifying the text generation function (listing 5.4: `generate` in `sampling.py`)

# %%
torch.manual_seed(123)

token_ids = generate(
    model=model,
    idx=text_to_token_ids("Every effort moves you", tokenizer),
    max_new_tokens=15,
    context_size=GPT_CONFIG_124M["context_length"],
    top_k=25,
    temperature=1.4
)

print("Output text:\n", token_ids_to_text(token_ids, tokenizer))

# %% [markdown]
# ## 5.4 Loading and saving model weights in PyTorch
#
# The book's `torch.save(model.state_dict(), "model.pth")`, and then the resumable
# checkpoint of this project (atomic write, `weights_only=True` load).

# %%
out_dir = Path(ARGS.out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
torch.save(model.state_dict(), out_dir / "model.pth")

# %%
model = GPTModel(GPT_CONFIG_124M, impl="book")
model.load_state_dict(torch.load(out_dir / "model.pth", map_location=device, weights_only=True))
model.eval();  # noqa: E703

# %%
checkpoint_path = save_checkpoint(out_dir / "model_and_optimizer.pth", model, optimizer,
                                  step=len(train_loader) * num_epochs, epoch=num_epochs)

# %%
model = GPTModel(GPT_CONFIG_124M, impl="book")
optimizer = torch.optim.AdamW(model.parameters(), lr=0.0005, weight_decay=0.1)
checkpoint = load_checkpoint(checkpoint_path, model, optimizer, map_location=device)
model.train();  # noqa: E703
print("Loaded checkpoint:", checkpoint_path.name, "step", checkpoint["step"], "epoch", checkpoint["epoch"])

# %% [markdown]
# ## 5.5 Loading pretrained weights from OpenAI
#
# The book downloads OpenAI's TensorFlow checkpoint. This project reads Hugging Face's
# `model.safetensors` for GPT-2 instead (no TensorFlow). Place it at
# `data/gpt2-small-124M.safetensors` (or `$LLMS_DATA_DIR/...`, or pass `--gpt2-weights`).

# %%
from ch05_pretraining.gpt2_weights import DOWNLOAD_HINT, load_gpt2_safetensors  # noqa: E402

gpt2_path = ARGS.gpt2_weights or find_local_data_file("gpt2-small-124M.safetensors")
if gpt2_path is None:
    print(f"GPT-2 weights not found, skipping 5.5: {DOWNLOAD_HINT} "
          "and save it as data/gpt2-small-124M.safetensors")
else:
    gpt = load_gpt2_safetensors(gpt2_path, impl="book", device=device)
    torch.manual_seed(123)
    token_ids = generate(
        model=gpt,
        idx=text_to_token_ids("Every effort moves you", tokenizer).to(device),
        max_new_tokens=25,
        context_size=gpt.context_length,  # 1024, read from the weights
        top_k=50,
        temperature=1.5
    )
    print("Output text:\n", token_ids_to_text(token_ids, tokenizer))
