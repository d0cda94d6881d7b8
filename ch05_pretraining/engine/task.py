"""What a ``Trainer`` trains for: the loss of a batch, the evaluation's two numbers, what ends an epoch.

Unlike the trainer (the loop: steps, schedule, accumulation, autocast, resuming, Ctrl-C): the part that differs
between tasks. ``LanguageModelTask``, the default, is chapter 5's: next-token loss over every position,
evaluations by chapter 5's ``evaluate_model`` (or ``evaluate_in_passes``) and a greedy text sample after each
epoch. Chapter 6's classifier passes its own task (``ch06_classification/tail.py``) and trains through the same
trainer.

A task has three methods, each given the trainer (its model, loaders, settings, device, log):

- ``loss(trainer, input_batch, target_batch, group_size)``: the loss tensor to backpropagate, computed
  inside the trainer's autocast (``group_size``: micro-batches in this optimizer step);
- ``evaluate(trainer)``: ``(train_loss, val_loss)``, computed inside autocast and without autograd;
- ``end_of_epoch(trainer, state)``: whatever an epoch's end prints or records (samples, accuracies).

>>> LanguageModelTask().evaluate.__doc__.split(":")[0]
"Chapter 5's evaluation"
"""

from __future__ import annotations

import math

from ch04_gpt.lookahead import Drafts, generate_greedy_lookahead

from ..loss import calc_loss_batch, calc_loss_batch_by_rows, evaluate_in_passes, evaluate_model
from ..tokens import text_to_token_ids, token_ids_to_text


def sample_text(model, tokenizer, device, start_context, max_new_tokens, drafts=None):
    """Greedy continuation of ``start_context`` (KV cache when the model has one, guessing ahead with
    ``drafts``: the same tokens in fewer forward passes)."""
    was_training = model.training
    model.eval()
    idx = text_to_token_ids(start_context, tokenizer).to(device)
    ids = generate_greedy_lookahead(model, idx, max_new_tokens, model.context_length, drafts)
    text = token_ids_to_text(ids, tokenizer)
    model.train(was_training)
    return text


def training_drafts(loader, limit: int = 100_000) -> Drafts:
    """Guesses for the per-epoch samples from the training windows (a model trained on them repeats them),
    at most about ``limit`` tokens of them, spread over the data."""
    dataset = loader.dataset
    if len(dataset) == 0:
        return Drafts()
    length = len(dataset[0][0])
    step = max(1, math.ceil(len(dataset) * length / limit))
    return Drafts([list(map(int, dataset[i][0])) for i in range(0, len(dataset), step)])  # tensors or lists


class LanguageModelTask:
    """Chapter 5's task: predict every next token; a greedy sample of ``settings.start_context`` after each
    epoch (when the trainer has a tokenizer and ``settings.sample_tokens`` > 0)."""

    def __init__(self):
        self.drafts = None  # guesses for the per-epoch samples (training_drafts), built at the first one

    def loss(self, trainer, input_batch, target_batch, group_size=1):
        if trainer.settings.loss_by_rows:  # its gradient made in the forward pass, for this backward pass
            return calc_loss_batch_by_rows(input_batch, target_batch, trainer.model, trainer.device, 1 / group_size)
        return calc_loss_batch(input_batch, target_batch, trainer.model, trainer.device)

    def evaluate(self, trainer):
        """Chapter 5's evaluation: ``eval_iter`` batches of each loader, in passes where the settings ask."""
        s = trainer.settings
        if s.eval_pass_tokens:
            return evaluate_in_passes(trainer.raw_model, trainer.train_loader, trainer.val_loader, trainer.device,
                                      s.eval_iter, s.eval_pass_tokens)
        return evaluate_model(trainer.raw_model, trainer.train_loader, trainer.val_loader, trainer.device,
                              s.eval_iter, calc_loss_batch_by_rows if s.loss_by_rows else calc_loss_batch)

    def end_of_epoch(self, trainer, state):
        s = trainer.settings
        if trainer.tokenizer is None or not trainer.is_main or s.sample_tokens <= 0:
            return
        with trainer.clock.phase("per-epoch samples"):
            if self.drafts is None:
                self.drafts = training_drafts(trainer.train_loader)
            text = sample_text(trainer.raw_model, trainer.tokenizer, trainer.device, s.start_context,
                               s.sample_tokens, self.drafts)
        state.samples.append(text)
        trainer.log(text.replace("\n", " "))
