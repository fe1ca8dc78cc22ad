"""CARN (Ahn et al. 2018) in the layout of the official code (nmhkahn/CARN-pytorch, carn.py / ops.py):
sub_mean / add_mean shifters, entry, cascading blocks b{1,2,3} of residual blocks b{1,2,3} and 1x1 fusions
c{1,2,3}, the outer fusions c{1,2,3}, a conv + ReLU + PixelShuffle upsampler (`upsample.up` for one scale, or
`upsample.up2/up3/up4` in the released multi-scale model, where the scale must be chosen), and exit. RGB in
0..1. AdaBM did not quantize CARN in its code; the roles follow its RDN: the residual blocks' convs adapt, the
1x1 fusions are quantized at b_base, entry / upsampler / exit are outer.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from runtime.errors import UserError

from .architecture import Architecture, Layout
from .edsr import upsampler_stages


def conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, 1, k // 2)


class MeanShift(nn.Module):
    def __init__(self, n_colors: int):
        super().__init__()
        self.shifter = conv(n_colors, n_colors, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(conv(c_in, c_out, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.body = nn.Sequential(conv(n, n), nn.ReLU(inplace=True), conv(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class Cascade(nn.Module):
    """Three units, each one's output concatenated with all before it and fused by a 1x1 conv: the shape of
    both CARN's Block (units: residual blocks) and the network's body (units: Blocks)."""

    def __init__(self, n: int, unit):
        super().__init__()
        self.b1, self.b2, self.b3 = unit(), unit(), unit()
        self.c1, self.c2, self.c3 = BasicBlock(2 * n, n), BasicBlock(3 * n, n), BasicBlock(4 * n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x
        for b, fuse in ((self.b1, self.c1), (self.b2, self.c2), (self.b3, self.c3)):
            c = torch.cat([c, b(x)], dim=1)
            x = fuse(c)
        return x


class Upsample(nn.Module):
    def __init__(self, n: int, scale: int):
        super().__init__()
        layers: list[nn.Module] = []
        for r in upsampler_stages(scale):
            layers += [conv(n, r * r * n), nn.ReLU(inplace=True), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CARN(nn.Module):
    def __init__(self, n_feats: int, scale: int, scales: tuple[int, ...] | None, n_colors: int = 3):
        """scales: the upsamplers of a multi-scale checkpoint (all are kept so that its keys bind; `scale`
        picks the one the forward pass runs); None for a single-scale one."""
        super().__init__()
        self.sub_mean, self.add_mean = MeanShift(n_colors), MeanShift(n_colors)
        self.entry = conv(n_colors, n_feats)
        self.body = Cascade(n_feats, lambda: Cascade(n_feats, lambda: ResidualBlock(n_feats)))
        self.upsample = nn.Module()
        for s in scales or (scale,):
            self.upsample.add_module(f"up{s}" if scales else "up", Upsample(n_feats, s))
        self.chosen = f"up{scale}" if scales else "up"
        self.exit = conv(n_feats, n_colors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.entry(self.sub_mean(x)))
        return self.add_mean(self.exit(getattr(self.upsample, self.chosen)(x)))


def _official(key: str) -> str:
    """The released keys name the body's units b1..c3 at the top level; here they sit under `body`."""
    return re.sub(r"^([bc][123]\.)", r"body.\1", key)


LAYOUT = Layout("official CARN-pytorch carn", (
    r"(sub|add)_mean\.shifter\.(weight|bias)", r"entry\.(weight|bias)", r"exit\.(weight|bias)",
    r"b[123]\.b[123]\.body\.[02]\.(weight|bias)", r"(b[123]\.)?c[123]\.body\.0\.(weight|bias)",
    r"upsample\.up[234]?\.body\.\d+\.(weight|bias)"), ("entry.weight", "b1.b1.body.0.weight", "exit.weight"),
    _official)


def build(state: dict[str, torch.Tensor], source: str, scale: int | None) -> tuple[nn.Module, dict]:
    if "entry.weight" not in state:
        raise UserError(f"{source}: not a CARN checkpoint (no entry.weight)")
    n_feats, n_colors = state["entry.weight"].shape[:2]
    scales = tuple(sorted({int(m.group(1)) for m in map(re.compile(r"upsample\.up(\d)\..*").fullmatch, state) if m}))
    if scales:
        if scale is None:
            raise UserError(f"{source}: multi-scale CARN (x{', x'.join(map(str, scales))}): choose one with --scale")
        if scale not in scales:
            raise UserError(f"{source}: this CARN has upsamplers for x{', x'.join(map(str, scales))}, not x{scale}")
        found = scale
    else:
        stages = [state[k].shape[0] // n_feats for k in sorted(state) if re.fullmatch(r"upsample\.up\.body\.\d+\."
                                                                                    r"weight", k)]
        found = 1
        for ratio in stages:
            found *= round(ratio ** 0.5)
    return CARN(n_feats, found, scales or None, n_colors), {"n_feats": n_feats, "scale": found,
                                                            "n_colors": n_colors, "multi_scale": list(scales)}


ARCHITECTURE = Architecture(
    name="CARN", layouts=(LAYOUT,), build=build,
    role=lambda name, config: "adaptive" if re.fullmatch(r"body\.b\d\.b\d\.body\.[02]", name) else
    "fixed" if re.fullmatch(r"body\.(b\d\.)?c\d\.body\.0", name) else "outer",
    features=lambda name, module: isinstance(module, ResidualBlock),
    pixel_range=1.0,
)
