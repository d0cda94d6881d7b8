"""The classifier's fast path: the frozen blocks run once per text, only the trainable tail trains, and the
tasks that train a classifier through chapter 5's ``Trainer``.

Unlike the book's loop (``classifier.py``), which runs every text through all 12 blocks at every step and
every evaluation: the blocks that stay frozen, without dropout, give each text the same hidden states in
every epoch, so ``cache_hidden`` computes them once (in eval mode, under the training's autocast) and
training and evaluation run only the tail (the trainable blocks, the final norm, the head) on them. The
class is read off one position of the tail's output: the last one (``token="last"``, the book's), each
text's last real token (``"last-real"``) or the mean over its real tokens (``"mean"``).

``BookTask`` trains with the book's own functions (``--book``: the same printed values); ``TailTask`` is the
fast path. Both are chapter 5's ``engine/task.py`` tasks.

>>> from ch06_classification.previous_chapters import GPT_CONFIG_124M, GPTModel
>>> cfg = {**GPT_CONFIG_124M, "vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 3}
>>> _ = torch.manual_seed(123)
>>> model = make_classifier(GPTModel(cfg).eval(), 2, "last-block")
>>> ids = torch.tensor([[1, 2, 3, 4]])
>>> cached = hidden_before(model, ids, first_trained(model, "last-block"))   # blocks 0 and 1, once
>>> logits = tail_logits(model, cached, torch.tensor([4]), "last", first_trained(model, "last-block"))
>>> torch.allclose(logits, model(ids)[:, -1, :], atol=1e-6)                 # the whole model's last logits
True
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .classifier import calc_accuracy_loader, calc_loss_batch, calc_loss_loader, evaluate_model, to_classifier

TRAINABLE = ("head", "last-block", "last-2-blocks", "all")  # what --trainable chooses; the book's: last-block
TOKEN_RULES = ("last", "last-real", "mean")  # what --token chooses; the book's: last


def first_trained(model, trainable: str) -> int:
    """Index of the first block that trains (``n_layers`` when none does: only the head)."""
    n = model.cfg.n_layers
    return {"head": n, "last-block": n - 1, "last-2-blocks": max(0, n - 2), "all": 0}[trainable]


def make_classifier(model, num_classes: int, trainable: str = "last-block"):
    """The book's ``to_classifier`` (a new head of ``num_classes`` outputs; last block and final norm
    trainable), with the trainable parts then set as ``trainable`` says. Returns the model, changed in place."""
    model = to_classifier(model, num_classes)
    first = first_trained(model, trainable)
    everything = trainable == "all"
    for param in model.parameters():
        param.requires_grad = everything
    for block in model.trf_blocks[first:]:
        block.requires_grad_(True)
    model.final_norm.requires_grad_(trainable != "head")
    model.out_head.requires_grad_(True)
    return model


def _rotations(model, length, device):
    positions = torch.arange(length, device=device)
    return positions, model.rotations(positions)


def hidden_before(model, ids, first: int):
    """The hidden states (batch, tokens, emb_dim) entering block ``first``: embeddings and blocks before it."""
    positions, rotations = _rotations(model, ids.shape[1], ids.device)
    x = model.embed(ids, positions)
    for i, block in enumerate(model.trf_blocks[:first]):
        x = block(x, rope=rotations.get(model.cfg.layer_types[i]))
    return x


def pool(hidden, lengths, token: str):
    """One vector per text (batch, emb_dim) from (batch, tokens, emb_dim): the last position, each text's last
    real token, or the mean over its real tokens (``lengths``: real tokens per text)."""
    if token == "last":
        return hidden[:, -1, :]
    if token == "last-real":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths.to(hidden.device) - 1]
    real = torch.arange(hidden.shape[1], device=hidden.device) < lengths.to(hidden.device)[:, None]  # (batch, tokens)
    return (hidden * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True)


def tail_logits(model, hidden, lengths, token: str, first: int):
    """Class logits (batch, num_classes) of hidden states entering block ``first``: the blocks from ``first``
    on, the final norm, ``pool``, the head."""
    x = hidden.float()  # a bf16 cache: the residual stream stays fp32, as in the whole model under autocast
    _, rotations = _rotations(model, x.shape[1], x.device)
    for i in range(first, model.cfg.n_layers):
        x = model.trf_blocks[i](x, rope=rotations.get(model.cfg.layer_types[i]))
    return model.out_head(pool(model.final_norm(x), lengths, token))


class CachedTexts(Dataset):
    """``LabelledTexts`` with each text's hidden states before the first trained block in place of its ids."""

    def __init__(self, hidden, texts):
        self.hidden, self.texts = hidden, texts

    def __getitem__(self, index):
        return self.hidden[index], (self.texts.labels[index], self.texts.lengths[index])

    def __len__(self):
        return len(self.texts)


