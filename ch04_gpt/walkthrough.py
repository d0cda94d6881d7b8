# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Chapter 4: Implementing a GPT model from scratch to generate text
#
# The chapter's listings in the book's order, printing what the book prints.
# Run with `python -m ch04_gpt`; the GELU/ReLU figure goes to `image/`.
#
# The models printed here use the book's own classes (`impl="book"`): in training
# mode dropout draws random numbers, and the book's attention class draws them the
# book's way. The default (`impl="fast"`) gives the same logits in eval mode.

# %%
import torch
import torch.nn as nn

from ch04_gpt.config import GPT_CONFIG_124M, MODEL_PRESETS, estimate, model_config
from ch04_gpt.generate import generate_text_simple
from ch04_gpt.layers import GELU, ExampleDeepNeuralNetwork, FeedForward, LayerNorm, print_gradients
from ch04_gpt.model import DummyGPTModel, GPTModel, TransformerBlock
from ch02_text.figures import save_figure
from ch04_gpt.previous_chapters import gpt2_tokenizer

ARGS = globals().get("ARGS")

# %% [markdown]
# ## 4.1 Coding an LLM architecture

# %%
print(GPT_CONFIG_124M)

# %%
tokenizer = gpt2_tokenizer()  # = tiktoken.get_encoding("gpt2"), built offline

batch = []

txt1 = "Every effort moves you"
txt2 = "Every day holds a"

batch.append(torch.tensor(tokenizer.encode(txt1)))
batch.append(torch.tensor(tokenizer.encode(txt2)))
batch = torch.stack(batch, dim=0)
print(batch)

# %%
torch.manual_seed(123)
model = DummyGPTModel(GPT_CONFIG_124M)

logits = model(batch)
print("Output shape:", logits.shape)
print(logits)

# %% [markdown]
# ## 4.2 Normalizing activations with layer normalization

# %%
torch.manual_seed(123)

# create 2 training examples with 5 dimensions (features) each
batch_example = torch.randn(2, 5)

layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
out = layer(batch_example)
print(out)

# %%
mean = out.mean(dim=-1, keepdim=True)
var = out.var(dim=-1, keepdim=True)

print("Mean:\n", mean)
print("Variance:\n", var)

# %%
out_norm = (out - mean) / torch.sqrt(var)
print("Normalized layer outputs:\n", out_norm)

mean = out_norm.mean(dim=-1, keepdim=True)
var = out_norm.var(dim=-1, keepdim=True)
print("Mean:\n", mean)
print("Variance:\n", var)

# %%
torch.set_printoptions(sci_mode=False)
print("Mean:\n", mean)
print("Variance:\n", var)

# %% [markdown]
# Listing 4.2: `LayerNorm` (in `ch04_gpt/layers.py`).

# %%
ln = LayerNorm(emb_dim=5)
out_ln = ln(batch_example)

# %%
mean = out_ln.mean(dim=-1, keepdim=True)
var = out_ln.var(dim=-1, unbiased=False, keepdim=True)

print("Mean:\n", mean)
print("Variance:\n", var)

# %% [markdown]
# ## 4.3 Implementing a feed forward network with GELU activations (listings 4.3, 4.4)

# %%
import matplotlib.pyplot as plt  # noqa: E402

gelu, relu = GELU(), nn.ReLU()

# Some sample data
x = torch.linspace(-3, 3, 100)
y_gelu, y_relu = gelu(x), relu(x)

fig = plt.figure(figsize=(8, 3))
for i, (y, label) in enumerate(zip([y_gelu, y_relu], ["GELU", "ReLU"]), 1):
    plt.subplot(1, 2, i)
    plt.plot(x, y)
    plt.title(f"{label} activation function")
    plt.xlabel("x")
    plt.ylabel(f"{label}(x)")
    plt.grid(True)

plt.tight_layout()
figure_path = save_figure(fig, "ch04_gelu_relu.png", getattr(ARGS, "image_dir", None))
print("Saved figure:", figure_path)

# %%
print(GPT_CONFIG_124M["emb_dim"])

# %%
ffn = FeedForward(GPT_CONFIG_124M)

