"""Preference tuning with DPO, as the book's bonus notebook writes it from scratch (chapter 7's bonus material).

Unlike instruction fine-tuning (``collate.py``: one target answer per prompt): each entry has a ``chosen`` and a
``rejected`` answer, and DPO raises the policy's log-probability of the chosen answer relative to the rejected
one, measured against a frozen reference model (the fine-tuned model before this step):
``loss = -log sigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r)))``, the rewards being ``pi - ref`` of each.
``compute_logprobs`` averages over the answer's tokens as the notebook does; ``reduction="sum"`` sums them, as
trl does.

>>> import torch
>>> same = torch.tensor([-1.0, -2.0])
>>> loss, chosen, rejected = compute_dpo_loss(same, same, same, same)   # policy = reference
>>> round(loss.item(), 6) == round(math.log(2), 6), chosen.item(), rejected.item()
(True, 0.0, 0.0)
"""

from __future__ import annotations

import math  # noqa: F401 (the docstring's)

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .collate import PAD_TOKEN_ID
from .instruction_data import format_input

PREFERENCE_FILE = "instruction-data-with-preference.json"  # the bonus notebook's 1,100 entries


class PreferenceDataset(Dataset):
    """The notebook's dataset: each entry's prompt, and the prompt with the chosen and the rejected answer."""

    def __init__(self, data, tokenizer):
        self.data = data
        self.encoded_texts = []
        for entry in data:
            prompt = format_input(entry)
            rejected_response = entry["rejected"]
            chosen_response = entry["chosen"]

            prompt_tokens = tokenizer.encode(prompt)
            chosen_full_text = f"{prompt}\n\n### Response:\n{chosen_response}"
            rejected_full_text = f"{prompt}\n\n### Response:\n{rejected_response}"
            chosen_full_tokens = tokenizer.encode(chosen_full_text)
            rejected_full_tokens = tokenizer.encode(rejected_full_text)

            self.encoded_texts.append({
                "prompt": prompt_tokens,
                "chosen": chosen_full_tokens,
                "rejected": rejected_full_tokens,
            })

    def __getitem__(self, index):
        return self.encoded_texts[index]

    def __len__(self):
        return len(self.data)


def preference_collate_fn(batch, pad_token_id=PAD_TOKEN_ID, allowed_max_length=None, mask_prompt_tokens=True,
                          device="cpu"):
    """The notebook's ``custom_collate_fn``: chosen and rejected padded to one length, with masks that are False
    for the padding and (``mask_prompt_tokens``) for the prompt and the two newlines before ``### Response``."""
    batch_data = {"prompt": [], "chosen": [], "rejected": [], "rejected_mask": [], "chosen_mask": []}

    # Determine the longest sequence to set a common padding length
    max_length_common = 0
    if batch:
        for key in ["chosen", "rejected"]:
            current_max = max(len(item[key]) + 1 for item in batch)
            max_length_common = max(max_length_common, current_max)

    for item in batch:
        prompt = torch.tensor(item["prompt"])
        batch_data["prompt"].append(prompt)

        for key in ["chosen", "rejected"]:
            sequence = item[key]
            padded = sequence + [pad_token_id] * (max_length_common - len(sequence))
            mask = torch.ones(len(padded)).bool()
            mask[len(sequence):] = False  # the padding
            if mask_prompt_tokens:
                mask[:prompt.shape[0] + 2] = False  # the prompt and the 2 newline tokens before "### Response"
            batch_data[key].append(torch.tensor(padded))
            batch_data[f"{key}_mask"].append(mask)

    for key in ["chosen", "rejected", "chosen_mask", "rejected_mask"]:
        tensor_stack = torch.stack(batch_data[key])
        if allowed_max_length is not None:
            tensor_stack = tensor_stack[:, :allowed_max_length]
        batch_data[key] = tensor_stack.to(device)
    return batch_data


def compute_dpo_loss(model_chosen_logprobs, model_rejected_logprobs, reference_chosen_logprobs,
                     reference_rejected_logprobs, beta=0.1):
    """The DPO loss of a batch, and the mean rewards of the chosen and the rejected answers."""
    model_logratios = model_chosen_logprobs - model_rejected_logprobs
    reference_logratios = reference_chosen_logprobs - reference_rejected_logprobs
    logits = model_logratios - reference_logratios

    # DPO (Eq. 7 of https://arxiv.org/pdf/2305.18290.pdf)
    losses = -F.logsigmoid(beta * logits)

    # Optional values to track progress during training
    chosen_rewards = (model_chosen_logprobs - reference_chosen_logprobs).detach()
    rejected_rewards = (model_rejected_logprobs - reference_rejected_logprobs).detach()
    return losses.mean(), chosen_rewards.mean(), rejected_rewards.mean()


