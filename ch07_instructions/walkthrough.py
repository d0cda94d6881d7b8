# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Chapter 7: Fine-tuning to follow instructions
#
# The chapter's listings in the book's order, printing what the book prints: GPT-2 medium learns to answer
# instructions. Run with `python -m ch07_instructions` (2 epochs of GPT-2 medium: about two minutes on a GPU,
# far longer on a CPU); `--epochs 1 --max-steps 5 --max-test 3` for a quick look, `--tiny` for the whole chapter
# in seconds on a tiny fresh GPT. The figure goes to `image/`, the answers and the model to `checkpoints/`.
#
# The book's values need GPT-2 medium's weights: place `model.safetensors` of
# huggingface.co/openai-community/gpt2-medium as `data/gpt2-medium-355M.safetensors`. Without them every step
# runs all the same, from chapter 5's model (`checkpoints/model.pth`) or a fresh GPT-124M, and the run says which.

# %%
import argparse
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ch02_text.figures import save_figure
from ch02_text.hardware import pick_device
from ch07_instructions.collate import (
    InstructionDataset, custom_collate_draft_1, custom_collate_draft_2, custom_collate_fn,
)
from ch07_instructions.instruction_data import format_input, format_response, load_instruction_data, split_data
from ch07_instructions.judge import (
    JUDGE_MODEL, OLLAMA_URL, START_HINT, generate_model_scores, judge_errors, query_model, score_prompt, server_answers,
)
from ch07_instructions.pretrained import choose_starting_model
from ch07_instructions.previous_chapters import (
    TINY_SIZES, EpochSteps, calc_loss_loader, generate, gpt2_tokenizer, plot_losses, text_to_token_ids,
    token_ids_to_text, train_model_simple,
)
from ch07_instructions.responses import (
    RESPONSES_FILE, add_model_responses, extract_response, generate_response, print_response, sft_file_name,
    write_responses,
)

ARGS = globals().get("ARGS") or argparse.Namespace(
    epochs=2, max_steps=None, max_test=None, device="auto", out_dir="checkpoints", image_dir=None,
    gpt2_weights=None, tiny=False, ollama_url=OLLAMA_URL, judge_model=JUDGE_MODEL)

# %% [markdown]
# ## 7.1 Introduction to instruction fine-tuning
#
# No code in this section: a pretrained LLM continues text; fine-tuning on instruction-response pairs teaches
# it to answer an instruction instead.

# %% [markdown]
# ## 7.2 Preparing a dataset for supervised instruction fine-tuning
#
# Listing 7.1: Downloading the dataset (`load_instruction_data` in `instruction_data.py`)
#
# `instruction-data.json` is found like every data file (`data/`, `$LLMS_DATA_DIR`, else downloaded from the
# book's repository into `data/`).

# %%
data = load_instruction_data()
print("Number of entries:", len(data))

# %%
print("Example entry:\n", data[50])

# %%
print("Another example entry:\n", data[999])

# %% [markdown]
# Listing 7.2: Implementing the prompt formatting function (`format_input` in `instruction_data.py`)
#
# The Alpaca prompt style; the desired response follows it as `format_response` writes it
# (`f"\n\n### Response:\n{entry['output']}"` in the book).

# %%
model_input = format_input(data[50])
desired_response = format_response(data[50])

print(model_input + desired_response)

# %%
model_input = format_input(data[999])
desired_response = format_response(data[999])

print(model_input + desired_response)

# %% [markdown]
# Listing 7.3: Partitioning the dataset (`split_data` in `instruction_data.py`)
#
# 85% training, 10% test, the remaining 5% validation, in the file's order.

# %%
train_data, test_data, val_data = split_data(data)

print("Training set length:", len(train_data))
print("Validation set length:", len(val_data))
print("Test set length:", len(test_data))

# %% [markdown]
# ## 7.3 Organizing data into training batches
#
# Listing 7.4: Implementing an instruction dataset class (`InstructionDataset` in `collate.py`)
#
# Each entry's prompt and response tokenized once; the padding is left to the collate function.

# %%
tokenizer = gpt2_tokenizer()  # = tiktoken.get_encoding("gpt2"), built offline
print(tokenizer.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}))

# %% [markdown]
# A first collate function (`custom_collate_draft_1`): each batch padded with `<|endoftext|>` (50256) to its own
# longest entry, on the book's three toy entries.

# %%
inputs_1 = [0, 1, 2, 3, 4]
inputs_2 = [5, 6]
inputs_3 = [7, 8, 9]

batch = (
    inputs_1,
    inputs_2,
    inputs_3
)

print(custom_collate_draft_1(batch))

# %% [markdown]
# The second draft (`custom_collate_draft_2`) adds the targets: the inputs shifted one position.

# %%
inputs, targets = custom_collate_draft_2(batch)
print(inputs)
print(targets)

# %% [markdown]
# Listing 7.5: Implementing a custom batch collate function (`custom_collate_fn` in `collate.py`)
#
# Every pad target after the first becomes -100; entries longer than `allowed_max_length` are cut.

