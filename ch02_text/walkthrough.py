# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Chapter 2: Working with text data
#
# The chapter's listings in the book's order, printing what the book prints.
# Run with `python -m ch02_text`, or open this file as a notebook with jupytext.

# %%
import importlib.metadata
import re

import torch

from ch02_text.data_files import read_data_text
from ch02_text.dataloader import GPTDatasetV1, create_dataloader_v1  # noqa: F401 (book names)
from ch02_text.tokenizers import (
    SimpleTokenizerV1, SimpleTokenizerV2, UnknownTokenError, build_vocab, gpt2_tokenizer,
)

print("torch version:", importlib.metadata.version("torch"))
print("tiktoken version:", importlib.metadata.version("tiktoken"))

# %% [markdown]
# ## 2.2 Tokenizing text

# %%
raw_text = read_data_text("the-verdict.txt")

print("Total number of character:", len(raw_text))
print(raw_text[:99])

# %%
text = "Hello, world. This, is a test."
result = re.split(r'(\s)', text)

print(result)

# %%
result = re.split(r'([,.]|\s)', text)

print(result)

# %%
# Strip whitespace from each item and then filter out any empty strings.
result = [item for item in result if item.strip()]
print(result)

# %%
text = "Hello, world. Is this-- a test?"

result = re.split(r'([,.:;?_!"()\']|--|\s)', text)
result = [item.strip() for item in result if item.strip()]
print(result)

# %%
preprocessed = re.split(r'([,.:;?_!"()\']|--|\s)', raw_text)
preprocessed = [item.strip() for item in preprocessed if item.strip()]
print(preprocessed[:30])

# %%
print(len(preprocessed))

# %% [markdown]
# ## 2.3 Converting tokens into token IDs

# %%
all_words = sorted(set(preprocessed))
vocab_size = len(all_words)

print(vocab_size)

# %%
vocab = {token: integer for integer, token in enumerate(all_words)}
assert vocab == build_vocab(preprocessed)

# %%
for i, item in enumerate(vocab.items()):
    print(item)
    if i >= 50:
        break

# %% [markdown]
# Listing 2.3: `SimpleTokenizerV1` (defined in `ch02_text/tokenizers.py`).

# %%
tokenizer = SimpleTokenizerV1(vocab)

text = """"It's the last he painted, you know,"
           Mrs. Gisburn said with pardonable pride."""
ids = tokenizer.encode(text)
print(ids)

# %%
print(tokenizer.decode(ids))

# %%
print(tokenizer.decode(tokenizer.encode(text)))

# %% [markdown]
# ## 2.4 Adding special context tokens
#
# V1 cannot encode words outside its vocabulary (the book shows a `KeyError: 'Hello'`):

# %%
tokenizer = SimpleTokenizerV1(vocab)

text = "Hello, do you like tea?"
try:
    print(tokenizer.encode(text))
except UnknownTokenError as err:
    print(f"KeyError: {err.word!r}  ({err})")

# %%
all_tokens = sorted(list(set(preprocessed)))
all_tokens.extend(["<|endoftext|>", "<|unk|>"])

vocab = {token: integer for integer, token in enumerate(all_tokens)}
assert vocab == build_vocab(preprocessed, special_tokens=True)

# %%
print(len(vocab.items()))

# %%
for i, item in enumerate(list(vocab.items())[-5:]):
    print(item)

# %% [markdown]
# Listing 2.4: `SimpleTokenizerV2`.

# %%
tokenizer = SimpleTokenizerV2(vocab)

text1 = "Hello, do you like tea?"
text2 = "In the sunlit terraces of the palace."

text = " <|endoftext|> ".join((text1, text2))

print(text)

# %%
print(tokenizer.encode(text))

# %%
print(tokenizer.decode(tokenizer.encode(text)))

# %% [markdown]
# ## 2.5 BytePair encoding
#
# `gpt2_tokenizer()` is `tiktoken.get_encoding("gpt2")` built offline from GPT-2's
# `vocab.bpe` + `encoder.json` (same ids).

# %%
tokenizer = gpt2_tokenizer()

# %%
text = (
    "Hello, do you like tea? <|endoftext|> In the sunlit terraces"
    "of someunknownPlace."
)

integers = tokenizer.encode(text, allowed_special={"<|endoftext|>"})

print(integers)

# %%
strings = tokenizer.decode(integers)

print(strings)

# %% [markdown]
# ## 2.6 Data sampling with a sliding window

# %%
enc_text = tokenizer.encode(raw_text)
print(len(enc_text))

# %%
enc_sample = enc_text[50:]

# %%
context_size = 4

x = enc_sample[:context_size]
y = enc_sample[1:context_size + 1]

print(f"x: {x}")
print(f"y:      {y}")

# %%
for i in range(1, context_size + 1):
    context = enc_sample[:i]
    desired = enc_sample[i]

    print(context, "---->", desired)

# %%
for i in range(1, context_size + 1):
    context = enc_sample[:i]
    desired = enc_sample[i]

    print(tokenizer.decode(context), "---->", tokenizer.decode([desired]))

# %% [markdown]
# Listings 2.5 and 2.6: `GPTDatasetV1` and `create_dataloader_v1` (in `ch02_text/dataloader.py`).

# %%
dataloader = create_dataloader_v1(
    raw_text, batch_size=1, max_length=4, stride=1, shuffle=False
)

data_iter = iter(dataloader)
first_batch = next(data_iter)
print(first_batch)

# %%
second_batch = next(data_iter)
print(second_batch)

# %%
dataloader = create_dataloader_v1(raw_text, batch_size=8, max_length=4, stride=4, shuffle=False)

data_iter = iter(dataloader)
inputs, targets = next(data_iter)
print("Inputs:\n", inputs)
print("\nTargets:\n", targets)

# %% [markdown]
# ## 2.7 Creating token embeddings

# %%
input_ids = torch.tensor([2, 3, 5, 1])

# %%
vocab_size = 6
output_dim = 3

torch.manual_seed(123)
embedding_layer = torch.nn.Embedding(vocab_size, output_dim)

# %%
print(embedding_layer.weight)

# %%
print(embedding_layer(torch.tensor([3])))

# %%
print(embedding_layer(input_ids))

# %% [markdown]
# ## 2.8 Encoding word positions

# %%
vocab_size = 50257
output_dim = 256

token_embedding_layer = torch.nn.Embedding(vocab_size, output_dim)

# %%
max_length = 4
dataloader = create_dataloader_v1(
    raw_text, batch_size=8, max_length=max_length,
    stride=max_length, shuffle=False
)
data_iter = iter(dataloader)
inputs, targets = next(data_iter)

# %%
print("Token IDs:\n", inputs)
print("\nInputs shape:\n", inputs.shape)

# %%
token_embeddings = token_embedding_layer(inputs)
print(token_embeddings.shape)

# %%
context_length = max_length
pos_embedding_layer = torch.nn.Embedding(context_length, output_dim)

pos_embeddings = pos_embedding_layer(torch.arange(max_length))
print(pos_embeddings.shape)

# %%
input_embeddings = token_embeddings + pos_embeddings
print(input_embeddings.shape)
