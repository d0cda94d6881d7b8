"""The exercises of chapter 5 with runnable solutions: ``python -m ch05_pretraining.exercises [--only 5.1]``.

Each solution uses the chapter's own code. 5.2-5.4 use the model that ``python -m ch05_pretraining``
trains and saves (``checkpoints/model_and_optimizer.pth``, or ``--checkpoint``); if it is missing, it
is trained for one epoch first (about 1.5 minutes on a laptop CPU) and the run says so. 5.5 and 5.6
need GPT-2's published weights (``data/gpt2-small-124M.safetensors``, and for 5.6
``data/gpt2-medium-355M.safetensors``, ``data/gpt2-large-774M.safetensors``,
``data/gpt2-xl-1558M.safetensors``); without them each prints one line saying which file to place
where and the run goes on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ch02_text.chapter_runner import run_exercises
from ch02_text.data_files import find_local_data_file, read_data_text
from ch02_text.safe_files import check_writable

from .book_loop import train_model_simple
from .checkpoint import checkpoint_impl, load_checkpoint, read_checkpoint, save_checkpoint
from .gpt2_weights import DOWNLOAD_HINT, load_gpt2_safetensors
from .loss import calc_loss_loader
from .previous_chapters import GPT_CONFIG_124M, GPTModel, create_dataloader_v1, gpt2_tokenizer
from .sampling import generate, print_sampled_tokens, softmax_with_temperature
from .tokens import text_to_token_ids, token_ids_to_text

# Section 5.3.1's toy vocabulary and next-token logits.
VOCAB = {"closer": 0, "every": 1, "effort": 2, "forward": 3, "inches": 4, "moves": 5, "pizza": 6, "toward": 7,
         "you": 8}
NEXT_TOKEN_LOGITS = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
GPT2_FILES = {"gpt2-small (124M)": "gpt2-small-124M.safetensors", "gpt2-medium (355M)": "gpt2-medium-355M.safetensors",
              "gpt2-large (774M)": "gpt2-large-774M.safetensors", "gpt2-xl (1558M)": "gpt2-xl-1558M.safetensors"}


def add_arguments(parser):
    parser.add_argument("--checkpoint", default="checkpoints/model_and_optimizer.pth",
                        help="the chapter's trained model and optimizer (written by python -m ch05_pretraining)")


def verdict_loaders(context_length, batch_size=2):
    """The chapter's loaders (section 5.1.3): the-verdict split 90/10 into windows of ``context_length``."""
    text_data = read_data_text("the-verdict.txt")
    split_idx = int(0.90 * len(text_data))
    torch.manual_seed(123)
    loaders = [create_dataloader_v1(part, batch_size=batch_size, max_length=context_length, stride=context_length,
                                    drop_last=train, shuffle=train, num_workers=0)
               for part, train in ((text_data[:split_idx], True), (text_data[split_idx:], False))]
    return tuple(loaders)


def chapter_model(args):
    """(model, optimizer) of the chapter's run, from ``--checkpoint``; trained for one epoch if missing."""
    path = Path(args.checkpoint)
    check_writable(path, "--checkpoint")  # a folder, or a place that cannot be written: now, not after an epoch
    if path.is_file():
        ckpt = read_checkpoint(path)
        model = GPTModel(ckpt["config"], impl=checkpoint_impl(ckpt))  # the optimizer state's own layout
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
        load_checkpoint(path, model, optimizer)
        if ckpt.get("epoch") not in (None, 10):
            print(f"{path} holds a model trained for {ckpt['epoch']} epoch(s), not the book's 10: the values below "
                  "differ from the published ones (python -m ch05_pretraining writes the 10-epoch one)")
        return model, optimizer
    print(f"{path} not found (python -m ch05_pretraining writes it after 10 epochs): "
          "training the chapter's model for 1 epoch first")
    cfg = {**GPT_CONFIG_124M, "context_length": 256}
    train_loader, val_loader = verdict_loaders(cfg["context_length"])
    torch.manual_seed(123)  # the chapter's order: loaders, then the model, then training draws the shuffles
    model = GPTModel(cfg, impl="book")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    train_model_simple(model, train_loader, val_loader, optimizer, "cpu", num_epochs=1, eval_freq=5, eval_iter=5,
                       start_context="Every effort moves you", tokenizer=gpt2_tokenizer())
    save_checkpoint(path, model, optimizer, step=len(train_loader), epoch=1)
    return model, optimizer


