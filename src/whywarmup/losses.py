"""Losses exactly as docs/science.md section 1. Targets are class indices (N,) or class probabilities (N, C) (mixup);
for sequence models, token ids (N, T) against logits (N, T, V), every token weighted alike."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _probabilities(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dim() == outputs.dim():
        return targets.to(outputs.dtype)
    return F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)


def mse_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0.5 * mean over batch AND classes of (f(x) - onehot(y))^2 (or - the soft target)."""
    return 0.5 * (outputs - _probabilities(outputs, targets)).pow(2).mean()


def cross_entropy_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of softmax cross-entropy (against class probabilities when the targets are soft). For a
    sequence model's logits (N, T, V) and targets (N, T), the mean over every token."""
    logits = outputs.flatten(0, -2)  # (N, C) stays as it is
    if targets.dim() == outputs.dim():
        return F.cross_entropy(logits, targets.flatten(0, -2).to(outputs.dtype))
    return F.cross_entropy(logits, targets.flatten())


LOSSES: dict[str, LossFn] = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}


def get_loss(name: str) -> LossFn:
    return LOSSES[name]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of argmax predictions equal to the label (for soft targets: the most probable class)."""
    labels = targets.argmax(dim=-1) if targets.dim() == outputs.dim() else targets
    return (outputs.argmax(dim=-1) == labels).to(outputs.dtype).mean()
