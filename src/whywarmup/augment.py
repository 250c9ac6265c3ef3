"""Data augmentation of the training minibatches (PAPER.md section 8: flip + crop for the WideResNet runs).

`flip_crop`: each image is flipped left-right with probability 1/2, then padded by `pad` pixels on every side
and cropped back to its size at a uniformly random offset (the standard CIFAR augmentation). Images are already
standardized, so the padding is 0 = the training set's mean colour. The random draws come from a CPU generator
seeded by training.data_seed, so a run is repeatable on any device.
"""

from __future__ import annotations

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