def cache_hidden(model, texts, first: int, device, autocast=contextlib.nullcontext, batch_size=32):
    """Every text's hidden states entering block ``first`` (texts, tokens, emb_dim), computed once in eval mode
    under ``autocast``; kept in bf16 where autocast computes in bf16 (half the memory), else fp32."""
    was_training = model.training
    model.eval()
    out = None
    with torch.no_grad(), autocast():
        for start in range(0, len(texts), batch_size):
            ids = texts.ids[start:start + batch_size].to(device)
            x = hidden_before(model, ids, first)
            if out is None:  # filled in place: no list of parts and no second copy to join them
                out = x.new_empty((len(texts), *x.shape[1:]), dtype=torch.bfloat16 if x.dtype == torch.bfloat16
                                  else torch.float32)
            out[start:start + len(ids)] = x
    model.train(was_training)
    return out if out is not None else torch.empty(0)


PASS_TEXTS = 64  # texts per forward pass of an evaluation


class TailTask:
    """The fast path's task: loss and accuracy of ``tail_logits`` on cached hidden states (token ids when
    everything trains), each evaluation in one forward pass per loader. Its loaders iterate as the book's do
    (the same draws from torch's generator), so the data order is the book's."""

    def __init__(self, train_loader, val_loader, token: str, first: int, cached: bool):
        self.train_loader, self.val_loader = train_loader, val_loader
        self.token, self.first, self.cached = token, first, cached

    def logits(self, model, inputs, targets, device):
        """``(logits, labels)`` of one batch."""
        labels, lengths = targets
        inputs = inputs.to(device)
        hidden = inputs if self.cached else hidden_before(model, inputs, self.first)
        return tail_logits(model, hidden, lengths, self.token, self.first), labels.to(device)

    def loss(self, trainer, input_batch, target_batch, group_size=1):
        logits, labels = self.logits(trainer.model, input_batch, target_batch, trainer.device)
        return F.cross_entropy(logits.float(), labels)

    def _first_batches_logits(self, model, loader, num_batches, device):
        """Logits and labels of the first ``num_batches`` batches (all: None) in passes of about ``PASS_TEXTS``
        texts, taken from the loader as they come (never the whole loader at once), and each batch's size."""
        logits, labels, sizes, waiting = [], [], [], []

        def run_pass():
            inputs = torch.cat([b[0] for b in waiting])
            targets = (torch.cat([b[1][0] for b in waiting]), torch.cat([b[1][1] for b in waiting]))
            out, true = self.logits(model, inputs, targets, device)
            logits.append(out.float())
            labels.append(true)
            waiting.clear()

        for i, batch in enumerate(loader):  # iterated as calc_loss_loader iterates it
            if num_batches is not None and i >= num_batches:
                break
            waiting.append(batch)
            sizes.append(len(batch[0]))
            if sum(len(b[0]) for b in waiting) >= PASS_TEXTS:
                run_pass()
        if waiting:
            run_pass()
        return torch.cat(logits), torch.cat(labels), sizes

    def mean_loss(self, model, loader, num_batches, device) -> float:
        """The mean of the batches' losses (chapter 5's ``calc_loss_loader``), in one forward pass."""
        logits, labels, sizes = self._first_batches_logits(model, loader, num_batches, device)
        losses = [F.cross_entropy(lg, lb) for lg, lb in zip(logits.split(sizes), labels.split(sizes))]
        return float(torch.stack(losses).mean())

    def predictions(self, model, loader, device, num_batches=None):
        """``(predicted, true)`` labels of the first ``num_batches`` batches (all: None), in eval mode."""
        model.eval()
        with torch.no_grad():
            logits, labels, _ = self._first_batches_logits(model, loader, num_batches, device)
        return logits.argmax(dim=-1), labels

    def accuracy(self, model, loader, device, num_batches=None) -> float:
        predicted, labels = self.predictions(model, loader, device, num_batches)
        return (predicted == labels).float().mean().item()

    def evaluate(self, trainer):
        model, n, device = trainer.raw_model, trainer.settings.eval_iter, trainer.device
        model.eval()
        losses = self.mean_loss(model, self.train_loader, n, device), self.mean_loss(model, self.val_loader, n, device)
        model.train()
        return losses

    def end_of_epoch(self, trainer, state):
        model, n, device = trainer.raw_model, trainer.settings.eval_iter, trainer.device
        with trainer.autocast():
            accuracies = self.accuracy(model, self.train_loader, device, n), self.accuracy(model, self.val_loader, device, n)
        model.train()
        _record_accuracies(trainer, state, accuracies)


