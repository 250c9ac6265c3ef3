"""Losses exactly as PAPER.md section 1."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0.5 * mean over batch AND classes of (f(x) - onehot(y))^2."""
    onehot = F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
    return 0.5 * (outputs - onehot).pow(2).mean()


def cross_entropy_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of softmax cross-entropy."""
    return F.cross_entropy(outputs, targets)


LOSSES: dict[str, LossFn] = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}


def get_loss(name: str) -> LossFn:
    return LOSSES[name]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(dim=-1) == targets).to(outputs.dtype).mean()
