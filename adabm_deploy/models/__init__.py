"""Pretrained SR networks: each architecture's module definition and checkpoint layouts, and the one loader that
recognises a checkpoint's layout, binds it strictly and captures the network as a graph."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.errors import UserError

from ..network.capture import capture
from ..network.graph import Graph
from . import carn, edsr, rdn, srresnet, srvgg
from .architecture import Architecture, Layout
from .checkpoint import load_strict, read_state_dict, sha256_file, shown

ARCHITECTURES: tuple[Architecture, ...] = (edsr.ARCHITECTURE, rdn.ARCHITECTURE, srresnet.ARCHITECTURE,
                                           carn.ARCHITECTURE, srvgg.ARCHITECTURE)


@dataclass
class Network:
    """A loaded FP32 network: the architecture, the layout its checkpoint had, the config read from its shapes,
    the module (in the original layout) and the captured graph everything else works on."""
    architecture: Architecture
    layout: str
    config: dict
    module: torch.nn.Module
    graph: Graph
    checkpoint: Path
    sha256: str

    @property
    def scale(self) -> int:
        return self.config["scale"]

    def describe(self) -> dict:
        return {"file": self.checkpoint.name, "sha256": self.sha256, "architecture": self.architecture.name,
                "layout": self.layout, "config": self.config}


def match_layout(state: dict[str, torch.Tensor], source: str) -> tuple[Architecture, Layout]:
    """The layout every key of `state` belongs to; else name the closest one and the keys it does not have."""
    scored = []
    for arch in ARCHITECTURES:
        for layout in arch.layouts:
            unmatched = [k for k in state if not layout.matches(k)]
            absent = layout.missing(state)
            if not unmatched and not absent:
                return arch, layout
            scored.append((len(state) - len(unmatched) - len(absent), arch, layout, unmatched, absent))
    hits, arch, layout, unmatched, absent = max(scored, key=lambda s: s[0])
    told = ([f"keys that do not match: {shown(unmatched, 4)}"] if unmatched else []) + \
        ([f"keys it lacks: {shown(absent, 4)}"] if absent else [])
    raise UserError(f"{source}: not a known checkpoint layout; closest is {arch.name} ({layout.name}: "
                    f"{len(state) - len(unmatched)} of {len(state)} keys match); " + "; ".join(told))


def load_network(path: str | Path, scale: int | None = None) -> Network:
    """Read, recognise, strictly bind and capture a checkpoint. `scale` picks one scale of a multi-scale
    checkpoint and must agree with a single-scale one."""
    path = Path(path)
    source = str(path)
    state = read_state_dict(path)
    arch, layout = match_layout(state, source)
    renamed = {new: v for k, v in state.items() if (new := layout.rename(k)) is not None}
    module, config = arch.build(renamed, source, scale)
    if scale is not None and config["scale"] != scale:
        raise UserError(f"{source}: the model is x{config['scale']}, not x{scale}")
    load_strict(module, renamed, source, f"{arch.name} ({layout.name})")
    module.eval().requires_grad_(False)
    graph = capture(module, source, lambda name: arch.role(name, config), arch.features, arch.pixel_range,
                    config["scale"], config.get("n_colors", 3))
    return Network(arch, layout.name, config, module, graph, path, sha256_file(path))


__all__ = ["ARCHITECTURES", "Network", "load_network", "match_layout", "sha256_file"]
