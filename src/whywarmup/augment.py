"""Data augmentation of the training minibatches (docs/science.md section 8: flip, crop, then mixup for the
WideResNet runs).

`flip_crop`: each image is flipped left-right with probability 1/2, then padded by `pad` pixels on every side
and cropped back to its size at a uniformly random offset (the standard CIFAR augmentation). Images are already
standardized, so the padding is 0 = the training set's mean colour. The random draws come from a CPU generator
seeded by training.data_seed, so a run is repeatable on any device.

`mixup` (Zhang et al. 2018): the batch is mixed with a permutation of itself, x = lam x + (1 - lam) x[perm], and so
are the one-hot targets, with one lam ~ Beta(alpha, alpha) per batch. The targets become class probabilities, which
both losses take (losses.py). lam and the permutation come from a numpy generator seeded by training.data_seed
(torch has no seeded Beta sampler), drawn on the CPU: the same on any device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def flip_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Randomly flipped and shifted copy of a batch (N, C, H, W); draws: flips (N), row offsets (N), col offsets (N)."""
    n, c, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    device = x.device
    x = torch.where(flip.to(device).view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy.view(n, 1) + torch.arange(h)).to(device)  # (N, H): the rows of the padded image each crop keeps
    cols = (dx.view(n, 1) + torch.arange(w)).to(device)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed inputs, soft targets (N, num_classes)); draws: lam = Beta(alpha, alpha), then a permutation of N."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    onehot = F.one_hot(y, num_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[perm], lam * onehot + (1 - lam) * onehot[perm]
