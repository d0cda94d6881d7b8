"""The book's dropout masks, drawn ahead of a training forward pass on two cores.

What this adds over ``nn.Dropout`` (section 3.5.2): speed, with the very same masks. PyTorch's CPU
dropout draws one 64-bit number per element from the global generator, one element after another
(a noticeable share of a GPT-124M training step, on one core while the other waits: bench/README.md).
``BookMasks`` learns from one forward pass which masks the model draws, in which order (``plan``), and
from then on draws all of a pass's masks before it starts: the first part on this thread from the global
generator, the rest on a second thread from a copy of the generator jumped ahead to where the first part
ends (``mersenne_twister.JumpAhead``). The global generator is then left where the book's dropouts would
have left it, byte for byte, and each ``PrefetchedDropout`` takes its mask in turn.

>>> model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Dropout(0.1))
>>> masks = use_prefetched_dropout(model)
>>> x = torch.ones(3, 4)
>>> with masks.ahead("batch"):          # the first pass with a key: learns what it draws
...     _ = model(x)
>>> _ = torch.manual_seed(1); book = nn.Sequential(*model)(x)  # drawn one by one (plan: 2 masks)
>>> _ = torch.manual_seed(1)
>>> with masks.ahead("batch"):          # drawn ahead, then taken by the two dropouts
...     ahead = model(x)
>>> torch.equal(ahead, book), masks.plans["batch"]
(True, [((3, 4), 0.5), ((3, 4), 0.1)])
"""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generator_dropout import replace_dropouts
from .mersenne_twister import JumpAhead, TwisterState

WORDS_PER_ELEMENT = 2  # bernoulli_ takes one 64-bit number per element: two 32-bit words
TWO_CORES_FROM = 1 << 21  # elements per pass from which the second core pays for its jump (bench/README.md)
JUMP_HEAD_START = 300_000  # elements the first core draws while the second one jumps


def draws_as_planned() -> bool:
    """Whether this PyTorch draws a bool ``bernoulli_`` as this module assumes: the same masks as any dtype
    would get, two words per element in order, so that one long draw equals the book's one by one."""
    g = torch.Generator().manual_seed(2024)
    parts = [torch.empty(n, dtype=dtype).bernoulli_(0.7, generator=g) for n, dtype in
             ((3, torch.float32), (5, torch.bfloat16))]
    try:
        after = TwisterState.of(g)
    except ValueError:  # another generator state layout: draw the masks as PyTorch does
        return False
    whole = torch.empty(8, dtype=torch.bool).bernoulli_(0.7, generator=torch.Generator().manual_seed(2024))
    return (torch.equal(torch.cat(parts).bool(), whole)
            and after.pos == 8 * WORDS_PER_ELEMENT)  # from a fresh seed: the first block, word 16 next


