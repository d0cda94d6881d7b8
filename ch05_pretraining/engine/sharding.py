"""Fully sharded data parallel (PyTorch's FSDP2): parameters, gradients and AdamW state split over processes.

What this adds over DistributedDataParallel (which keeps a whole copy of model and optimizer in every
process): each of N processes holds 1/N of them and gathers a block's weights only while it computes,
so a model whose AdamW state does not fit one device trains on several. Checkpoints stay one ordinary
file: the full state is gathered to every rank's CPU and rank 0 writes it, so a run saved by N
processes resumes in any number, one included.

Under torchrun: ``model = shard(GPTModel(cfg))`` before making the optimizer, and
``full_state(model, optimizer)`` on every rank to save. An optimizer state saved by one process is
re-keyed by parameter name before FSDP loads it:

>>> import torch
>>> layer = torch.nn.Linear(2, 1)
>>> state = torch.optim.AdamW(layer.parameters()).state_dict()
>>> by_name(layer, state)["param_groups"][0]["params"]
['weight', 'bias']
"""

from __future__ import annotations

from ..previous_chapters import TransformerBlock


def shard(model):
    """``fully_shard`` every transformer block (found by type, whatever holds it), then the model
    (embeddings, final norm, head)."""
    from torch.distributed.fsdp import fully_shard

    for block in [m for m in model.modules() if isinstance(m, TransformerBlock)]:
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state(model, optimizer):
    """(model state dict, optimizer state dict keyed by parameter name), whole, on the CPU: a collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return get_model_state_dict(model, options=_options()), get_optimizer_state_dict(model, optimizer,
                                                                                     options=_options())


def by_name(model, optimizer_state: dict) -> dict:
    """``optimizer.state_dict()`` (keyed by parameter index) re-keyed by parameter name, as FSDP loads it."""
    names = [name for name, _ in model.named_parameters()]
    return {"state": {names[i]: v for i, v in optimizer_state["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optimizer_state["param_groups"]]}


def load_optimizer_state(model, optimizer, optimizer_state: dict) -> None:
    """Load an optimizer state saved by one process (keyed by index) or by FSDP (keyed by name) into
    ``optimizer``, whether ``model`` is sharded or not."""
    keyed_by_name = any(isinstance(k, str) for k in optimizer_state["state"]) or any(
        isinstance(p, str) for g in optimizer_state["param_groups"] for p in g["params"])
    if not keyed_by_name and not is_sharded(model):
        optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    state = optimizer_state if keyed_by_name else by_name(model, optimizer_state)
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
