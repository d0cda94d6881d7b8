"""A quick look at training (``--max-steps``): a data loader that yields only its first batches.

Unlike chapter 6's ``train_classifier_simple``, which takes ``max_steps`` itself: chapter 7 trains with
chapter 5's ``train_model_simple`` unchanged, so the stop is in the loader it is handed. Each pass over
``FirstBatches(loader, n)`` (each epoch, each evaluation) yields the first ``n`` batches of a new pass over
``loader`` (reshuffled, if it shuffles), and its length is ``n`` at most, so evaluations average over the
batches they get.

>>> loader = FirstBatches(list(range(10)), 3)
>>> list(loader), list(loader), len(loader), len(FirstBatches([1, 2], None))
([0, 1, 2], [0, 1, 2], 3, 2)
"""

from __future__ import annotations

import itertools


class FirstBatches:
    """The first ``max_steps`` batches of each pass over ``loader`` (None: all of them)."""

    def __init__(self, loader, max_steps=None):
        self.loader = loader
        self.max_steps = max_steps

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.max_steps)

    def __len__(self):
        return len(self.loader) if self.max_steps is None else min(self.max_steps, len(self.loader))