class BookTask:
    """``--book``: the book's own functions (``calc_loss_batch``, ``evaluate_model``, ``calc_accuracy_loader``)
    on its loaders of ``(ids, label)`` batches: ``train_classifier_simple``'s printed values, step by step."""

    def __init__(self, train_loader, val_loader):
        self.train_loader, self.val_loader = train_loader, val_loader

    def logits(self, model, inputs, targets, device):
        return model(inputs.to(device))[:, -1, :], targets.to(device)

    def loss(self, trainer, input_batch, target_batch, group_size=1):
        return calc_loss_batch(input_batch, target_batch, trainer.model, trainer.device)

    def evaluate(self, trainer):
        return evaluate_model(trainer.raw_model, self.train_loader, self.val_loader, trainer.device,
                              trainer.settings.eval_iter)

    def predictions(self, model, loader, device, num_batches=None):
        model.eval()
        pairs = []
        with torch.no_grad():
            for i, (inputs, targets) in enumerate(loader):
                if num_batches is not None and i >= num_batches:
                    break
                logits, labels = self.logits(model, inputs, targets, device)
                pairs.append((logits.argmax(dim=-1), labels))
        return torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])

    def accuracy(self, model, loader, device, num_batches=None) -> float:
        return calc_accuracy_loader(loader, model, device, num_batches)

    def mean_loss(self, model, loader, num_batches, device) -> float:
        with torch.no_grad():
            return calc_loss_loader(loader, model, device, num_batches)

    def end_of_epoch(self, trainer, state):
        n, model, device = trainer.settings.eval_iter, trainer.raw_model, trainer.device
        _record_accuracies(trainer, state, (calc_accuracy_loader(self.train_loader, model, device, num_batches=n),
                                            calc_accuracy_loader(self.val_loader, model, device, num_batches=n)))


def _record_accuracies(trainer, state, accuracies):
    """The book's per-epoch line, and the accuracies kept in the resumable state."""
    train_accuracy, val_accuracy = accuracies
    state.epoch_metrics.append({"train_accuracy": train_accuracy, "val_accuracy": val_accuracy})
    if trainer.is_main:
        trainer.log(f"Training accuracy: {train_accuracy*100:.2f}% | Validation accuracy: {val_accuracy*100:.2f}%")


class EpochSteps:
    """A training loader cut to its first ``steps`` batches each epoch (``--max-steps``, as the book's
    ``itertools.islice(train_loader, max_steps)``: the same iterator, so the same draws)."""

    def __init__(self, loader: DataLoader, steps: int | None):
        self.loader, self.steps = loader, steps
        self.dataset = getattr(loader, "dataset", None)
        self.sampler = getattr(loader, "sampler", None)  # a DistributedSampler gets each epoch's number

    def __len__(self):
        return len(self.loader) if self.steps is None else min(self.steps, len(self.loader))

    def __iter__(self):
        batches = iter(self.loader)
        for _ in range(len(self)):
            yield next(batches)
