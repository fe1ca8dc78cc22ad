"""RDN (Zhang et al. 2018) in the module layout of EDSR-PyTorch's rdn.py, which AdaBM's rdn.py and its
`rdn_baseline_x4.pt` keep: SFENet1/2, RDBs.{d}.convs.{c}.conv.0, RDBs.{d}.LFF, GFF.{0,1}, UPNet. RGB in 0..255,
no mean shift. Roles follow AdaBM's code: the dense convs and the global fusion (GFF) adapt, the local fusion
1x1 convs (LFF) are quantized at b_base without adapting, the shallow and up-sampling convs are outer.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from runtime.errors import UserError

from .architecture import Architecture, Layout, conv_count, instantiate, pixel_shuffle_factor
from .edsr import conv


class RDBConv(nn.Module):
    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.conv = nn.Sequential(conv(c_in, growth), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    def __init__(self, g0: int, growth: int, n_convs: int):
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(g0 + c * growth, growth) for c in range(n_convs)])
        self.LFF = conv(g0 + n_convs * growth, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    def __init__(self, g0: int, n_blocks: int, n_convs: int, growth: int, scale: int, n_colors: int = 3):
        super().__init__()
        self.SFENet1 = conv(n_colors, g0)
        self.SFENet2 = conv(g0, g0)
        self.RDBs = nn.ModuleList(RDB(g0, growth, n_convs) for _ in range(n_blocks))
        self.GFF = nn.Sequential(conv(n_blocks * g0, g0, 1), conv(g0, g0))
        if scale == 4:
            up = [conv(g0, growth * 4), nn.PixelShuffle(2), conv(growth, growth * 4), nn.PixelShuffle(2)]
        elif scale in (2, 3):
            up = [conv(g0, growth * scale * scale), nn.PixelShuffle(scale)]
        else:
            raise ValueError(f"unsupported scale x{scale} (RDN: 2, 3, 4)")
        self.UPNet = nn.Sequential(*up, conv(growth, n_colors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        x = self.GFF(torch.cat(outs, 1)) + f1
        return self.UPNet(x)


LAYOUT = Layout("EDSR-PyTorch rdn", (r"SFENet[12]\.(weight|bias)", r"RDBs\.\d+\.convs\.\d+\.conv\.0\.(weight|bias)",
                                     r"RDBs\.\d+\.LFF\.(weight|bias)", r"GFF\.[01]\.(weight|bias)",
                                     r"UPNet\.[024]\.(weight|bias)"),
                ("SFENet1.weight", "RDBs.0.convs.0.conv.0.weight", "GFF.0.weight"))


def build(state: dict[str, torch.Tensor], source: str, scale: int | None) -> tuple[nn.Module, dict]:
    if "SFENet1.weight" not in state or "RDBs.0.convs.0.conv.0.weight" not in state:
        raise UserError(f"{source}: not an RDN checkpoint (no SFENet1 / RDBs.0 weights)")
    g0, n_colors = state["SFENet1.weight"].shape[:2]
    growth = state["RDBs.0.convs.0.conv.0.weight"].shape[0]
    n_blocks = conv_count(state, r"RDBs\.(\d+)\..*")
    n_convs = conv_count(state, r"RDBs\.0\.convs\.(\d+)\..*")
    if "UPNet.4.weight" in state:
        found = 4
    elif "UPNet.0.weight" in state:
        found = pixel_shuffle_factor(state["UPNet.0.weight"].shape[0], growth, source, "UPNet.0.weight")
    else:
        raise UserError(f"{source}: RDN checkpoint without up-sampling convs (UPNet)")
    config = {"g0": g0, "n_blocks": n_blocks, "n_convs": n_convs, "growth": growth, "scale": found,
              "n_colors": n_colors}
    return instantiate(RDN, config, source)


ARCHITECTURE = Architecture(
    name="RDN", layouts=(LAYOUT,), build=build,
    role=lambda name, config: ("fixed" if name.endswith(".LFF") else "adaptive")
    if re.fullmatch(r"RDBs\.\d+\.(convs\.\d+\.conv\.0|LFF)|GFF\.[01]", name) else "outer",
    features=lambda name, module: isinstance(module, RDB),
)
