"""Where the quantization points go, by rules on the graph, one rule set per inference engine: the same plan
drives the PyTorch simulation (quant/qgraph.py) and the graph writer (export/qdq.py), so both have exactly the
points the deployed graph of that engine has.

ONNX Runtime ("onnxruntime", the plan calibration tunes) - what it fuses on a CPU:
1. Quantized convs: adaptive and fixed ones always; outer ones only with full quantization.
2. A quantized op's output (a conv's, or an add's that reads a quantized tensor) is quantized once, at 8 bits,
   after a ReLU that is its only consumer (zero point 0: ORT drops the ReLU) - unless its only consumer is a
   quantized conv, whose input point then is this output's QuantizeLinear.
3. A quantized conv's input gets its own point at the conv's bits (adaptive: b_base + b_I + b_L; fixed:
   b_base), except an 8-bit input that is already quantized (directly or through pixel moves / ReLU), which it
   reads as it is. After a ReLU the point is unsigned.
4. A float input of a quantized add gets an 8-bit point, on the tensor before any pixel moves (which then run
   on uint8), so that the add runs as QLinearAdd.

OpenVINO ("openvino") - what its low-precision transformations fold on a CPU: rules 1, 2 and 4, and rule 3 except
that a conv at fewer than 8 bits (or adaptive) that is the only quantized conv reading an already quantized
tensor does not requantize it: that tensor's point takes the conv's bits instead (EDSR's residual stream is
held at the next block's input bits). OpenVINO fuses each point into the op that produces the tensor, but a
requantization of an 8-bit tensor stays a FakeQuantize in f32 plus a Convert (16 of them: 0.76 s -> 0.59 s for
the bundled EDSR's 480x270 frame at one thread on an AMX Xeon).

Every point of the OpenVINO plan has a counterpart in the ONNX Runtime plan (`counterpart`: the same point, or
for a merged one the conv's own input point, whose range was tuned for those bits), so one calibration yields
the ranges of both.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..network.graph import MOVES, Graph

FIXED_8 = 8
ENGINES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class Point:
    name: str  # "<node>.out" on a node's output, "<conv>.in" on a conv's input
    node: str  # the node whose output, or the conv whose input, it quantizes
    on_input: bool
    bits: str | int  # "adaptive", "fixed" (b_base) or 8
    unsigned: bool  # after a ReLU: lower bound 0, zero point 0
    conv: str = ""  # the conv whose bits an output point takes (OpenVINO's merged points); "": its own node

    @property
    def bits_of(self) -> str:
        """The conv whose layer factor sets an adaptive point's bits."""
        return self.conv or self.node


@dataclass
class Plan:
    points: dict[str, Point] = field(default_factory=dict)  # in graph order
    outputs: dict[str, Point] = field(default_factory=dict)  # node -> the point on its output
    inputs: dict[str, Point] = field(default_factory=dict)  # conv -> the point on its input
    quantized: set[str] = field(default_factory=set)  # convs that run on integers
    adaptive: list[str] = field(default_factory=list)  # adaptive convs, in graph order (one layer factor each)

    def add(self, point: Point) -> None:
        self.points[point.name] = point
        (self.inputs if point.on_input else self.outputs)[point.node] = point


def plan_points(graph: Graph, full_quant: bool, a_bits: int, engine: str = "onnxruntime") -> Plan:
    if engine not in ENGINES:
        raise ValueError(f"no quantization rules for engine {engine!r}")
    plan = Plan()
    nodes = graph.nodes
    plan.quantized = {c.name for c in graph.convs() if c.role in ("adaptive", "fixed") or full_quant}
    plan.adaptive = [c.name for c in graph.convs() if c.role == "adaptive" and c.name in plan.quantized]

    def conv_bits(name: str) -> str | int:
        role = nodes[name].role
        return "adaptive" if role == "adaptive" else "fixed" if role == "fixed" and a_bits < 8 else FIXED_8

    # which tensors hold values a quantized op produced (rule 2's "reads a quantized tensor")
    from_quantized: set[str] = set()
    for n in nodes.values():
        if n.name in plan.quantized or (n.op in ("relu", *MOVES, "add") and
                                        any(i in from_quantized for i in n.inputs)):
            from_quantized.add(n.name)
    quantized_adds = {n.name for n in nodes.values() if n.op == "add" and n.name in from_quantized}

    def absorbed_relu(name: str) -> str:
        user = graph.sole_consumer(name)
        return user.name if user is not None and user.op == "relu" else name

    def feeds_only_a_quantized_conv(name: str) -> bool:
        user = graph.sole_consumer(name)
        return user is not None and user.op == "conv" and user.name in plan.quantized

    wanted: dict[str, Point] = {}  # node -> output point, placed in graph order below
    for name in [*sorted(plan.quantized, key=list(nodes).index), *quantized_adds]:
        out = absorbed_relu(name)
        if not feeds_only_a_quantized_conv(out):
            wanted[out] = Point(f"{out}.out", out, False, FIXED_8, nodes[out].op == "relu")
    for add_name in quantized_adds:
        for i in nodes[add_name].inputs:
            source = i
            while nodes[source].op in MOVES:
                source = nodes[source].inputs[0]
            if source not in from_quantized and source not in wanted:
                wanted[source] = Point(f"{source}.out", source, False, FIXED_8, nodes[source].op == "relu")

    def quantized_value(name: str) -> bool:
        """Whether the node's output is on an 8-bit grid already (a point, or moves / ReLU of one)."""
        while name not in wanted:
            if nodes[name].op not in ("relu", *MOVES):
                return False
            name = nodes[name].inputs[0]
        return True

    def after_relu(name: str) -> bool:
        while nodes[name].op in MOVES:
            name = nodes[name].inputs[0]
        return nodes[name].op == "relu" or (name in wanted and wanted[name].unsigned)

    def point_read(name: str) -> str | None:
        """The node whose output point a conv reading `name` reads (through ReLUs and pixel moves), or None."""
        while name not in wanted:
            if nodes[name].op not in ("relu", *MOVES):
                return None
            name = nodes[name].inputs[0]
        return name

    readers: dict[str, list[str]] = {}  # tensor with a point -> the quantized convs that read it
    for c in plan.quantized:
        owner = point_read(nodes[c].inputs[0])
        if owner is not None:
            readers.setdefault(owner, []).append(c)

    for n in nodes.values():
        if n.op == "conv" and n.name in plan.quantized:
            bits, source = conv_bits(n.name), n.inputs[0]
            owner = point_read(source)
            if engine == "openvino" and bits != FIXED_8 and owner is not None and readers[owner] == [n.name]:
                merged = replace(wanted[owner], bits=bits, conv=n.name)
                wanted[owner] = plan.points[merged.name] = plan.outputs[owner] = merged
            elif bits != FIXED_8 or not quantized_value(source):
                plan.add(Point(f"{n.name}.in", n.name, True, bits, after_relu(source)))
        if n.name in wanted:
            plan.add(wanted[n.name])
    return plan


def counterpart(plan: Plan, point: Point) -> Point:
    """The point of the ONNX Runtime `plan` whose range another engine's `point` takes: the same point, or for a
    point merged with a conv's bits, that conv's own input point (its range was tuned for those bits)."""
    found = plan.inputs.get(point.conv) if point.conv else plan.points.get(point.name)
    if found is None or found.bits != point.bits:
        raise ValueError(f"{point.name}: no point of the calibrated plan quantizes that tensor at {point.bits!r} bits")
    return found