class BookMasks:
    """A model's dropout masks for its next training forward pass, drawn ahead (see the module docstring).

    ``plans``: per key (the caller's; a batch shape, say), the (shape, p) of each mask in the order the
    forward pass takes them. ``two_cores``: False once a jump has not matched (then one core draws all).
    """

    def __init__(self):
        self.plans: dict = {}
        self.usable = draws_as_planned()
        self.two_cores = True
        self._recording: list | None = None
        self._ready: deque = deque()
        self._jumps: dict[int, JumpAhead] = {}
        self._helper: ThreadPoolExecutor | None = None

    @contextlib.contextmanager
    def ahead(self, key):
        """Around one training forward pass: draws its masks first if ``key``'s plan is known, else learns it.
        The pass must take the planned masks, in order (a RuntimeError says otherwise; masks it asks for beyond
        the plan are drawn then, after the planned ones, as PyTorch draws them). If the pass raises, the global
        generator stays past all of the planned masks."""
        plan = self.plans.get(key) if self.usable else None
        if self.usable and key not in self.plans:
            self._recording = []
        elif plan:
            self._ready.extend(zip(plan, self._draw(plan)))
        try:
            yield self
        except BaseException:
            self._ready.clear()
            self._recording = None
            raise
        if self._recording is not None:
            self.plans[key] = None if None in self._recording else self._recording
            self._recording = None
        if self._ready:
            left = len(self._ready)
            self._ready.clear()
            raise RuntimeError(f"{left} dropout masks drawn ahead were not taken: the pass drew fewer than planned")

    def take(self, x: torch.Tensor, p: float) -> torch.Tensor | None:
        """The noise for ``x`` (mask / (1 - p), in ``x``'s dtype) if drawn ahead; None: draw it now."""
        if self._recording is not None:  # PyTorch draws a strided tensor's mask in memory order: never ahead
            self._recording.append((tuple(x.shape), p) if x.is_contiguous() else None)
            return None
        if not self._ready:
            return None
        (shape, planned_p), mask = self._ready.popleft()
        if shape != tuple(x.shape) or planned_p != p or not x.is_contiguous():
            self._ready.clear()
            raise RuntimeError(f"dropout mask drawn ahead for {shape}, p={planned_p}, asked for "
                               f"{tuple(x.shape)}, p={p}{'' if x.is_contiguous() else ', not contiguous'}: "
                               "the forward pass changed its draws")
        return mask.to(x.dtype).div_(1 - p)  # as torch's dropout makes its noise: 0 or 1, divided by 1 - p

    # -- drawing ---------------------------------------------------------------------------------------
    def _draw(self, plan) -> list[torch.Tensor]:
        """All of ``plan``'s masks (True: keep), from the global generator, in order."""
        sizes = [torch.Size(shape).numel() for shape, _ in plan]
        flat = torch.empty(sum(sizes), dtype=torch.bool)
        segments, start = [], 0  # (start, end, keep probability) of each mask in ``flat``
        for size, (_, p) in zip(sizes, plan):
            segments.append((start, start + size, 1 - p))
            start += size
        split = flat.numel() // 2 + JUMP_HEAD_START  # the first core's part: it starts while the second jumps
        one_core = not self.two_cores or torch.get_num_threads() < 2
        if one_core or flat.numel() < TWO_CORES_FROM or split >= flat.numel():
            _fill(flat, segments, 0, flat.numel(), None)
        else:
            self._draw_on_two_cores(flat, segments, split)
        masks, start = [], 0
        for size, (shape, _) in zip(sizes, plan):
            masks.append(flat[start:start + size].view(shape))
            start += size
        return masks

    def _draw_on_two_cores(self, flat, segments, split):
        default = torch.default_generator
        jump = self._jumps.get(split)
        if jump is None:
            jump = self._jumps[split] = JumpAhead(split * WORDS_PER_ELEMENT)
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="dropout-masks")
        start = TwisterState.of(default)
        later = self._helper.submit(_draw_from_jump, jump, start, flat, segments, split)
        _fill(flat, segments, 0, split, None)
        try:
            jumped, end = later.result()
            landed = TwisterState.of(default).to_bytes() == jumped.to_bytes()
        except Exception:  # noqa: BLE001 - whatever failed there, the masks can still be drawn here
            landed = False
        if landed:
            default.set_state(end)
        else:  # the jump did not land where the first part ended: draw the rest here, and one core from now on
            self.two_cores = False
            _fill(flat, segments, split, flat.numel(), None)


def _fill(flat, segments, begin, end, generator):
    """Draw ``flat[begin:end]``, each segment with its keep probability, from ``generator`` (None: global)."""
    for start, stop, keep in segments:
        lo, hi = max(start, begin), min(stop, end)
        if lo < hi:
            flat[lo:hi].bernoulli_(keep, generator=generator)


def _draw_from_jump(jump, start, flat, segments, split):
    """The second core's part: ``flat[split:]`` from ``start`` jumped over the first part's words."""
    jumped = jump.apply(start)
    generator = torch.Generator()
    jumped.set_into(generator)
    _fill(flat, segments, split, flat.numel(), generator)
    return jumped, generator.get_state()


class PrefetchedDropout(nn.Dropout):
    """``nn.Dropout`` that takes its mask from a ``BookMasks`` when one was drawn ahead for it."""

    def __init__(self, p: float, masks: BookMasks):
        super().__init__(p)
        self.masks = masks

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        noise = self.masks.take(x, self.p)
        return F.dropout(x, self.p, True) if noise is None else x * noise


def use_prefetched_dropout(model: nn.Module) -> BookMasks:
    """Swap every ``nn.Dropout`` in ``model`` for a ``PrefetchedDropout`` sharing one ``BookMasks``, and give
    the attention modules that can take one (``weight_dropout``) one for their weights; returns it."""
    masks = BookMasks()
    replace_dropouts(model, lambda p: PrefetchedDropout(p, masks))
    return masks


def book_masks(model: nn.Module) -> BookMasks | None:
    """The ``BookMasks`` of ``model``'s ``PrefetchedDropout`` modules, None if it has none."""
    return next((m.masks for m in model.modules() if isinstance(m, PrefetchedDropout)), None)