# input shape: [batch_size, num_token, emb_size]
x = torch.rand(2, 3, 768)
out = ffn(x)
print(out.shape)

# %% [markdown]
# ## 4.4 Adding shortcut connections (listing 4.5)

# %%
layer_sizes = [3, 3, 3, 3, 3, 1]

sample_input = torch.tensor([[1., 0., -1.]])

torch.manual_seed(123)
model_without_shortcut = ExampleDeepNeuralNetwork(
    layer_sizes, use_shortcut=False
)
grads_without_shortcut = print_gradients(model_without_shortcut, sample_input)

# %%
torch.manual_seed(123)
model_with_shortcut = ExampleDeepNeuralNetwork(
    layer_sizes, use_shortcut=True
)
grads_with_shortcut = print_gradients(model_with_shortcut, sample_input)

# %% [markdown]
# ## 4.5 Connecting attention and linear layers in a transformer block (listing 4.6)

# %%
torch.manual_seed(123)

x = torch.rand(2, 4, 768)  # Shape: [batch_size, num_tokens, emb_dim]
block = TransformerBlock({**GPT_CONFIG_124M, "impl": "book"})
output = block(x)

print("Input shape:", x.shape)
print("Output shape:", output.shape)

# %% [markdown]
# ## 4.6 Coding the GPT model (listing 4.7)

# %%
torch.manual_seed(123)
model = GPTModel(GPT_CONFIG_124M, impl="book")

out = model(batch)
print("Input batch:\n", batch)
print("\nOutput shape:", out.shape)
print(out)

# %%
total_params = sum(p.numel() for p in model.parameters())
print(f"Total number of parameters: {total_params:,}")

# %%
print("Token embedding layer shape:", model.tok_emb.weight.shape)
print("Output layer shape:", model.out_head.weight.shape)

# %%
total_params_gpt2 = total_params - sum(p.numel() for p in model.out_head.parameters())
print(f"Number of trainable parameters considering weight tying: {total_params_gpt2:,}")

# %%
# Calculate the total size in bytes (assuming float32, 4 bytes per parameter)
total_size_bytes = total_params * 4

# Convert to megabytes
total_size_mb = total_size_bytes / (1024 * 1024)

print(f"Total size of the model: {total_size_mb:.2f} MB")

# %% [markdown]
# ## 4.7 Generating text (listing 4.8)

# %%
start_context = "Hello, I am"

encoded = tokenizer.encode(start_context)
print("encoded:", encoded)

encoded_tensor = torch.tensor(encoded).unsqueeze(0)
print("encoded_tensor.shape:", encoded_tensor.shape)

# %%
model.eval()  # disable dropout

out = generate_text_simple(
    model=model,
    idx=encoded_tensor,
    max_new_tokens=6,
    context_size=GPT_CONFIG_124M["context_length"]
)

print("Output:", out)
print("Output length:", len(out[0]))

# %%
decoded_text = tokenizer.decode(out.squeeze(0).tolist())
print(decoded_text)

# %% [markdown]
# ## Beyond the book: size and compute of each GPT-2 preset
#
# Parameters (untied output head, as the chapter counts them), memory for the weights
# in fp32/bf16, AdamW training memory (weights + grads + 2 moments, fp32) and training
# FLOPs per token (6·N + 6·n_layers·context·emb_dim).

# %%
print(f"{'preset':12s} {'params':>15s} {'fp32':>10s} {'bf16':>10s} {'AdamW train':>12s} {'train FLOPs/token':>18s}")
preset_estimates = {}
for name in MODEL_PRESETS:
    est = preset_estimates[name] = estimate(model_config(name))
    gib = 1024 ** 3
    print(f"{name:12s} {est['params']:>15,} {est['fp32_bytes'] / gib:>8.2f}GB {est['bf16_bytes'] / gib:>8.2f}GB "
          f"{est['adamw_train_bytes_fp32'] / gib:>10.2f}GB {est['train_flops_per_token']:>18.3e}")

# %%
torch.set_printoptions(profile="default", sci_mode=None)  # undo 4.2's sci_mode=False for later code