# %%
inputs, targets = custom_collate_fn(batch)
print(inputs)
print(targets)

# %% [markdown]
# What -100 does: PyTorch's `cross_entropy` skips targets equal to its `ignore_index`, -100 by default.

# %%
logits_1 = torch.tensor(
    [[-1.0, 1.0],  # 1st training example
     [-0.5, 1.5]]  # 2nd training example
)
targets_1 = torch.tensor([0, 1])


loss_1 = torch.nn.functional.cross_entropy(logits_1, targets_1)
print(loss_1)

# %%
logits_2 = torch.tensor(
    [[-1.0, 1.0],
     [-0.5, 1.5],
     [-0.5, 1.5]]  # New 3rd training example
)
targets_2 = torch.tensor([0, 1, 1])

loss_2 = torch.nn.functional.cross_entropy(logits_2, targets_2)
print(loss_2)

# %%
targets_3 = torch.tensor([0, 1, -100])

loss_3 = torch.nn.functional.cross_entropy(logits_2, targets_3)
print(loss_3)
print("loss_1 == loss_3:", loss_1 == loss_3)

# %% [markdown]
# ## 7.4 Creating data loaders for an instruction dataset
#
# The collate function moves each batch to the device (`pick_device`: the book's cuda if available, else cpu).

# %%
device = pick_device(ARGS.device)

print("Device:", device)

# %%
customized_collate_fn = partial(
    custom_collate_fn,
    device=device,
    allowed_max_length=1024
)

# %% [markdown]
# Listing 7.6: Initializing the data loaders

# %%
num_workers = 0
batch_size = 8

torch.manual_seed(123)

train_dataset = InstructionDataset(train_data, tokenizer)
train_loader = DataLoader(
    train_dataset,
    batch_size=batch_size,
    collate_fn=customized_collate_fn,
    shuffle=True,
    drop_last=True,
    num_workers=num_workers
)

# %%
val_dataset = InstructionDataset(val_data, tokenizer)
val_loader = DataLoader(
    val_dataset,
    batch_size=batch_size,
    collate_fn=customized_collate_fn,
    shuffle=False,
    drop_last=False,
    num_workers=num_workers
)

test_dataset = InstructionDataset(test_data, tokenizer)
test_loader = DataLoader(
    test_dataset,
    batch_size=batch_size,
    collate_fn=customized_collate_fn,
    shuffle=False,
    drop_last=False,
    num_workers=num_workers
)

# %%
print("Train loader:")
for inputs, targets in train_loader:
    print(inputs.shape, targets.shape)

# %%
print(inputs[0])

# %%
print(targets[0])

# %% [markdown]
# ## 7.5 Loading a pretrained LLM
#
# Listing 7.7: Loading the pretrained model (`choose_starting_model` in `pretrained.py`)
#
# The book loads OpenAI's TensorFlow checkpoint of GPT-2 medium; here its `model.safetensors`
# (`data/gpt2-medium-355M.safetensors` or `--gpt2-weights`), else chapter 5's model, else a fresh GPT-124M.

# %%
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

CHOOSE_MODEL = "gpt2-medium (355M)"

BASE_CONFIG.update(model_configs[CHOOSE_MODEL])

# %%
if ARGS.tiny:  # beyond the book: a tiny fresh GPT, for tests and quick looks (--tiny)
    BASE_CONFIG.update(TINY_SIZES)
FALLBACK_CONFIG = {**BASE_CONFIG, **model_configs["gpt2-small (124M)"]}  # without GPT-2 medium: a fresh GPT-124M

start = choose_starting_model(BASE_CONFIG, FALLBACK_CONFIG, ARGS.gpt2_weights, ARGS.out_dir, tiny=ARGS.tiny)
print("Starting from", start.description)
model = start.model
BASE_CONFIG["context_length"] = model.context_length  # 1024 for GPT-2; chapter 5's model may have less
model.eval();  # noqa: E703

# %% [markdown]
# The pretrained model's answer to the first validation instruction, before fine-tuning.

# %%
torch.manual_seed(123)

input_text = format_input(val_data[0])
print(input_text)

# %%
token_ids = generate(
    model=model,
    idx=text_to_token_ids(input_text, tokenizer),
    max_new_tokens=35,
    context_size=BASE_CONFIG["context_length"],
    eos_id=50256,
)
generated_text = token_ids_to_text(token_ids, tokenizer)

# %% [markdown]
# `generate` returns the prompt and its continuation: the response is what follows the prompt
# (`extract_response` in `responses.py`).

# %%
response_text = extract_response(generated_text, input_text)
print(response_text)

# %% [markdown]
# ## 7.6 Fine-tuning the LLM on instruction data
#
# Chapter 5's `calc_loss_loader` and `train_model_simple`, unchanged: the -100 targets are skipped by
# `cross_entropy`'s default `ignore_index`.

# %%
model.to(device)

torch.manual_seed(123)

