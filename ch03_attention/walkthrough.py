# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Chapter 3: Coding attention mechanisms
#
# The chapter's listings in the book's order, printing what the book prints.
# Run with `python -m ch03_attention`; the heatmap figure goes to `image/`.

# %%
import torch

from ch03_attention.attention import (
    EXAMPLE_INPUTS, EXAMPLE_WORDS, CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1,
    SelfAttention_v2, softmax_naive,
)

ARGS = globals().get("ARGS")

# %% [markdown]
# ## 3.3.1 A simple self-attention mechanism without trainable weights

# %%
# The book's three-dimensional embeddings of "Your journey starts with one step" (x^1 ... x^6),
# defined once in ch03_attention/attention.py (the exercises use them too):
#   [[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
#    [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]]
inputs = EXAMPLE_INPUTS.clone()
words = EXAMPLE_WORDS

# %%
query = inputs[1]  # 2nd input token is the query

attn_scores_2 = torch.empty(inputs.shape[0])
for i, x_i in enumerate(inputs):
    attn_scores_2[i] = torch.dot(x_i, query)  # dot product (transpose not necessary here since they are 1-dim vectors)

print(attn_scores_2)

# %%
res = 0.

for idx, element in enumerate(inputs[0]):
    res += inputs[0][idx] * query[idx]

print(res)
print(torch.dot(inputs[0], query))

# %%
attn_weights_2_tmp = attn_scores_2 / attn_scores_2.sum()

print("Attention weights:", attn_weights_2_tmp)
print("Sum:", attn_weights_2_tmp.sum())

# %%
attn_weights_2_naive = softmax_naive(attn_scores_2)

print("Attention weights:", attn_weights_2_naive)
print("Sum:", attn_weights_2_naive.sum())

# %%
attn_weights_2 = torch.softmax(attn_scores_2, dim=0)

print("Attention weights:", attn_weights_2)
print("Sum:", attn_weights_2.sum())

# %%
query = inputs[1]  # 2nd input token is the query

context_vec_2 = torch.zeros(query.shape)
for i, x_i in enumerate(inputs):
    context_vec_2 += attn_weights_2[i] * x_i

print(context_vec_2)

# %% [markdown]
# ## 3.3.2 Computing attention weights for all input tokens

# %%
attn_scores = torch.empty(6, 6)

for i, x_i in enumerate(inputs):
    for j, x_j in enumerate(inputs):
        attn_scores[i, j] = torch.dot(x_i, x_j)

print(attn_scores)

# %%
attn_scores = inputs @ inputs.T
print(attn_scores)

# %%
attn_weights = torch.softmax(attn_scores, dim=-1)
print(attn_weights)

# %%
row_2_sum = sum([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])
print("Row 2 sum:", row_2_sum)

print("All row sums:", attn_weights.sum(dim=-1))

# %%
all_context_vecs = attn_weights @ inputs
print(all_context_vecs)

# %%
print("Previous 2nd context vector:", context_vec_2)

# %%
simple_attn_weights = attn_weights  # kept for the figure at the end

# %% [markdown]
# ## 3.4 Implementing self-attention with trainable weights

# %%
x_2 = inputs[1]  # second input element
d_in = inputs.shape[1]  # the input embedding size, d=3
d_out = 2  # the output embedding size, d=2

# %%
torch.manual_seed(123)

W_query = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
W_key = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
W_value = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)

# %%
query_2 = x_2 @ W_query  # _2 because it's with respect to the 2nd input element
key_2 = x_2 @ W_key
value_2 = x_2 @ W_value

print(query_2)

# %%
keys = inputs @ W_key
values = inputs @ W_value

print("keys.shape:", keys.shape)
print("values.shape:", values.shape)

# %%
keys_2 = keys[1]  # Python starts index at 0
attn_score_22 = query_2.dot(keys_2)
print(attn_score_22)

# %%
attn_scores_2 = query_2 @ keys.T  # All attention scores for given query
print(attn_scores_2)

# %%
d_k = keys.shape[1]
attn_weights_2 = torch.softmax(attn_scores_2 / d_k**0.5, dim=-1)
print(attn_weights_2)

# %%
context_vec_2 = attn_weights_2 @ values
print(context_vec_2)

# %% [markdown]
# Listing 3.1: `SelfAttention_v1` (in `ch03_attention/attention.py`).

# %%
torch.manual_seed(123)
sa_v1 = SelfAttention_v1(d_in, d_out)
print(sa_v1(inputs))

# %% [markdown]
# Listing 3.2: `SelfAttention_v2`.

# %%
torch.manual_seed(789)
sa_v2 = SelfAttention_v2(d_in, d_out)
print(sa_v2(inputs))

