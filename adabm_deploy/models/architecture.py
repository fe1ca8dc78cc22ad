"""What an architecture contributes, and all it contributes: its module definition, the checkpoint layouts it
loads, and which convs AdaBM adapts. Calibration, export and the runtime work on the captured graph only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

# A conv's part in the quantized network. adaptive: b_base + image + layer factor (AdaBM's body convs);
# fixed: b_base bits, never adapted (AdaBM's non-adaptive 1x1 fusion convs); outer: 8 bits in full
# quantization, float in body-only (head, upsampler, tail).
ROLES = ("adaptive", "fixed", "outer")


@dataclass(frozen=True)
class Layout:
    """One key layout of an architecture's checkpoints: every key matches one of `keys`; `rename` maps a key
    to the module's own (None: a key the layout has but the network does not use, dropped on purpose)."""
    name: str
    keys: tuple[str, ...]  # regular expressions
    required: tuple[str, ...]  # keys only this layout has together, which every checkpoint of it holds
    rename: Callable[[str], str | None] = lambda key: key

    def matches(self, key: str) -> bool:
        return any(re.fullmatch(p, key) for p in self.keys)

    def missing(self, state: dict) -> list[str]:
        return [k for k in self.required if k not in state]


@dataclass(frozen=True)
class Architecture:
    name: str
    layouts: tuple[Layout, ...]
    # (state in the module's own keys, source for messages, scale asked or None) -> (module, config)
    build: Callable[[dict[str, torch.Tensor], str, int | None], tuple[nn.Module, dict]]
    role: Callable[[str, dict], str]  # (conv module name, config) -> one of ROLES
    features: Callable[[str, nn.Module], bool]  # modules whose outputs the SKT loss compares (AdaBM: the blocks)
    pixel_range: float = 255.0  # the network's own input / output range (1.0: RGB in 0..1)
    notes: tuple[str, ...] = field(default=())


def conv_count(state: dict[str, torch.Tensor], pattern: str) -> int:
    """How many distinct indices the first group of `pattern` takes among the keys."""
    return len({m.group(1) for m in map(re.compile(pattern).fullmatch, state) if m})


def pixel_shuffle_factor(out_channels: int, channels: int, source: str, key: str) -> int:
    """r where a conv of `out_channels` feeds PixelShuffle(r) down to `channels`."""
    from runtime.errors import UserError
    r = round((out_channels / channels) ** 0.5)
    if r < 2 or r * r * channels != out_channels:
        raise UserError(f"{source}: {key} has {out_channels} outputs, not a pixel-shuffle multiple of {channels}")
    return r


def instantiate(cls, config: dict, source: str) -> tuple[nn.Module, dict]:
    """cls(**config) with the config, or one line on what the checkpoint asks that the architecture lacks."""
    from runtime.errors import UserError
    try:
        return cls(**config), config
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None
