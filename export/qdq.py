"""The QDQ ONNX writer: walks the captured graph with the quantization points of quant/points.py, taking every
weight code, bias code and scale from the calibrated simulation (quant/qgraph.py), so the file holds what
PyTorch computed.

uint8 activations with per-tensor scale and integer zero point, b < 8 bits as Clip(0, 2^b - 1) on the uint8
tensor (a float Clip before QuantizeLinear would make ONNX Runtime fall back to FP32 convs), int8 symmetric
weights, int32 bias at scale x_scale * w_scale, ReLU outputs at zero point 0 (so ORT folds the ReLU), one
QuantizeLinear per conv output. Rules for ORT's CPU kernels, on any graph:
- a pixel shuffle of a conv's quantized output runs on the uint8 tensor as channels-last Reshape / Transpose
  (pixel_shuffle_nhwc), the conv's output channels laid out to match (shuffle_layout);
- a 3x3 conv of fewer than 16 outputs reading a pixel shuffle (the last conv at output resolution, which would
  miss the fast kernel) is rewritten exactly as a 2x2 conv before the shuffle (subpixel_conv_weights);
- requantizing a dequantized tensor adds a dequantized zero first, so ORT runs it as one uint8 QLinearAdd.
- a quantized grouped conv is written as the equal dense conv (block_diagonal), which ORT runs faster.

OpenVINO's form (the graph of a QuantGraph with OpenVINO's points) keeps DepthToSpace shuffles (channels-last
Transposes are 2-3x slower there) but takes the sub-pixel tail, the 2x2 conv before a DepthToSpace whose phases
are rotated one position and cropped back (it spares the 64-channel tensor at output resolution and its
shuffle: 15-19% of the frame's time on an AMX Xeon), with b < 8 bits as a float Clip to the b-bit range before
QuantizeLinear and nothing between QuantizeLinear and DequantizeLinear: the frontend folds each pair into a
256-level FakeQuantize and the CPU plugin folds the Clip into its crop range, so every quantized conv runs u8 x
i8 with the requantization fused. The same integers as Clip on uint8: both bounds lie on the quantization grid.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from adabm_deploy.network.graph import Graph, Node
from adabm_deploy.quant.points import Point
from adabm_deploy.quant.qgraph import QuantGraph

END = np.iinfo(np.int64).max  # Slice end: to the end of the axis
FAST_ALIGN, FAST_MIN = 4, 16  # ORT's symmetric int8 conv kernel: output channels a multiple of 4, at least 16


def padded_group(channels: int, r: int) -> int:
    """Channels per sub-pixel position after padding, so that the r*r groups together take the fast kernel."""
    p = -(-channels // FAST_ALIGN) * FAST_ALIGN
    while r * r * p < FAST_MIN:
        p += FAST_ALIGN
    return p


def shuffle_layout(channels: int, r: int, rotate: int = 0) -> np.ndarray:
    """For each output channel of the laid-out conv, its PixelShuffle channel c*r*r + a*r + b, or -1 (zero filter).

    Laid out as (a', b', c) with c fastest, each group padded to padded_group(channels, r) channels, so that the
    shuffle is a move of whole rows in channels-last memory (pixel_shuffle_nhwc). Shuffle position a' holds
    phase (a' - rotate) mod r (and likewise b')."""
    p = padded_group(channels, r)
    phase = (np.arange(r)[:, None] - rotate) % r
    groups = (phase * r + phase.T).reshape(-1)  # position a'*r + b' -> phase a*r + b
    order = np.full((r * r, p), -1)
    order[:, :channels] = np.arange(channels * r * r).reshape(channels, r * r).T[groups]
    return order.reshape(-1)


def phase_shift(a: int, r: int) -> int:
    """Output-grid shift of sub-pixel phase a in the 2x2 rewrite: phase r-1 reads low-resolution offsets 0 and
    +1, every other phase offsets -1 and 0 (or only 0)."""
    return int(a == r - 1)


def subpixel_conv_weights(weight: np.ndarray, bias: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact rewrite of conv3x3(pixel_shuffle(z, r)) (pads 1) as a 2x2 conv on z (pads 1: an (H+1) x (W+1) grid).

    A 3x3 tap of output phase (a, b) reads z at low-resolution offset floor((a+dy)/r), which spans only two
    values per phase, so a 2x2 kernel holds every tap: 2.25x fewer multiply-accumulates than a 3x3 kernel on
    z. Output channel k*r*r + a*r + b holds phase (a, b) of original output k, at grid position
    (i + phase_shift(a), j + phase_shift(b)) for high-resolution pixel (r*i + a, r*j + b); an original tap
    (dy, dx) reads input channel c*r*r + ((a+dy) mod r)*r + ((b+dx) mod r)."""
    c_out, c_in = weight.shape[:2]
    new_w = np.zeros((c_out * r * r, c_in * r * r, 2, 2), dtype=weight.dtype)
    for k in range(c_out):
        for a in range(r):
            for b in range(r):
                o = k * r * r + a * r + b
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ay, bx = a + dy, b + dx
                        src = np.arange(c_in) * r * r + (ay % r) * r + (bx % r)
                        new_w[o, src, ay // r + 1 - phase_shift(a, r), bx // r + 1 - phase_shift(b, r)] += \
                            weight[k, :, dy + 1, dx + 1]
    return new_w, np.repeat(bias, r * r)



def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv's weight [Co, Ci/g, k, k] as the equal dense one [Co, Ci, k, k], zero outside each output
    channel's own group."""
    c_out, per_group = weight.shape[:2]
    dense = np.zeros((c_out, per_group * groups, *weight.shape[2:]), weight.dtype)
    for o in range(c_out):
        g = o // (c_out // groups)
        dense[o, g * per_group:(g + 1) * per_group] = weight[o]
    return dense


def rotated_crd_order(channels: int, r: int) -> np.ndarray:
    """For each output channel of the sub-pixel conv in DepthToSpace (CRD) order, its channel in
    subpixel_conv_weights' order: position c*r*r + a'*r + b' holds phase ((a' - 1) mod r, (b' - 1) mod r) of
    output c, the phases rotated one shuffle position as GraphWriter.conv explains."""
    phase = (np.arange(r) - 1) % r
    return (np.arange(channels)[:, None, None] * r * r + phase[None, :, None] * r + phase[None, None, :]).reshape(-1)


def subpixel_convs(graph: Graph) -> dict[str, Node]:
    """conv -> the pixel shuffle it reads, for ungrouped 3x3 convs of few outputs whose shuffle feeds only them
    (the sub-pixel rewrite's condition)."""
    found = {}
    for conv in graph.convs():
        shuffle = graph.nodes[conv.inputs[0]]
        after = graph.sole_consumer(conv.name)
        if (conv.weight.shape[-1] == 3 and conv.weight.shape[0] < FAST_MIN and conv.groups == 1
                and shuffle.op == "pixel_shuffle"
                and graph.sole_consumer(shuffle.name) is conv and not (after and after.op == "relu")):
            found[conv.name] = shuffle
    return found


class GraphWriter:
    def __init__(self, qm: QuantGraph, image_factor: int | None, rewrite: bool = True):
        """image_factor None: the FP32 graph; -1 / 0 / +1: the INT8 variant for that image-wise bit factor.
        rewrite takes the sub-pixel tail and, in ONNX Runtime's form, channels-last shuffles on uint8
        (OpenVINO's keeps DepthToSpace: channels-last Transposes are 2-3x slower there); False keeps every pixel
        shuffle a DepthToSpace (on uint8 between Q and DQ where quantized) and every conv as captured: the graph
        a user's own export has."""
        self.qm, self.graph, self.plan = qm, qm.graph, qm.plan
        self.clip_before_q = qm.engine == "openvino"
        self.nhwc = rewrite and qm.engine == "onnxruntime"  # shuffles as channels-last Reshape / Transpose
        self.factor = image_factor
        self.quantized = image_factor is not None
        # ORT's int8 conv runs a grouped conv group by group at a fraction of its dense speed: 64 channels in 4
        # groups took 1.8x the time of the block-diagonal dense conv (4x the multiply-accumulates) on an AMX
        # Xeon; OpenVINO runs both alike and keeps the groups
        self.dense_groups = self.quantized and qm.engine == "onnxruntime"
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.dequantized: set[str] = set()  # outputs of an activation point's DequantizeLinear
        self.scale_of: dict[str, float] = {}  # such an output (or a move / ReLU of it) -> its scale
        self._n = 0
        self.placed: set[str] = set()  # nodes whose output point a rule already wrote
        self.subpixel = subpixel_convs(self.graph) if rewrite else {}
        self.moves = self._moves()

    # -- which rules apply where ----------------------------------------------------------------------------
    def _moves(self) -> dict[str, tuple[Node, Node]]:
        """pixel shuffle -> (the node whose output it moves, the conv whose output channels are laid out for it):
        a shuffle that is the only consumer of a conv's (or its ReLU's) output. Where that output is quantized the
        shuffle runs on uint8 between its Q and DQ (channels-last with the rewrite, else DepthToSpace); a float
        one runs channels-last with the rewrite. Not after a conv written grouped (a float one) in the channels-last
        form: its output channels cannot be laid out for it and still read their own group's inputs."""
        found = {}
        absorbed = {s.name for s in self.subpixel.values()}
        for node in self.graph.nodes.values():
            if node.op != "pixel_shuffle" or node.name in absorbed:
                continue
            source = self.graph.nodes[node.inputs[0]]
            conv = self.graph.nodes[source.inputs[0]] if source.op == "relu" else source
            if conv.op != "conv" or self.graph.sole_consumer(source.name) is not node or \
                    (conv is not source and self.graph.sole_consumer(conv.name) is not source) or \
                    (self.nhwc and self.grouped(conv)):
                continue
            quantized = self.quantized and source.name in self.plan.outputs and conv.name in self.plan.quantized
            if quantized or (self.nhwc and not self.has_point(source.name)):
                found[node.name] = (source, conv)
        return found

    def grouped(self, conv: Node) -> bool:
        """Whether the conv is written as a grouped Conv (else as the equal dense one)."""
        return conv.groups != 1 and not (self.dense_groups and conv.name in self.plan.quantized)

    def has_point(self, name: str) -> bool:
        """Whether the node's output is quantized in this graph."""
        return self.quantized and name in self.plan.outputs

    # -- helpers ----------------------------------------------------------------------------------------
    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, output: str | None = None, **attrs) -> str:
        out = output or self.name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def quant(self, x: str, point: Point, move: Callable[[str], str] | None = None) -> str:
        """QuantizeLinear -> [Clip to b bits on uint8] -> [`move`: pixels rearranged on uint8] ->
        DequantizeLinear; returns the float tensor.

        Where x is itself a dequantized tensor (a requantization), it first gets + DQ(0): the value is
        unchanged, but ORT then fuses DQ -> Add -> Q into one uint8 -> uint8 QLinearAdd pass instead of a
        DequantizeLinear and a QuantizeLinear over float."""
        bits = self.qm.point_bits(point, self.factor)
        scale, zp = self.qm.quantizer[point.name].qparams(bits)
        s = self.const(f"{point.name}.scale", np.float32(scale))
        z = self.const(f"{point.name}.zp", np.uint8(zp))
        if self.clip_before_q and bits < 8:  # the b-bit range in float, on the grid: OpenVINO folds it into its FQ
            lo, hi = (np.float32(np.float32(scale) * np.float32(level - zp)) for level in (0, 2 ** bits - 1))
            bounds = [self.const(f"{point.name}.clip_lo", lo), self.const(f"{point.name}.clip_hi", hi)]
            x = self.op("Clip", [x, *bounds], f"{point.name}.clip{bits}")
        elif x in self.dequantized and not self.clip_before_q:
            zero = self.op("DequantizeLinear", [self.const("u8.0", np.uint8(0)), self.const("one", np.float32(1)),
                                                self.const("u8.0", np.uint8(0))], f"{point.name}.zero")
            x = self.op("Add", [x, zero], f"{point.name}.requant")
        t = self.op("QuantizeLinear", [x, s, z], f"{point.name}.q")
        if bits < 8 and not self.clip_before_q:
            t = self.op("Clip", [t, self.const("u8.0", np.uint8(0)), self.const(f"u8.{2 ** bits - 1}",
                                                                               np.uint8(2 ** bits - 1))],
                        f"{point.name}.clip{bits}")
        if move is not None:
            t = move(t)
        out = self.op("DequantizeLinear", [t, s, z], f"{point.name}.dq")
        self.dequantized.add(out)
        self.scale_of[out] = scale
        return out

    def pixel_shuffle_nhwc(self, t: str, r: int, channels: int, base: str, crop: bool = False) -> str:
        """PixelShuffle(r) of a conv output laid out by `shuffle_layout`, as channels-last Reshape and Transpose;
        the result is NCHW with `channels` channels (crop: without its first and last r - 1 rows and columns).

        ONNX Runtime runs QLinearConv channels-last and would wrap a DepthToSpace in two layout Transposes
        around its own strided byte shuffle. Here the outer Transposes cancel against the layout ones, and the
        middle one moves whole rows: [N,H,W,r,r*P] -> [N,H,r,W,r*P] is [N,rH,rW,P]."""
        nhwc = self.op("Transpose", [t], f"{base}.nhwc", perm=[0, 2, 3, 1])
        split = self.op("Reshape", [nhwc, self.const("shape.split", np.array([0, 0, 0, r, -1], np.int64))],
                        f"{base}.split")
        rows = self.op("Transpose", [split], f"{base}.interleave", perm=[0, 1, 3, 2, 4])
        # [N, H, W, r*r*P] -> [N, r*H, r*W, P]
        shape = self.op("Div", [self.op("Mul", [self.op("Shape", [nhwc], f"{base}.shape"),
                                                self.const(f"shape.mul{r}", np.array([1, r, r, 1], np.int64))],
                                        f"{base}.shape_mul"),
                                self.const(f"shape.div{r}", np.array([1, 1, 1, r * r], np.int64))],
                        f"{base}.shape_out")
        y = self.op("Transpose", [self.op("Reshape", [rows, shape], f"{base}.merge")], f"{base}.nchw",
                    perm=[0, 3, 1, 2])
        if crop or padded_group(channels, r) > channels:
            c = int(crop)
            y = self.op("Slice", [y, self.const("slice.start", np.array([0, c, c], np.int64)),
                                  self.const(f"slice.end{channels}", np.array(
                                      [channels, -(r - 1) if crop else END, -(r - 1) if crop else END], np.int64)),
                                  self.const("slice.axes123", np.array([1, 2, 3], np.int64))], f"{base}.real")
        return y

    def depth_to_space_cropped(self, t: str, r: int, base: str) -> str:
        """DepthToSpace (CRD) of a sub-pixel conv laid out by rotated_crd_order, without its first row and column
        and its last r - 1: the image, back in place."""
        y = self.op("DepthToSpace", [t], f"{base}.d2s", blocksize=r, mode="CRD")
        return self.op("Slice", [y, self.const("slice.start11", np.array([1, 1], np.int64)),
                                 self.const(f"slice.end{r}", np.array([-(r - 1), -(r - 1)], np.int64)),
                                 self.const("slice.axes23", np.array([2, 3], np.int64))], f"{base}.real")

    def conv(self, x: str, node: Node, x_scale: float | None, subpixel: int = 0, shuffle: int = 0) -> str:
        """subpixel r: the exact 2x2 rewrite above; shuffle r: output channels laid out for pixel_shuffle_nhwc.

        With both, phases are rotated one shuffle position: position a' then holds phase a' - 1, which sits
        on grid row i + phase_shift = floor((r*i + a + 1) / r), so shuffling the whole (H+1) x (W+1) grid gives
        the image moved by one pixel, and cropping one pixel at the start (r - 1 at the end) gives it back."""
        qconv = self.qm.conv[node.name]
        quantized = self.quantized and node.name in self.plan.quantized
        if quantized:
            codes, w_scale, b_codes = (t.detach().numpy() for t in qconv.integers(torch.tensor(x_scale)))
            weight, bias = codes.astype(np.float32), b_codes.astype(np.float32)
            w_scale = w_scale.astype(np.float32)
        else:
            weight, bias = qconv.weight.numpy(), qconv.bias.numpy()
            w_scale = np.ones(weight.shape[0], np.float32)
        groups = node.groups if self.grouped(node) else 1
        if node.groups != groups:
            weight = block_diagonal(weight, node.groups)
        if subpixel:
            weight, bias = subpixel_conv_weights(weight, bias, subpixel)
            w_scale = np.repeat(w_scale, subpixel * subpixel)
        if shuffle and not self.nhwc:  # a DepthToSpace follows: only the phases rotate
            order = rotated_crd_order(weight.shape[0] // (shuffle * shuffle), shuffle)
            weight, bias, w_scale = weight[order], bias[order], w_scale[order]
        elif shuffle:
            order = shuffle_layout(weight.shape[0] // (shuffle * shuffle), shuffle, rotate=int(bool(subpixel)))
            # index -1 picks the appended zero filter (scale 1, bias 0)
            weight = np.concatenate([weight, np.zeros((1, *weight.shape[1:]), weight.dtype)])[order]
            bias = np.append(bias, np.float32(0))[order]
            w_scale = np.append(w_scale, np.float32(1))[order]
        pad = 1 if subpixel else weight.shape[-1] // 2
        attrs = dict(pads=[pad] * 4, **({"group": groups} if groups != 1 else {}))
        if not quantized:
            return self.op("Conv", [x, self.const(f"{node.name}.weight", weight.astype(np.float32)),
                                    self.const(f"{node.name}.bias", bias.astype(np.float32))], node.name, **attrs)
        per_axis = dict(axis=0)
        w = self.op("DequantizeLinear", [self.const(f"{node.name}.w_int8", weight.astype(np.int8)),
                                         self.const(f"{node.name}.w_scale", w_scale),
                                         self.const(f"{node.name}.w_zp", np.zeros(len(w_scale), np.int8))],
                    f"{node.name}.w", **per_axis)
        b = self.op("DequantizeLinear", [self.const(f"{node.name}.b_int32", bias.astype(np.int32)),
                                         self.const(f"{node.name}.b_scale",
                                                    (np.float32(x_scale) * w_scale).astype(np.float32)),
                                         self.const(f"{node.name}.b_zp", np.zeros(len(w_scale), np.int32))],
                    f"{node.name}.b", **per_axis)
        return self.op("Conv", [x, w, b], node.name, **attrs)

    # -- the network ------------------------------------------------------------------------------------
    def emit(self, node: Node, env: dict[str, str]) -> str | None:
        """The ONNX ops of one graph node; returns its float output (None: produced by another node's rule)."""
        graph, plan = self.graph, self.plan
        x = env.get(node.inputs[0]) if node.inputs else None
        if node.op == "input":
            return "lr"
        if node.op == "conv":
            shuffle_node = self.subpixel.get(node.name)
            r = shuffle_node.factor if shuffle_node else 0
            if shuffle_node:
                x = env[shuffle_node.inputs[0]]  # the conv reads the tensor before the shuffle
            if self.quantized and node.name in plan.inputs:
                x = self.quant(x, plan.inputs[node.name])
            moved_by = next((p for p, (_, conv) in self.moves.items() if conv is node), None)
            lay_out = graph.nodes[moved_by].factor if moved_by and self.nhwc else r
            y = self.conv(x, node, self.scale_of.get(x), subpixel=r, shuffle=lay_out)
            if not shuffle_node:
                return y
            point = plan.outputs.get(node.name) if self.quantized else None
            self.placed.add(node.name)  # its output point goes around the final shuffle, here
            assemble = (lambda t: self.pixel_shuffle_nhwc(t, r, node.weight.shape[0], node.name, crop=True)) \
                if self.nhwc else (lambda t: self.depth_to_space_cropped(t, r, node.name))
            return self.quant(y, point, move=assemble) if point else assemble(y)
        if node.op == "pixel_shuffle":
            if any(s is node for s in self.subpixel.values()):
                return None  # the rewritten conv reads the tensor before it
            if node.name in self.moves and self.has_point(node.inputs[0]):
                return env[node.name]  # written around the point of the tensor it moves
            if node.name in self.moves:
                conv = self.moves[node.name][1]
                y = self.pixel_shuffle_nhwc(x, node.factor, conv.weight.shape[0] // node.factor ** 2, node.name)
            else:
                y = self.op("DepthToSpace", [x], node.name, blocksize=node.factor, mode="CRD")
        elif node.op == "affine":
            gain = self.const(f"{node.name}.gain", node.weight.numpy().astype(np.float32).reshape(1, -1, 1, 1))
            shift = self.const(f"{node.name}.shift", node.bias.numpy().astype(np.float32).reshape(1, -1, 1, 1))
            y = self.op("Add", [self.op("Mul", [x, gain], f"{node.name}.mul"), shift], node.name)
        elif node.op == "relu":
            y = self.op("Relu", [x], node.name)
        elif node.op == "prelu":
            slope = node.weight.numpy().astype(np.float32).reshape(-1, 1, 1)
            y = self.op("PRelu", [x, self.const(f"{node.name}.slope", slope)], node.name)
        elif node.op == "leaky_relu":
            y = self.op("LeakyRelu", [x], node.name, alpha=node.slope)
        elif node.op == "add":
            y = self.op("Add", [env[i] for i in node.inputs], node.name)
        elif node.op == "concat":
            y = self.op("Concat", [env[i] for i in node.inputs], node.name, axis=1)
        elif node.op == "upsample":
            scales = self.const(f"{node.name}.scales", np.array([1, 1, node.factor, node.factor], np.float32))
            y = self.op("Resize", [x, "", scales], node.name, mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            raise ValueError(f"{node.name}: no ONNX form for op {node.op}")
        if node.op in ("relu", "pixel_shuffle", "upsample") and x in self.scale_of:
            self.scale_of[y] = self.scale_of[x]  # still on the grid of the point it came from
        return y

    def build(self, opset: int, name: str) -> onnx.ModelProto:
        env: dict[str, str] = {}
        for node in self.graph.nodes.values():
            y = self.emit(node, env)
            point = self.plan.outputs.get(node.name) if self.quantized else None
            if point is not None and node.name not in self.placed:
                moves = [p for p, (source, _) in self.moves.items() if source is node]
                if moves:  # the shuffle, its only consumer, runs between Q and DQ
                    shuffle, conv = self.graph.nodes[moves[0]], self.moves[moves[0]][1]
                    env[shuffle.name] = self.quant(y, point, move=lambda t: self.pixel_shuffle_nhwc(
                        t, shuffle.factor, conv.weight.shape[0] // shuffle.factor ** 2, point.name) if self.nhwc
                        else self.op("DepthToSpace", [t], shuffle.name, blocksize=shuffle.factor, mode="CRD"))
                    y = None
                else:
                    y = self.quant(y, point)
            if y is not None:
                env[node.name] = y
        out = env[self.graph.output]
        correction = self.qm.correction[self.factor + 1].numpy() if self.quantized else None
        if correction is not None and correction.any():  # the variant's colour-cast correction (fidelity.py)
            c = self.graph.n_colors
            out = self.op("Add", [out, self.const("output_correction", correction.reshape(1, c, 1, 1))],
                          "output_correction")
        if self.nodes[-1].output[0] == out:  # the last op writes the graph output under its name
            self.nodes[-1].output[0] = self.nodes[-1].name = "sr"
        else:
            self.op("Identity", [out], "sr", output="sr")
        c = self.graph.n_colors
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", c, "H", "W"])],
            [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", c, "SH", "SW"])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="adabm-deploy")
        model.ir_version = 9 if opset <= 20 else 10  # onnx 1.23 writes IR 14 by default; ORT refuses that
        return model


def build_model(qm: QuantGraph, image_factor: int | None, opset: int = 19, rewrite: bool = True) -> onnx.ModelProto:
    label = "fp32" if image_factor is None else f"int8_factor{image_factor:+d}"
    return GraphWriter(qm, image_factor, rewrite).build(opset, f"x{qm.scale}_{label}")
