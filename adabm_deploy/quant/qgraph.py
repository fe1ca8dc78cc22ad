"""The captured graph run with the quantization points of the deployed INT8 graph, so PyTorch computes what
ONNX Runtime will: the calibration's simulation, and (with its quantizers bypassed) the FP32 teacher.

Points come from quant/points.py; a quantized conv runs in the integer domain (quant/arith.py); every other
op is the float op of network/graph.py on fake-quantized values. A value keeps its quantization scale through
ReLUs and pixel moves, which leave it on its grid.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..network.graph import MOVES, Graph, Node, apply
from .arith import MAX_BITS, MIN_BITS, bias_codes, integer_conv
from .bitmap import ImageToBit, LayerToBit, ste
from .points import FIXED_8, Point, counterpart, plan_points
from .quantizers import ActQuantizer, WeightQuantizer


class QConv(nn.Module):
    """A graph conv's frozen weights with a weight quantizer; a float conv when it is not quantized."""

    def __init__(self, node: Node, w_bits: int | None, per_channel: bool):
        super().__init__()
        self.name = node.name
        self.groups = node.groups
        self.register_buffer("weight", node.weight.detach().clone().float())
        self.register_buffer("bias", node.bias.detach().clone().float())
        self.wq = WeightQuantizer(self.weight, w_bits, per_channel) if w_bits else None

    def integers(self, x_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(int8 weight codes, per-output-channel weight scale, int32 bias codes) for an input at x_scale: what
        the exported QLinearConv holds."""
        w_scale = self.wq.scale().expand(self.weight.shape[0])
        return self.wq.codes(self.weight), w_scale, bias_codes(self.bias, x_scale.reshape(1, 1) * w_scale[None])[0]

    def forward(self, x: torch.Tensor, x_scale: torch.Tensor | None) -> torch.Tensor:
        pad = self.weight.shape[-1] // 2
        if self.wq is None or x_scale is None:
            return nn.functional.conv2d(x, self.weight, self.bias, padding=pad, groups=self.groups)
        return integer_conv(x, x_scale, self.wq.codes(self.weight), self.wq.scale(), self.bias, self.groups)


class QuantGraph(nn.Module):
    def __init__(self, graph: Graph, w_bits: int, a_bits: int, full_quant: bool, per_channel: bool = False,
                 engine: str = "onnxruntime"):
        """engine: whose quantization rules place the points (quant/points.py); calibration tunes the ONNX
        Runtime plan, and for_engine derives another engine's from it."""
        super().__init__()
        self.graph = graph
        self.w_bits, self.a_bits, self.full_quant, self.per_channel = w_bits, a_bits, full_quant, per_channel
        self.engine = engine
        self.plan = plan_points(graph, full_quant, a_bits, engine)
        convs = [QConv(n, (w_bits if n.role != "outer" else 8) if n.name in self.plan.quantized else None,
                       per_channel) for n in graph.convs()]
        self.convs = nn.ModuleList(convs)
        self.conv = {c.name: c for c in convs}
        quantizers = [ActQuantizer(p.name, unsigned=p.unsigned, adaptive=p.bits == "adaptive")
                      for p in self.plan.points.values()]
        self.quantizers = nn.ModuleList(quantizers)
        self.quantizer = {q.name: q for q in quantizers}
        self.layer_of = {conv: k for k, conv in enumerate(self.plan.adaptive)}
        self.features = set(graph.features)
        self.image2bit = ImageToBit()
        self.layer2bit = LayerToBit(len(self.plan.adaptive))
        # per image-wise factor (-1, 0, +1), an offset per output colour that cancels the variant's mean cast
        # against the FP32 output (set after fine-tuning, fidelity.correction_for); zero until then
        self.register_buffer("correction", torch.zeros(3, graph.n_colors))
        self.adaptive_bits = True  # False: static b_base everywhere (MinMax / Percentile baselines)
        self.quant_enabled = True
        self.requires_grad_(False)

    @property
    def scale(self) -> int:
        return self.graph.scale

    def for_engine(self, engine: str) -> QuantGraph:
        """This calibration simulated with another engine's quantization points: the same weight clips, bit
        mappings and thresholds, each point's range taken from its counterpart in this plan (quant/points.py)."""
        if engine == self.engine:
            return self
        other = QuantGraph(self.graph, self.w_bits, self.a_bits, self.full_quant, self.per_channel, engine)
        other.adaptive_bits = self.adaptive_bits
        with torch.no_grad():
            for name, q in other.quantizer.items():
                q.set_bounds(*self.quantizer[counterpart(self.plan, other.plan.points[name]).name]
                             .bound_values())
            for conv in other.qconvs():
                conv.wq.clip.copy_(self.conv[conv.name].wq.clip)
            other.correction.copy_(self.correction)
            other.layer2bit.load_state_dict(self.layer2bit.state_dict())
            other.image2bit.load_state_dict(self.image2bit.state_dict())
        return other

    # -- the set of quantization points -------------------------------------------------------------------
    def act_quantizers(self) -> list[ActQuantizer]:
        return list(self.quantizers)

    def adaptive_quantizers(self) -> list[ActQuantizer]:
        """The input point of each adaptive conv, in layer-factor order."""
        return [self.quantizer[self.plan.inputs[conv].name] for conv in self.plan.adaptive]

    def qconvs(self) -> list[QConv]:
        return [c for c in self.convs if c.wq is not None]

    def point_bits(self, point: Point, image_factor: int) -> int:
        """The bit-width of a point in the exported variant for image-wise factor -1, 0 or +1."""
        if point.bits == "adaptive":
            return self.variant_bits(image_factor)[self.layer_of[point.bits_of]]
        return self.a_bits if point.bits == "fixed" else FIXED_8

    @contextmanager
    def fp_mode(self) -> Iterator[None]:
        """Quantizers bypassed: the module is the FP32 teacher."""
        previous = self.quant_enabled
        self.quant_enabled = False
        try:
            yield
        finally:
            self.quant_enabled = previous

    # -- bits ---------------------------------------------------------------------------------------------
    def bits(self, complexity: torch.Tensor) -> torch.Tensor:
        """[N, adaptive convs] activation bits b_base + b_I(image) + b_L(layer), clamped to 2..8 (STE)."""
        n = complexity.shape[0]
        if not self.adaptive_bits:
            return torch.full((n, len(self.layer2bit.m)), float(self.a_bits), device=complexity.device)
        raw = self.a_bits + self.image2bit(complexity)[:, None] + self.layer2bit()[None, :]
        return ste(raw, raw.clamp(MIN_BITS, MAX_BITS))

    def variant_bits(self, image_factor: int) -> list[int]:
        """Per-adaptive-conv bits of the exported variant for image-wise factor -1, 0 or +1."""
        factors = self.layer2bit.factors() if self.adaptive_bits else [0] * len(self.layer2bit.m)
        shift = image_factor if self.adaptive_bits else 0
        return [min(MAX_BITS, max(MIN_BITS, self.a_bits + shift + f)) for f in factors]

    # -- forward ------------------------------------------------------------------------------------------
    def _point(self, point: Point, x: torch.Tensor, bits: torch.Tensor | None, observe: dict | None):
        """Apply one quantization point; returns (tensor, its scale, or None in FP mode)."""
        q = self.quantizer[point.name]
        if not self.quant_enabled:
            if observe is not None:
                q.observe(x, keep_sample=observe.get(q.name, 0))
            return x, None
        if point.bits == "adaptive":
            return q.quantize(x, bits[:, self.layer_of[point.bits_of]])
        return q.quantize(x, float(self.a_bits if point.bits == "fixed" else FIXED_8))

    def forward(self, x: torch.Tensor, complexity: torch.Tensor | None = None,
                features: list | None = None, observe: dict | None = None, taps: dict | None = None) -> torch.Tensor:
        """x: [N, C, H, W] RGB 0..255; complexity: [N] gradient densities (needed when quantizing).
        `features` collects the feature blocks' outputs (for the SKT loss); `observe` (in fp_mode) collects FP
        statistics, mapping quantizer names to the number of activation values to keep as a sample; `taps`
        collects every node's value by name (for per-layer error reports)."""
        bits = None
        if self.quant_enabled:
            if complexity is None:
                raise ValueError("complexity is required for the quantized forward pass")
            bits = self.bits(complexity)
        plan = self.plan
        values: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for node in self.graph.nodes.values():
            if node.op == "input":
                value = (x, None)
            elif node.op == "conv":
                v, s = values[node.inputs[0]]
                if node.name in plan.inputs:
                    v, s = self._point(plan.inputs[node.name], v, bits, observe)
                value = (self.conv[node.name](v, s), None)
            else:
                args = [values[i][0] for i in node.inputs]
                kept = values[node.inputs[0]][1] if node.op in ("relu", *MOVES) else None
                value = (apply(node, args), kept)
            if node.name in plan.outputs:
                value = self._point(plan.outputs[node.name], value[0], bits, observe)
            values[node.name] = value
            if taps is not None:
                taps[node.name] = value[0]
            if features is not None and node.name in self.features:
                features.append(value[0])
        y = values[self.graph.output][0]
        if not self.quant_enabled:
            return y
        factor = self.image2bit(complexity).detach().round().long() if self.adaptive_bits else \
            torch.zeros(len(complexity), dtype=torch.long, device=y.device)
        return y + self.correction[factor + 1][:, :, None, None]