def compute_logprobs(logits, labels, selection_mask=None, reduction="mean"):
    """Each sequence's log-probability of its own next tokens where ``selection_mask`` is True, averaged over
    them (the notebook's) or summed (``reduction="sum"``, trl's)."""
    labels = labels[:, 1:].clone()  # the next token of each position
    logits = logits[:, :-1, :]
    log_probs = F.log_softmax(logits.float(), dim=-1)
    selected_log_probs = torch.gather(input=log_probs, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    if selection_mask is None:
        return selected_log_probs.mean(-1) if reduction == "mean" else selected_log_probs.sum(-1)
    mask = selection_mask[:, 1:].clone()
    selected_log_probs = selected_log_probs * mask
    total = selected_log_probs.sum(-1)
    return total / mask.sum(-1) if reduction == "mean" else total


def compute_dpo_loss_batch(batch, policy_model, reference_model, beta, reduction="mean", reference_context=None):
    """The DPO loss of one batch; the reference's log-probabilities without gradients (``reference_context``:
    what the reference runs under, e.g. LoRA's adapters switched off when it is the policy's own base)."""
    import contextlib

    policy_chosen_log_probas = compute_logprobs(policy_model(batch["chosen"]), batch["chosen"],
                                                batch["chosen_mask"], reduction)
    policy_rejected_log_probas = compute_logprobs(policy_model(batch["rejected"]), batch["rejected"],
                                                  batch["rejected_mask"], reduction)
    with torch.no_grad(), (reference_context or contextlib.nullcontext)():
        ref_chosen_log_probas = compute_logprobs(reference_model(batch["chosen"]), batch["chosen"],
                                                 batch["chosen_mask"], reduction)
        ref_rejected_log_probas = compute_logprobs(reference_model(batch["rejected"]), batch["rejected"],
                                                   batch["rejected_mask"], reduction)
    return compute_dpo_loss(policy_chosen_log_probas, policy_rejected_log_probas, ref_chosen_log_probas,
                            ref_rejected_log_probas, beta=beta)


def compute_dpo_loss_loader(data_loader, policy_model, reference_model, beta, num_batches=None, **options):
    """The mean loss and rewards over the first ``num_batches`` batches, as ``calc_loss_loader`` averages."""
    total_loss, total_chosen_rewards, total_rejected_rewards = 0., 0., 0.
    if len(data_loader) == 0:
        return float("nan")
    elif num_batches is None:
        num_batches = len(data_loader)
    else:
        num_batches = min(num_batches, len(data_loader))
    for i, batch in enumerate(data_loader):
        if i < num_batches:
            loss, chosen_rewards, rejected_rewards = compute_dpo_loss_batch(batch, policy_model, reference_model,
                                                                            beta, **options)
            total_loss += loss.item()
            total_chosen_rewards += chosen_rewards.item()
            total_rejected_rewards += rejected_rewards.item()
        else:
            break
    return total_loss / num_batches, total_chosen_rewards / num_batches, total_rejected_rewards / num_batches


def evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, beta, eval_iter, **options):
    """Loss and rewards on ``eval_iter`` batches of each loader, the policy in eval mode meanwhile."""
    policy_model.eval()
    with torch.no_grad():
        train_loss, train_chosen_rewards, train_rejected_rewards = compute_dpo_loss_loader(
            train_loader, policy_model, reference_model, beta, num_batches=eval_iter, **options)
        val_loss, val_chosen_rewards, val_rejected_rewards = compute_dpo_loss_loader(
            val_loader, policy_model, reference_model, beta, num_batches=eval_iter, **options)
    res = {
        "train_loss": train_loss, "train_chosen_reward": train_chosen_rewards,
        "train_rejected_reward": train_rejected_rewards, "val_loss": val_loss,
        "val_chosen_reward": val_chosen_rewards, "val_rejected_reward": val_rejected_rewards,
    }
    policy_model.train()
    return res


def train_model_dpo_simple(policy_model, reference_model, train_loader, val_loader, optimizer, num_epochs, beta,
                           eval_freq, eval_iter, start_context, tokenizer, **options):
    """The notebook's loop: a DPO step per batch, the losses and reward margins every ``eval_freq`` steps, a
    sample after each epoch. Returns the tracked values."""
    from .previous_chapters import generate_and_print_sample

    tracking = {"train_losses": [], "train_chosen_rewards": [], "train_rejected_rewards": [], "val_losses": [],
                "val_chosen_rewards": [], "val_rejected_rewards": [], "tokens_seen": []}
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        policy_model.train()
        for batch_idx, batch in enumerate(train_loader):
            optimizer.zero_grad()
            loss, chosen_rewards, rejected_rewards = compute_dpo_loss_batch(batch, policy_model, reference_model,
                                                                            beta, **options)
            loss.backward()
            optimizer.step()
            tokens_seen += batch["chosen"].numel()
            global_step += 1
            if global_step % eval_freq == 0:
                res = evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, beta,
                                               eval_iter, **options)
                for key in ("train_loss", "val_loss"):
                    tracking[key + "es"].append(res[key])
                for key in ("train_chosen_reward", "train_rejected_reward", "val_chosen_reward",
                            "val_rejected_reward"):
                    tracking[key + "s"].append(res[key])
                tracking["tokens_seen"].append(tokens_seen)
                train_reward_margin = res["train_chosen_reward"] - res["train_rejected_reward"]
                val_reward_margin = res["val_chosen_reward"] - res["val_rejected_reward"]
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {res['train_loss']:.3f}, "
                      f"Val loss {res['val_loss']:.3f}, Train reward margins {train_reward_margin:.3f}, "
                      f"Val reward margins {val_reward_margin:.3f}")
        generate_and_print_sample(model=policy_model, tokenizer=tokenizer, device=loss.device,
                                  start_context=start_context)
    return tracking
