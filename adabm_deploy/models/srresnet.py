"""SRResNet (Ledig et al. 2017) with batch norm, in the module layout of AdaBM's srresnet.py and its
`bnsrresnet_x4.pt`: a 9x9 head conv + PReLU, residual blocks conv1 / bn1 / act (PReLU) / conv2 / bn2, a body-end
conv + BN, an upsampler of conv / PixelShuffle / PReLU stages and a 9x9 tail conv; no biases, RGB in 0..255.
The batch norms are folded into their convs when the graph is captured, before calibration.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from runtime.errors import UserError

from .architecture import Architecture, Layout, conv_count, instantiate
from .edsr import upsampler_stages


def conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=k, padding=k // 2, bias=False)


class ResBlock(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.conv1, self.bn1 = conv(n_feats, n_feats), nn.BatchNorm2d(n_feats)
        self.act = nn.PReLU()
        self.conv2, self.bn2 = conv(n_feats, n_feats), nn.BatchNorm2d(n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))) + x


class SRResNet(nn.Module):
    def __init__(self, n_blocks: int, n_feats: int, scale: int, n_colors: int = 3):
        super().__init__()
        self.head = nn.Sequential(conv(n_colors, n_feats, 9), nn.PReLU())
        self.body = nn.Sequential(*[ResBlock(n_feats) for _ in range(n_blocks)], conv(n_feats, n_feats),
                                  nn.BatchNorm2d(n_feats))
        up: list[nn.Module] = []
        for r in upsampler_stages(scale):
            up += [conv(n_feats, r * r * n_feats), nn.PixelShuffle(r), nn.PReLU()]
        self.tail = nn.Sequential(nn.Sequential(*up), conv(n_feats, n_colors, 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.tail(self.body(x) + x)


_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
LAYOUT = Layout("AdaBM srresnet (bnsrresnet)", (
    r"head\.0\.weight", r"head\.1\.weight", rf"body\.\d+\.(conv[12]\.weight|bn[12]\.{_BN}|act\.weight)",
    r"body\.\d+\.weight", rf"body\.\d+\.{_BN}", r"tail\.0\.\d+\.weight", r"tail\.1\.weight"),
    ("head.0.weight", "head.1.weight", "body.0.conv1.weight", "body.0.bn1.running_var"))


def build(state: dict[str, torch.Tensor], source: str, scale: int | None) -> tuple[nn.Module, dict]:
    if "head.0.weight" not in state or "body.0.conv1.weight" not in state:
        raise UserError(f"{source}: not an SRResNet checkpoint (no head.0 / body.0.conv1 weights)")
    n_feats, n_colors = state["head.0.weight"].shape[:2]
    n_blocks = conv_count(state, r"body\.(\d+)\.conv1\.weight")
    found = 1
    for key in sorted(k for k in state if re.fullmatch(r"tail\.0\.\d+\.weight", k) and state[k].ndim == 4):
        found *= round((state[key].shape[0] / n_feats) ** 0.5)
    config = {"n_blocks": n_blocks, "n_feats": n_feats, "scale": found, "n_colors": n_colors}
    return instantiate(SRResNet, config, source)


ARCHITECTURE = Architecture(
    name="SRResNet", layouts=(LAYOUT,), build=build,
    role=lambda name, config: "adaptive" if re.fullmatch(r"body\.\d+\.conv[12]", name) else "outer",
    features=lambda name, module: isinstance(module, ResBlock),
)
