"""CARN and CARN-M (Ahn et al. 2018) in the layout of the official code (nmhkahn/CARN-pytorch, carn.py,
carn_m.py, ops.py): sub_mean / add_mean shifters, entry, cascading blocks b{1,2,3} of residual blocks and 1x1
fusions c{1,2,3}, the outer fusions c{1,2,3}, a conv + ReLU + PixelShuffle upsampler (`upsample.up` for one
scale, or `upsample.up2/up3/up4` in the released multi-scale models, where the scale must be chosen), and exit.
RGB in 0..1. CARN's blocks hold three residual blocks b{1,2,3}; CARN-M's hold one efficient residual block b1
(grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1) that the block calls three times, and its upsampler convs are
grouped too. The group count is read from the weights' shapes. AdaBM did not quantize CARN in its code; the
roles follow its RDN: the residual blocks' convs adapt, the 1x1 fusions are quantized at b_base, entry /
upsampler / exit are outer.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from runtime.errors import UserError

from .architecture import Architecture, Layout
from .edsr import upsampler_stages


def conv(c_in: int, c_out: int, k: int = 3, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, 1, k // 2, groups=groups)


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


class EResidualBlock(nn.Module):
    """CARN-M's efficient residual block."""

    def __init__(self, n: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(conv(n, n, groups=groups), nn.ReLU(inplace=True), conv(n, n, groups=groups),
                                  nn.ReLU(inplace=True), conv(n, n, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class Cascade(nn.Module):
    """Three units, each one's output concatenated with all before it and fused by a 1x1 conv: the shape of
    both CARN's Block (units: residual blocks) and the network's body (units: Blocks). shared: one unit b1
    called three times (CARN-M's Block)."""

    def __init__(self, n: int, unit, shared: bool = False):
        super().__init__()
        self.b1 = unit()
        if not shared:
            self.b2, self.b3 = unit(), unit()
        self.c1, self.c2, self.c3 = BasicBlock(2 * n, n), BasicBlock(3 * n, n), BasicBlock(4 * n, n)
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x
        units = (self.b1,) * 3 if self.shared else (self.b1, self.b2, self.b3)
        for b, fuse in zip(units, (self.c1, self.c2, self.c3)):
            c = torch.cat([c, b(x)], dim=1)
            x = fuse(c)
        return x


class Upsample(nn.Module):
    def __init__(self, n: int, scale: int, groups: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for r in upsampler_stages(scale):
            layers += [conv(n, r * r * n, groups=groups), nn.ReLU(inplace=True), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CARN(nn.Module):
    def __init__(self, n_feats: int, scale: int, scales: tuple[int, ...] | None, n_colors: int = 3,
                 mobile: bool = False, groups: int = 1, upsample_groups: int = 1):
        """scales: the upsamplers of a multi-scale checkpoint (all are kept so that its keys bind; `scale`
        picks the one the forward pass runs); None for a single-scale one. mobile: CARN-M's blocks, whose
        3x3 convs have `groups` groups (its upsampler's `upsample_groups`)."""
        super().__init__()
        self.sub_mean, self.add_mean = MeanShift(n_colors), MeanShift(n_colors)
        self.entry = conv(n_colors, n_feats)
        if mobile:
            block = lambda: Cascade(n_feats, lambda: EResidualBlock(n_feats, groups), shared=True)  # noqa: E731
        else:
            block = lambda: Cascade(n_feats, lambda: ResidualBlock(n_feats))  # noqa: E731
        self.body = Cascade(n_feats, block)
        self.upsample = nn.Module()
        for s in scales or (scale,):
            self.upsample.add_module(f"up{s}" if scales else "up", Upsample(n_feats, s, upsample_groups))
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
MOBILE_LAYOUT = Layout("official CARN-pytorch carn_m", (
    r"(sub|add)_mean\.shifter\.(weight|bias)", r"entry\.(weight|bias)", r"exit\.(weight|bias)",
    r"b[123]\.b1\.body\.[024]\.(weight|bias)", r"(b[123]\.)?c[123]\.body\.0\.(weight|bias)",
    r"upsample\.up[234]?\.body\.\d+\.(weight|bias)"), ("entry.weight", "b1.b1.body.4.weight", "exit.weight"),
    _official)


def _groups(state: dict[str, torch.Tensor], key: str, n_feats: int, source: str) -> int:
    """The group count of a conv reading n_feats channels, from its weight's input channels."""
    per_group = state[key].shape[1]
    if n_feats % per_group:
        raise UserError(f"{source}: {key} reads {per_group} channels per group, which does not divide {n_feats}")
    return n_feats // per_group


def build(state: dict[str, torch.Tensor], source: str, scale: int | None, mobile: bool = False
          ) -> tuple[nn.Module, dict]:
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
    config = {"n_feats": n_feats, "scale": found, "n_colors": n_colors, "multi_scale": list(scales)}
    if mobile:
        up = f"upsample.up{found if scales else ''}.body.0.weight"
        if "body.b1.b1.body.0.weight" not in state or up not in state:
            raise UserError(f"{source}: not a CARN-M checkpoint (no body.b1.b1.body.0.weight or {up})")
        config.update(groups=_groups(state, "body.b1.b1.body.0.weight", n_feats, source),
                      upsample_groups=_groups(state, up, n_feats, source))
    return CARN(n_feats, found, scales or None, n_colors, mobile, config.get("groups", 1),
                config.get("upsample_groups", 1)), config


ARCHITECTURE = Architecture(
    name="CARN", layouts=(LAYOUT,), build=build,
    role=lambda name, config: "adaptive" if re.fullmatch(r"body\.b\d\.b\d\.body\.[02]", name) else
    "fixed" if re.fullmatch(r"body\.(b\d\.)?c\d\.body\.0", name) else "outer",
    features=lambda name, module: isinstance(module, ResidualBlock),
    pixel_range=1.0,
)
MOBILE = Architecture(
    name="CARN-M", layouts=(MOBILE_LAYOUT,), build=lambda state, source, scale: build(state, source, scale, True),
    role=lambda name, config: "adaptive" if re.fullmatch(r"body\.b\d\.b1\.body\.[024]", name) else
    "fixed" if re.fullmatch(r"body\.(b\d\.)?c\d\.body\.0", name) else "outer",
    features=lambda name, module: isinstance(module, EResidualBlock),
    pixel_range=1.0,
)
