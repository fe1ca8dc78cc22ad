"""Pretrained SR networks: each architecture's module definition and checkpoint layouts, and the one loader that
recognises a checkpoint's layout, binds it strictly and captures the network as a graph."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.errors import UserError

from ..network.capture import capture
from ..network.graph import Graph
from . import carn, edsr, rdn, srresnet, srvgg
from .architecture import Architecture, Layout
from .checkpoint import grouped_convs, load_strict, read_state_dict, sha256_file, shown

ARCHITECTURES: tuple[Architecture, ...] = (edsr.ARCHITECTURE, rdn.ARCHITECTURE, srresnet.ARCHITECTURE,
                                           carn.ARCHITECTURE, carn.MOBILE, srvgg.ARCHITECTURE)


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


def match_layout(state: dict[str, torch.Tensor], source: str, scale: int | None = None
                 ) -> tuple[Architecture, Layout]:
    """The layout every key of `state` belongs to; else say why not: no architecture has any of its keys, or
    the closest layout with what differs (keys it lacks or has beyond, grouped convs)."""
    scored = []
    for arch in ARCHITECTURES:
        for layout in arch.layouts:
            unmatched = [k for k in state if not layout.matches(k)]
            absent = layout.missing(state)
            if not unmatched and not absent:
                return arch, layout
            scored.append((len(state) - len(unmatched), arch, layout, unmatched, absent))
    hits, arch, layout, unmatched, absent = max(scored, key=lambda s: s[0] - len(s[4]))
    names = ", ".join(a.name for a in ARCHITECTURES)
    if hits == 0:
        raise UserError(f"{source}: not a checkpoint of a supported architecture ({names}): none of its {len(state)} "
                        f"keys belongs to one (it has {shown(sorted(state), 4)})")
    told = ([f"keys it has beyond {arch.name}: {shown(_folded(unmatched), 4)}"] if unmatched else []) + \
        ([f"keys it lacks: {shown(absent, 4)}"] if absent else []) + \
        _grouped({k: v for k, v in state.items() if k not in unmatched}, arch, layout, source, scale)
    raise UserError(f"{source}: not a known checkpoint layout; closest is {arch.name} ({layout.name}: "
                    f"{hits} of {len(state)} keys match); " + "; ".join(told))


def _folded(keys: list[str]) -> list[str]:
    """Keys with the numbers that vary among them folded (b1.b1.body.4.weight, b2.b1.body.4.weight, ... ->
    b*.b*.body.4.weight): an extra layer in every block reads as one line."""
    groups: dict[str, list[list[str]]] = {}
    for key in keys:
        groups.setdefault(re.sub(r"\d+", "#", key), []).append(re.findall(r"\d+", key))
    out = []
    for pattern, numbers in groups.items():
        parts = iter("*" if len({n[i] for n in numbers}) > 1 else numbers[0][i] for i in range(len(numbers[0])))
        out.append(re.sub("#", lambda _: next(parts), pattern))
    return out


def _grouped(matched: dict[str, torch.Tensor], arch: Architecture, layout: Layout, source: str,
             scale: int | None) -> list[str]:
    """Grouped convolutions among the keys that do match the closest layout, where its module has dense ones."""
    renamed = {new: v for k, v in matched.items() if (new := layout.rename(k)) is not None}
    for s in (scale,) if scale else (None, 2, 3, 4):
        try:
            return grouped_convs(renamed, arch.build(renamed, source, s)[0].state_dict())
        except (UserError, KeyError, IndexError, ValueError, RuntimeError):
            continue
    return []


def load_network(path: str | Path, scale: int | None = None) -> Network:
    """Read, recognise, strictly bind and capture a checkpoint. `scale` picks one scale of a multi-scale
    checkpoint and must agree with a single-scale one."""
    path = Path(path)
    source = str(path)
    state = read_state_dict(path)
    arch, layout = match_layout(state, source, scale)
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
