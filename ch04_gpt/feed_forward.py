"""Gated feed-forward layers (SwiGLU, GeGLU) and a mixture of experts built from them.

Unlike the book's ``FeedForward`` (expand, GELU, project back): a gated MLP multiplies an activated
"gate" projection with a plain "up" projection before projecting down, ``fc3(act(fc1(x)) * fc2(x))``
(SwiGLU with SiLU: Llama, Qwen, Mistral, OLMo; GeGLU with tanh-GELU: Gemma), usually without biases and
with its own hidden size. ``MixtureOfExperts`` keeps several such MLPs and a router that sends each
token to its top-k experts (Mixtral, Qwen3-MoE); during training it keeps the router's logits for the
load-balancing loss (``load_balancing_loss``).

>>> ff = GatedFeedForward(8, 16, "silu")
>>> ff(torch.rand(2, 3, 8)).shape
torch.Size([2, 3, 8])
>>> moe = MixtureOfExperts(8, 16, n_experts=4, top_k=2)
>>> moe(torch.rand(2, 3, 8)).shape
torch.Size([2, 3, 8])
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {"silu": F.silu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


class GatedFeedForward(nn.Module):
    """``fc3(act(fc1(x)) * fc2(x))``: fc1 = gate, fc2 = up, fc3 = down (the residual-writing projection)."""

    def __init__(self, emb_dim: int, hidden_dim: int, activation: str = "silu", bias: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(emb_dim, hidden_dim, bias=bias)
        self.fc2 = nn.Linear(emb_dim, hidden_dim, bias=bias)
        self.fc3 = nn.Linear(hidden_dim, emb_dim, bias=bias)
        self.activation = activation

    def forward(self, x):
        return self.fc3(ACTIVATIONS[self.activation](self.fc1(x)) * self.fc2(x))

    def output_projections(self):
        return [self.fc3]


class MixtureOfExperts(nn.Module):
    """A router (``gate``) picks ``top_k`` of ``n_experts`` gated MLPs per token and mixes their outputs.

    Router weights are the softmax over all experts (in fp32), restricted to the top k, renormalised to
    sum to 1 if ``norm_topk_prob`` (Mixtral always; Qwen3-MoE by its config).
    """

    def __init__(self, emb_dim, hidden_dim, n_experts, top_k, norm_topk_prob=True, activation="silu"):
        super().__init__()
        self.gate = nn.Linear(emb_dim, n_experts, bias=False)
        self.experts = nn.ModuleList(GatedFeedForward(emb_dim, hidden_dim, activation) for _ in range(n_experts))
        self.top_k, self.norm_topk_prob = top_k, norm_topk_prob
        self.router_logits = None  # (tokens, n_experts) of the last training forward

    def route(self, x):
        """(top-k weights (tokens, k) in x's dtype, expert ids (tokens, k), logits (tokens, n_experts))."""
        logits = self.gate(x)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(x.dtype), chosen, logits

    def forward(self, x):
        b, num_tokens, d = x.shape
        flat = x.reshape(-1, d)  # (b * num_tokens, emb_dim)
        weights, chosen, logits = self.route(flat)
        self.router_logits = logits if self.training else None
        out = torch.zeros_like(flat)
        if flat.shape[0] == 1:  # one token (a decoding step): its k experts in the same order, without gathers
            for slot, e in sorted(enumerate(chosen[0].tolist()), key=lambda pair: pair[1]):
                out.add_(self.experts[e](flat) * weights[:, slot, None])
            return out.view(b, num_tokens, d)
        for e in torch.unique(chosen).tolist():
            token, slot = torch.where(chosen == e)
            out.index_add_(0, token, self.experts[e](flat[token]) * weights[token, slot, None])
        return out.view(b, num_tokens, d)

    def output_projections(self):
        return [expert.fc3 for expert in self.experts]


def load_balancing_loss(router_logits: list[torch.Tensor], n_experts: int, top_k: int) -> torch.Tensor:
    """Switch Transformer's auxiliary loss over all MoE layers' tokens (as transformers computes it):
    ``n_experts * sum_e (share of top-k picks that went to e) * (mean router probability of e)``;
    ``top_k`` when routing is perfectly even, larger when some experts get more tokens and probability.

    >>> logits = [torch.zeros(6, 4)]          # even probabilities, but ties send every token to experts 0, 1
    >>> round(float(load_balancing_loss(logits, 4, 2)), 4)
    2.0
    """
    picks = torch.zeros(n_experts, device=router_logits[0].device)
    probs = torch.zeros(n_experts, device=router_logits[0].device)
    rows = 0
    for logits in router_logits:
        p = torch.softmax(logits.float(), dim=-1)
        chosen = torch.topk(p, top_k, dim=-1).indices
        picks = picks + torch.bincount(chosen.reshape(-1), minlength=n_experts).float()
        probs = probs + p.sum(dim=0)
        rows += p.shape[0]
    return n_experts * torch.sum((picks / rows) * (probs / rows))
