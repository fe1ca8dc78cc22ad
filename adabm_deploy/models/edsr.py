"""EDSR (Lim et al. 2017) with the EDSR-PyTorch module layout, so its state dicts load key for key.

Input and output are RGB in 0..255 (rgb_range 255). The mean shifts are 1x1 convs whose weights come from
the checkpoint (the two reference files use different means), never from constants here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EDSRConfig:
    n_blocks: int
    n_feats: int
    scale: int
    n_colors: int = 3
    res_scale: float = 1.0


class MeanShift(nn.Conv2d):
    """1x1 conv that adds or subtracts the dataset mean; weight and bias are loaded, not computed."""

    def __init__(self, n_colors: int):
        super().__init__(n_colors, n_colors, kernel_size=1)
        self.requires_grad_(False)


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, scaled and added to the input (`body.0` / `body.2` as in EDSR-PyTorch)."""

    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return res + x


def upsampler_stages(scale: int) -> list[int]:
    """Pixel-shuffle factors of the EDSR upsampler: x2 -> [2], x3 -> [3], x4 -> [2, 2], x8 -> [2, 2, 2]."""
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * (scale.bit_length() - 1)
    raise ValueError(f"unsupported scale x{scale} (EDSR supports 2^n and 3)")


class Upsampler(nn.Sequential):
    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        for factor in upsampler_stages(scale):
            layers += [conv3x3(n_feats, factor * factor * n_feats), nn.PixelShuffle(factor)]
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, cfg: EDSRConfig):
        super().__init__()
        self.cfg = cfg
        self.sub_mean = MeanShift(cfg.n_colors)
        self.head = nn.Sequential(conv3x3(cfg.n_colors, cfg.n_feats))
        self.body = nn.Sequential(
            *[ResBlock(cfg.n_feats, cfg.res_scale) for _ in range(cfg.n_blocks)],
            conv3x3(cfg.n_feats, cfg.n_feats),
        )
        self.tail = nn.Sequential(Upsampler(cfg.scale, cfg.n_feats), conv3x3(cfg.n_feats, cfg.n_colors))
        self.add_mean = MeanShift(cfg.n_colors)

    @property
    def blocks(self) -> list[ResBlock]:
        return list(self.body)[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))