with torch.no_grad():
    train_loss = calc_loss_loader(train_loader, model, device, num_batches=5)
    val_loss = calc_loss_loader(val_loader, model, device, num_batches=5)

print("Training loss:", train_loss)
print("Validation loss:", val_loss)

# %% [markdown]
# The book's two epochs (AdamW, lr 5e-5, weight decay 0.1), evaluating every 5 steps on 5 batches and printing
# the answer to the first validation instruction after each epoch. `--max-steps N` hands the loop a loader of
# N batches an epoch (chapter 6's `EpochSteps`): a quick look, not the book's run.

# %%
start_time = time.time()

torch.manual_seed(123)

optimizer = torch.optim.AdamW(model.parameters(), lr=0.00005, weight_decay=0.1)

num_epochs = ARGS.epochs

train_losses, val_losses, tokens_seen = train_model_simple(
    model, EpochSteps(train_loader, ARGS.max_steps), val_loader, optimizer, device,
    num_epochs=num_epochs, eval_freq=5, eval_iter=5,
    start_context=format_input(val_data[0]), tokenizer=tokenizer
)

end_time = time.time()
execution_time_minutes = (end_time - start_time) / 60
print(f"Training completed in {execution_time_minutes:.2f} minutes.")

# %%
epochs_tensor = torch.linspace(0, num_epochs, len(train_losses))
fig = plot_losses(epochs_tensor, tokens_seen, train_losses, val_losses)
loss_figure = save_figure(fig, "ch07_loss.png", ARGS.image_dir)
print("Saved figure:", loss_figure)

# %% [markdown]
# ## 7.7 Extracting and saving responses
#
# The fine-tuned model's answers to the first three test instructions, beside the dataset's
# (`generate_response` and `print_response` in `responses.py`).

# %%
torch.manual_seed(123)

answered = test_data[:ARGS.max_test]  # --max-test N: the first N test entries (None: all 110, as the book)

for entry in answered[:3]:
    response_text = generate_response(model, entry, tokenizer, device, BASE_CONFIG["context_length"])
    print_response(entry, response_text)

# %% [markdown]
# Listing 7.8: Generating test set responses (`add_model_responses` and `write_responses` in `responses.py`)
#
# Greedy, up to 256 new tokens, one entry at a time; written to `--out-dir` (the book: the current folder).

# %%
out_dir = Path(ARGS.out_dir)
add_model_responses(answered, model, tokenizer, device, BASE_CONFIG["context_length"])
responses_path = write_responses(answered, out_dir / RESPONSES_FILE)
print(f"{len(answered)} answers written to {responses_path}")

# %%
print(test_data[0])

# %% [markdown]
# Saving the model: the book's name says which GPT-2 it was; any other starting model gets a name that says
# which (`sft_file_name` in `responses.py`).

# %%
file_name = out_dir / sft_file_name(CHOOSE_MODEL, model_configs[CHOOSE_MODEL], start)
torch.save(model.state_dict(), file_name)
print(f"Model saved as {file_name}")

# Load model via
# model.load_state_dict(torch.load(file_name))

# %% [markdown]
# ## 7.8 Evaluating the fine-tuned LLM
#
# A larger LLM scores the answers: the book's Llama 3 8B, served by Ollama (`ollama serve`, then
# `ollama pull llama3`). Without a server at `--ollama-url` this section says so and is skipped.

# %%
ollama_running = server_answers(ARGS.ollama_url)
if not ollama_running:
    print(f"No Ollama server answers at {ARGS.ollama_url}: scoring skipped; to score, {START_HINT}")
else:
    print("Ollama running:", ollama_running)

# %% [markdown]
# Listing 7.9: Querying a local Ollama model (`query_model` in `judge.py`)

# %%
judge_model = ARGS.judge_model  # the book's model = "llama3" (here `model` is the fine-tuned GPT)
if ollama_running:
    with judge_errors(ARGS.ollama_url, judge_model):
        result = query_model("What do Llamas eat?", judge_model, ARGS.ollama_url)
    print(result)

# %%
if ollama_running:
    for entry in answered[:3]:
        with judge_errors(ARGS.ollama_url, judge_model):
            score = query_model(score_prompt(entry, "model_response"), judge_model, ARGS.ollama_url)
        print("\nDataset response:")
        print(">>", entry['output'])
        print("\nModel response:")
        print(">>", entry["model_response"])
        print("\nScore:")
        print(">>", score)
        print("\n-------------------------")

# %% [markdown]
# Listing 7.10: Evaluating the instruction fine-tuning LLM (`generate_model_scores` in `judge.py`)

# %%
if ollama_running:
    with judge_errors(ARGS.ollama_url, judge_model):
        scores = generate_model_scores(answered, "model_response", judge_model, ARGS.ollama_url)
    print(f"Number of scores: {len(scores)} of {len(answered)}")
    if scores:
        print(f"Average score: {sum(scores)/len(scores):.2f}\n")

# %% [markdown]
# ## 7.9 Conclusions
#
# No code in this section.
