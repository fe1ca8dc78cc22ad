"""The one description of a network: a small graph of the ops super-resolution convnets are made of.

Captured once from the FP32 PyTorch model (network/capture.py); the quantization points, the PyTorch
simulation and the QDQ ONNX writer are all derived from it. Ops, and what `apply` computes for them:
  input          the LR image, NCHW RGB 0..255
  conv           2-D conv, stride 1, "same" zero padding, `groups` groups (batch norms and constant scales
                 already folded in)
  relu, prelu, leaky_relu
  add            two tensors
  concat         along channels
  pixel_shuffle  factor r
  upsample       nearest neighbour, factor r
  affine         per-channel x * gain + shift (mean shifts, the network's own pixel range)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

OPS = ("input", "conv", "relu", "prelu", "leaky_relu", "add", "concat", "pixel_shuffle", "upsample", "affine")
ACTIVATIONS = ("relu", "prelu", "leaky_relu")
MOVES = ("pixel_shuffle", "upsample")  # rearrange values without computing new ones


@dataclass
class Node:
    name: str
    op: str
    inputs: tuple[str, ...] = ()
    weight: torch.Tensor | None = None  # conv [Co, Ci, k, k]; prelu slopes [C] or [1]; affine gain [C]
    bias: torch.Tensor | None = None  # conv [Co]; affine shift [C]
    factor: int = 0  # pixel_shuffle / upsample
    slope: float = 0.0  # leaky_relu
    role: str = ""  # conv: adaptive / fixed / outer (models.architecture.ROLES)
    groups: int = 1  # conv: input and output channels split into this many independent groups
    module: str = ""  # the module it was captured from, for messages


@dataclass
class Graph:
    nodes: dict[str, Node]  # in execution order
    output: str
    features: list[str] = field(default_factory=list)  # nodes whose outputs the SKT loss compares
    n_colors: int = 3
    scale: int = 1

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def convs(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.op == "conv"]

    def sole_consumer(self, name: str) -> Node | None:
        users = self.consumers(name)
        return users[0] if len(users) == 1 and name != self.output else None


def apply(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """What `node` computes in float (a conv here is the FP32 conv; the quantized one is in quant.qgraph)."""
    op = node.op
    if op == "conv":
        return F.conv2d(args[0], node.weight, node.bias, padding=node.weight.shape[-1] // 2, groups=node.groups)
    if op == "relu":
        return F.relu(args[0])
    if op == "prelu":
        return F.prelu(args[0], node.weight)
    if op == "leaky_relu":
        return F.leaky_relu(args[0], node.slope)
    if op == "add":
        return args[0] + args[1]
    if op == "concat":
        return torch.cat(args, dim=1)
    if op == "pixel_shuffle":
        return F.pixel_shuffle(args[0], node.factor)
    if op == "upsample":
        return F.interpolate(args[0], scale_factor=node.factor, mode="nearest")
    if op == "affine":
        return args[0] * node.weight.view(1, -1, 1, 1) + node.bias.view(1, -1, 1, 1)
    raise ValueError(f"{node.name}: no float semantics for op {op}")


def run(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    """The FP32 network: every node in order."""
    values: dict[str, torch.Tensor] = {}
    for node in graph.nodes.values():
        values[node.name] = x if node.op == "input" else apply(node, [values[i] for i in node.inputs])
    return values[graph.output]
