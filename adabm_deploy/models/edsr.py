"""EDSR (Lim et al. 2017) with the EDSR-PyTorch module layout, so its state dicts load key for key.

Baseline (16 x 64) and full (32 x 256, res_scale 0.1) at x2 / x3 / x4; AdaBM's `edsr_baseline_x{s}.pt` names a
block's convs conv1 / conv2 and, once calibrated by the authors' code, carries their quantizer parameters,
which are dropped (this tool calibrates its own). Input and output are RGB in 0..255; the mean shifts are 1x1
convs whose weights come from the checkpoint (the two reference files use different means).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from runtime.errors import UserError

from .architecture import Architecture, Layout, pixel_shuffle_factor


@dataclass(frozen=True)
class EDSRConfig:
    n_blocks: int
    n_feats: int
    scale: int
    n_colors: int = 3
    res_scale: float = 1.0


def conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=k, padding=k // 2)


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, scaled and added to the input (`body.0` / `body.2` as in EDSR-PyTorch)."""

    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(conv(n_feats, n_feats), nn.ReLU(inplace=True), conv(n_feats, n_feats))
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
    raise ValueError(f"unsupported scale x{scale} (2^n and 3 only)")


class Upsampler(nn.Sequential):
    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        for factor in upsampler_stages(scale):
            layers += [conv(n_feats, factor * factor * n_feats), nn.PixelShuffle(factor)]
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, cfg: EDSRConfig):
        super().__init__()
        self.cfg = cfg
        self.sub_mean = conv(cfg.n_colors, cfg.n_colors, 1)
        self.head = nn.Sequential(conv(cfg.n_colors, cfg.n_feats))
        self.body = nn.Sequential(*[ResBlock(cfg.n_feats, cfg.res_scale) for _ in range(cfg.n_blocks)],
                                  conv(cfg.n_feats, cfg.n_feats))
        self.tail = nn.Sequential(Upsampler(cfg.scale, cfg.n_feats), conv(cfg.n_feats, cfg.n_colors))
        self.add_mean = conv(cfg.n_colors, cfg.n_colors, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


# The official full EDSR (32 blocks x 256 channels) was trained with res_scale 0.1; every other EDSR with 1.
FULL_EDSR = (32, 256)
_ADABM_BLOCK = re.compile(r"body\.(\d+)\.conv([12])\.(weight|bias)")
# quantizer state the authors' code saves with a calibrated model (AdaBM src/model/quantize.py, edsr.py)
_ADABM_QUANT = re.compile(r"(.*\.)?(lower_a|upper_a|upper_w|measure_layer|measure_l|measure_u)")


def _adabm_rename(key: str) -> str | None:
    if _ADABM_QUANT.fullmatch(key):
        return None
    m = _ADABM_BLOCK.fullmatch(key)
    return f"body.{m.group(1)}.body.{0 if m.group(2) == '1' else 2}.{m.group(3)}" if m else key


_COMMON = (r"(sub|add)_mean\.(weight|bias)", r"head\.0\.(weight|bias)", r"body\.\d+\.(weight|bias)",
           r"tail\.0\.\d+\.(weight|bias)", r"tail\.1\.(weight|bias)")
LAYOUTS = (
    Layout("EDSR-PyTorch edsr", _COMMON + (r"body\.\d+\.body\.[02]\.(weight|bias)",),
           ("head.0.weight", "body.0.body.0.weight", "sub_mean.weight")),
    Layout("AdaBM edsr", _COMMON + (r"body\.\d+\.conv[12]\.(weight|bias)", _ADABM_QUANT.pattern),
           ("head.0.weight", "body.0.conv1.weight", "sub_mean.weight"), _adabm_rename),
)


def infer_config(state: dict[str, torch.Tensor], source: str, res_scale: float | None = None) -> EDSRConfig:
    """Block count, width, colours and scale from tensor shapes; never hard-coded."""
    if "head.0.weight" not in state:
        raise UserError(f"{source}: not an EDSR checkpoint (no head.0.weight)")
    n_feats, n_colors = state["head.0.weight"].shape[:2]
    # from indices, not a count of keys: a checkpoint missing one key must report that key, not a shifted layout
    end = [int(m.group(1)) for m in map(re.compile(r"body\.(\d+)\.weight").fullmatch, state) if m]
    blocks = [int(m.group(1)) for m in map(re.compile(r"body\.(\d+)\.body\..*").fullmatch, state) if m]
    n_blocks = end[0] if len(end) == 1 else max(blocks, default=-1) + 1
    scale, idx = 1, 0
    while f"tail.0.{idx}.weight" in state:
        scale *= pixel_shuffle_factor(state[f"tail.0.{idx}.weight"].shape[0], n_feats, source, f"tail.0.{idx}.weight")
        idx += 2
    try:
        upsampler_stages(scale)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None
    if res_scale is None:
        res_scale = 0.1 if (n_blocks, n_feats) == FULL_EDSR else 1.0
    return EDSRConfig(n_blocks=n_blocks, n_feats=n_feats, scale=scale, n_colors=n_colors, res_scale=res_scale)


def build(state: dict[str, torch.Tensor], source: str, scale: int | None) -> tuple[nn.Module, dict]:
    cfg = infer_config(state, source)
    return EDSR(cfg), {"n_blocks": cfg.n_blocks, "n_feats": cfg.n_feats, "scale": cfg.scale,
                       "n_colors": cfg.n_colors, "res_scale": cfg.res_scale}


ARCHITECTURE = Architecture(
    name="EDSR", layouts=LAYOUTS, build=build,
    # the paper's 32 adaptive convs: the residual blocks' (head, body end, upsampler and tail at 8 bits)
    role=lambda name, config: "adaptive" if re.fullmatch(r"body\.\d+\.body\.[02]", name) else "outer",
    features=lambda name, module: isinstance(module, ResBlock),
)
