"""Models of docs/science.md sections 8 and 9: FCN (SP or muP), a Myrtle-style CNN, WideResNet with LayerNorm, and
the GPT-2-style Transformer of whywarmup.transformer; MODELS maps each `model.kind` to its builder.

No dropout and no BatchNorm anywhere, so the loss on a fixed batch is a deterministic function of the
parameters and its Hessian is well defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .sections import CNNConfig, FCNConfig, ModelConfig, WRNConfig
from .transformer import Transformer

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}
# Variance gain of He-style init per activation: Var(W) = gain / fan_in for hidden layers.
INIT_GAIN = {"relu": 2.0, "tanh": 1.0, "linear": 1.0}


class FCN(nn.Module):
    """Fully-connected net with `depth` linear layers.

    SP: hidden weights ~ N(0, gain/fan_in) (He init for ReLU), readout ~ N(0, 1/fan_in).
    muP: the same init with the readout output multiplied by 1/sqrt(width), which makes the initial
    output and the initial sharpness small (the paper's "small init" regime).
    """

    def __init__(self, cfg: FCNConfig, in_features: int, num_classes: int):
        super().__init__()
        dims = [in_features] + [cfg.width] * (cfg.depth - 1) + [num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=cfg.bias) for a, b in zip(dims[:-1], dims[1:]))
        self.act = ACTIVATIONS[cfg.activation]()
        self.readout_scale = 1.0 / math.sqrt(cfg.width) if cfg.parametrization == "mup" else 1.0
        gain = INIT_GAIN[cfg.activation]
        for i, layer in enumerate(self.layers):
            is_readout = i == len(self.layers) - 1
            std = math.sqrt((1.0 if is_readout else gain) / layer.in_features)
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.layers[-1](h) * self.readout_scale


def _he_init(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, math.sqrt(gain / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MyrtleCNN(nn.Module):
    """Myrtle-style CNN: conv(c) then `depth` stages of [conv(2^k c), act, 2x2 avg-pool], global pool, linear."""

    def __init__(self, cfg: CNNConfig, in_channels: int, num_classes: int):
        super().__init__()
        act = ACTIVATIONS[cfg.activation]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, cfg.channels, 3, padding=1), act()]
        c = cfg.channels
        for _ in range(cfg.depth):
            layers += [nn.Conv2d(c, 2 * c, 3, padding=1), act(), nn.AvgPool2d(2, ceil_mode=True)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.readout = nn.Linear(c, num_classes)
        _he_init(self.features, INIT_GAIN[cfg.activation])
        _he_init(self.readout, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x).mean(dim=(2, 3)))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels at each spatial position (flax's nn.LayerNorm on NHWC, as the authors)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class WideBlock(nn.Module):
    """Pre-activation wide residual block with LayerNorm."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm2 = ChannelLayerNorm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(h)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.norm2(h)))
        return h + skip


class WideResNet(nn.Module):
    """WideResNet-depth-k (Zagoruyko & Komodakis) with LayerNorm instead of BatchNorm."""

    def __init__(self, cfg: WRNConfig, in_channels: int, num_classes: int):
        super().__init__()
        if (cfg.depth - 4) % 6:
            raise ValueError("WideResNet depth must be 6n + 4 (e.g. 16, 22, 28)")
        n = (cfg.depth - 4) // 6
        widths = [16, 16 * cfg.widen_factor, 32 * cfg.widen_factor, 64 * cfg.widen_factor]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for group, c_out in enumerate(widths[1:]):
            for i in range(n):
                blocks.append(WideBlock(c_in, c_out, stride=2 if (group > 0 and i == 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.norm = ChannelLayerNorm(c_in)
        self.readout = nn.Linear(c_in, num_classes)
        _he_init(self, 2.0)
        _he_init(self.readout, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.blocks(self.stem(x))))
        return self.readout(h.mean(dim=(2, 3)))


# model.kind -> builder(config, input shape, classes): images (C, H, W) and labels; token windows (T,) and vocabulary
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn": lambda cfg, shape, classes: FCN(cfg, math.prod(shape), classes),
    "cnn": lambda cfg, shape, classes: MyrtleCNN(cfg, shape[0], classes),
    "wrn": lambda cfg, shape, classes: WideResNet(cfg, shape[0], classes),
    "transformer": lambda cfg, shape, vocabulary: Transformer(cfg, vocabulary, context=shape[0]),
}


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the model of `cfg` for inputs of `input_shape` (one example's) and `num_classes` outputs (the vocabulary
    for text); the caller seeds torch first."""
    return MODELS[cfg.kind](cfg, input_shape, num_classes)
