"""Seeding the way the book does (``torch.manual_seed`` and Python's ``random``).

>>> import torch
>>> set_seed(123); a = torch.rand(1); set_seed(123); bool(torch.equal(a, torch.rand(1)))
True
"""

import random

import torch


def set_seed(seed: int) -> None:
    """Seed torch (CPU and all GPUs) and Python's ``random`` the way the book does."""
    random.seed(seed)
    torch.manual_seed(seed)