def exercise_5_1(args):
    """Printing the sampling frequencies of the word "pizza" at each temperature"""
    inverse_vocab = {v: k for k, v in VOCAB.items()}
    pizza = {}
    for temperature in (1, 0.1, 5):
        print(f"\nTemperature = {temperature}:")
        counts = print_sampled_tokens(softmax_with_temperature(NEXT_TOKEN_LOGITS, temperature), inverse_vocab)
        pizza[temperature] = int(counts[VOCAB["pizza"]])
    print("\n" + ", ".join(f"temperature {t}: {n} x pizza ({n / 10:.1f}%)" for t, n in pizza.items()))
    exact = softmax_with_temperature(NEXT_TOKEN_LOGITS, 5)[VOCAB["pizza"]].item()
    print(f"exact probability of 'pizza' at temperature 5: {exact:.4f} (sampled: {pizza[5] / 1000:.3f})")
    return pizza


def exercise_5_2(args):
    """Playing with temperature and top-k settings"""
    model, _ = chapter_model(args)
    model.eval()
    tokenizer, texts = gpt2_tokenizer(), {}
    for label, temperature, top_k in (("focused (low temperature, small top-k)", 0.5, 5),
                                      ("creative (high temperature, large top-k)", 1.5, 50)):
        torch.manual_seed(123)
        ids = generate(model, text_to_token_ids("Every effort moves you", tokenizer), max_new_tokens=15,
                       context_size=model.context_length, top_k=top_k, temperature=temperature)
        texts[label] = token_ids_to_text(ids, tokenizer)
        print(f"{label}, temperature {temperature}, top_k {top_k}:\n {texts[label]}")
    return texts


def exercise_5_3(args):
    """Deterministic behavior in the decoding functions"""
    model, _ = chapter_model(args)
    model.eval()
    tokenizer = gpt2_tokenizer()
    idx = text_to_token_ids("Every effort moves you", tokenizer)
    greedy = [token_ids_to_text(generate(model, idx, 15, model.context_length, temperature=0.0, top_k=None),
                                tokenizer) for _ in range(2)]
    print("temperature 0 (greedy, top_k None), twice:", "identical" if greedy[0] == greedy[1] else "different")
    print(" ", greedy[0])
    seeded = []
    for _ in range(2):
        torch.manual_seed(123)
        seeded.append(token_ids_to_text(generate(model, idx, 15, model.context_length, temperature=1.4, top_k=25),
                                        tokenizer))
    print("temperature 1.4, top_k 25, torch.manual_seed(123) before each:",
          "identical" if seeded[0] == seeded[1] else "different")
    print(" ", seeded[0])
    return greedy, seeded


def exercise_5_4(args):
    """Continued pretraining"""
    model, optimizer = chapter_model(args)
    model.train()
    train_loader, val_loader = verdict_loaders(model.context_length)
    train_losses, val_losses, _ = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=1, eval_freq=5, eval_iter=5,
        start_context="Every effort moves you", tokenizer=gpt2_tokenizer())
    return train_losses, val_losses


def gpt2_file(name):
    """A GPT-2 weights file from data/ or $LLMS_DATA_DIR, or None after one line saying where to place it."""
    path = find_local_data_file(GPT2_FILES[name])
    if path is None:
        print(f"{name}: weights not found, skipping it: {DOWNLOAD_HINT} and save it as data/{GPT2_FILES[name]}")
    return path


def exercise_5_5(args):
    """Training and validation set losses of the pretrained model"""
    path = gpt2_file("gpt2-small (124M)")
    if path is None:
        return None
    model = load_gpt2_safetensors(path, impl="book")
    train_loader, val_loader = verdict_loaders(256)
    torch.manual_seed(123)
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, "cpu")
        val_loss = calc_loss_loader(val_loader, model, "cpu")
    print("Training loss:", train_loss)
    print("Validation loss:", val_loss)
    return train_loss, val_loss


def exercise_5_6(args):
    """Trying larger pretrained models"""
    texts = {}
    for name in list(GPT2_FILES)[1:]:
        path = gpt2_file(name)
        if path is None:
            continue
        model = load_gpt2_safetensors(path)
        torch.manual_seed(123)
        ids = generate(model, text_to_token_ids("Every effort moves you", gpt2_tokenizer()), max_new_tokens=25,
                       context_size=model.context_length, top_k=50, temperature=1.5)
        texts[name] = token_ids_to_text(ids, gpt2_tokenizer())
        print(f"{name}:\n {texts[name]}")
    return texts


EXERCISES = [("5.1", exercise_5_1), ("5.2", exercise_5_2), ("5.3", exercise_5_3), ("5.4", exercise_5_4),
             ("5.5", exercise_5_5), ("5.6", exercise_5_6)]


def main(argv=None):
    return run_exercises("ch05_pretraining", EXERCISES, argv, add_arguments)


if __name__ == "__main__":
    main()
