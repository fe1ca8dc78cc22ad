"""Real-ESRGAN's SRVGGNetCompact (realesrgan/archs/srvgg_arch.py): `body` alternates convs and per-channel
PReLUs, the last conv makes out_ch * r * r channels for one PixelShuffle, and the nearest-upsampled input is
added to the result. RGB in 0..1. Released checkpoints (realesr-general-x4v3, realesr-animevideov3) wrap the
weights in `params` / `params_ema`. The first model here from outside the papers: the first and last convs are
outer, the body convs adapt.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from runtime.errors import UserError

from .architecture import Architecture, Layout, pixel_shuffle_factor


class SRVGGNetCompact(nn.Module):
    def __init__(self, n_feats: int, n_convs: int, scale: int, n_colors: int = 3):
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(n_colors, n_feats, 3, 1, 1), nn.PReLU(n_feats)]
        for _ in range(n_convs):
            layers += [nn.Conv2d(n_feats, n_feats, 3, 1, 1), nn.PReLU(n_feats)]
        layers.append(nn.Conv2d(n_feats, n_colors * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


LAYOUT = Layout("Real-ESRGAN SRVGGNetCompact", (r"body\.\d+\.(weight|bias)",), ("body.0.weight", "body.1.weight"))


def build(state: dict[str, torch.Tensor], source: str, scale: int | None) -> tuple[nn.Module, dict]:
    convs = sorted(int(m.group(1)) for m in map(re.compile(r"body\.(\d+)\.weight").fullmatch, state)
                   if m and state[m.group(0)].ndim == 4)
    if not convs or "body.0.weight" not in state:
        raise UserError(f"{source}: not an SRVGGNetCompact checkpoint (no body.0 conv)")
    if "body.1.weight" not in state:
        raise UserError(f"{source}: SRVGGNetCompact without PReLU weights (act_type relu / leakyrelu leaves no "
                        "keys to tell them apart); only the released PReLU models are supported")
    n_feats, n_colors = state["body.0.weight"].shape[:2]
    last = state[f"body.{convs[-1]}.weight"].shape[0]
    config = {"n_feats": n_feats, "n_convs": len(convs) - 2,
              "scale": pixel_shuffle_factor(last, n_colors, source, f"body.{convs[-1]}.weight"), "n_colors": n_colors}
    return SRVGGNetCompact(**config), config


def role(name: str, config: dict) -> str:
    """body.0 is the first conv and body.<2 (n_convs + 1)> the last (it feeds the shuffle): both outer."""
    m = re.fullmatch(r"body\.(\d+)", name)
    return "adaptive" if m and 0 < int(m.group(1)) < 2 * (config["n_convs"] + 1) else "outer"


ARCHITECTURE = Architecture(
    name="SRVGGNetCompact", layouts=(LAYOUT,), build=build,
    role=role,
    features=lambda name, module: isinstance(module, nn.PReLU) and name != "body.1",
    pixel_range=1.0,
)