# %% [markdown]
# ## 3.5 Hiding future words with causal attention

# %%
# Reuse the query and key weight matrices of the SelfAttention_v2 object from the previous section
queries = sa_v2.W_query(inputs)
keys = sa_v2.W_key(inputs)
attn_scores = queries @ keys.T

attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
print(attn_weights)

# %%
context_length = attn_scores.shape[0]
mask_simple = torch.tril(torch.ones(context_length, context_length))
print(mask_simple)

# %%
masked_simple = attn_weights * mask_simple
print(masked_simple)

# %%
row_sums = masked_simple.sum(dim=-1, keepdim=True)
masked_simple_norm = masked_simple / row_sums
print(masked_simple_norm)

# %%
mask = torch.triu(torch.ones(context_length, context_length), diagonal=1)
masked = attn_scores.masked_fill(mask.bool(), -torch.inf)
print(masked)

# %%
attn_weights = torch.softmax(masked / keys.shape[-1]**0.5, dim=-1)
print(attn_weights)

# %%
causal_attn_weights = attn_weights.detach()  # kept for the figure at the end

# %% [markdown]
# ## 3.5.2 Masking additional attention weights with dropout

# %%
torch.manual_seed(123)
dropout = torch.nn.Dropout(0.5)  # dropout rate of 50%
example = torch.ones(6, 6)  # create a matrix of ones

print(dropout(example))

# %%
torch.manual_seed(123)
print(dropout(attn_weights))

# %% [markdown]
# ## 3.5.3 Implementing a compact causal self-attention class (listing 3.3)

# %%
batch = torch.stack((inputs, inputs), dim=0)
print(batch.shape)  # 2 inputs with 6 tokens each, and each token has embedding dimension 3

# %%
torch.manual_seed(123)

context_length = batch.shape[1]
ca = CausalAttention(d_in, d_out, context_length, 0.0)

context_vecs = ca(batch)

print(context_vecs)
print("context_vecs.shape:", context_vecs.shape)

# %% [markdown]
# ## 3.6.1 Stacking multiple single-head attention layers (listing 3.4)

# %%
torch.manual_seed(123)

context_length = batch.shape[1]  # This is the number of tokens
d_in, d_out = 3, 2
mha = MultiHeadAttentionWrapper(
    d_in, d_out, context_length, 0.0, num_heads=2
)

context_vecs = mha(batch)

print(context_vecs)
print("context_vecs.shape:", context_vecs.shape)

# %% [markdown]
# ## 3.6.2 Implementing multi-head attention with weight splits (listing 3.5)

# %%
torch.manual_seed(123)

batch_size, context_length, d_in = batch.shape
d_out = 2
mha = MultiHeadAttention(d_in, d_out, context_length, 0.0, num_heads=2)

context_vecs = mha(batch)

print(context_vecs)
print("context_vecs.shape:", context_vecs.shape)

# %%
# (b, num_heads, num_tokens, head_dim) = (1, 2, 3, 4)
a = torch.tensor([[[[0.2745, 0.6584, 0.2775, 0.8573],
                    [0.8993, 0.0390, 0.9268, 0.7388],
                    [0.7179, 0.7058, 0.9156, 0.4340]],

                   [[0.0772, 0.3565, 0.1479, 0.5331],
                    [0.4066, 0.2318, 0.4545, 0.9737],
                    [0.4606, 0.5159, 0.4220, 0.5786]]]])

print(a @ a.transpose(2, 3))

# %%
first_head = a[0, 0, :, :]
first_res = first_head @ first_head.T
print("First head:\n", first_res)

second_head = a[0, 1, :, :]
second_res = second_head @ second_head.T
print("\nSecond head:\n", second_res)

# %% [markdown]
# ## Figure: attention weights of the six example words
#
# Saved as `image/ch03_attention_weights.png`: the simplified (unmasked) attention
# weights of section 3.3.2 next to the causal weights of section 3.5.1.

# %%
import matplotlib.pyplot as plt  # noqa: E402

from ch02_text.figures import save_figure  # noqa: E402

fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
panels = [(simple_attn_weights, "Unmasked attention weights (3.3.2)"),
          (causal_attn_weights, "Causal attention weights (3.5.1)")]
for ax, (weights, title) in zip(axes, panels):
    im = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(words)), words, rotation=45, ha="right")
    ax.set_yticks(range(len(words)), words)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(title)
    for i in range(len(words)):
        for j in range(len(words)):
            ax.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center",
                    color="white" if weights[i, j] < 0.5 else "black", fontsize=8)
fig.colorbar(im, ax=axes, shrink=0.8)
figure_path = save_figure(fig, "ch03_attention_weights.png", getattr(ARGS, "image_dir", None))
print("Saved figure:", figure_path)
