"""Build the FP32 and INT8 QDQ ONNX graphs of a calibrated QuantEDSR with onnx.helper.

The graph has exactly the quantization points that QuantEDSR simulates (see adabm_deploy.quant.qedsr):
uint8 activations with per-tensor scale and integer zero point, b < 8 bits as Clip(0, 2^b - 1) on the uint8
tensor (a float Clip before QuantizeLinear would make ONNX Runtime fall back to FP32 convs), int8 symmetric
weights, int32 bias at scale x_scale * w_scale, ReLU outputs at zero point 0 (so ORT folds the ReLU), one
QuantizeLinear per conv output. The last 64->3 conv at output resolution is rewritten exactly as a 2x2 conv on
the tensor before the last pixel shuffle (subpixel_conv_weights). Pixel shuffles run as channels-last Reshape /
Transpose (pixel_shuffle_nhwc) on a conv whose output channels are laid out to match (shuffle_layout): the last
one always, the upsampler's where its output is quantized (on uint8); an FP32 upsampler keeps DepthToSpace.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from adabm_deploy.quant.qedsr import QConv, QuantEDSR
from adabm_deploy.quant.quantizers import ActQuantizer

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


class GraphWriter:
    def __init__(self, qm: QuantEDSR, image_factor: int | None, subpixel_tail: bool = True):
        """image_factor None: FP32 graph; -1 / 0 / +1: the INT8 variant for that image-wise bit factor.
        subpixel_tail False keeps the plain PixelShuffle -> conv tail (the graph a user's own export has)."""
        self.qm = qm
        self.subpixel_tail = subpixel_tail
        self.quantized = image_factor is not None
        self.layer_bits = qm.variant_bits(image_factor) if self.quantized else None
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.dequantized: set[str] = set()  # outputs of an activation point's DequantizeLinear
        self._n = 0

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

    def quant(self, x: str, q: ActQuantizer, bits: int, move: Callable[[str], str] | None = None
              ) -> tuple[str, float]:
        """QuantizeLinear -> [Clip to b bits on uint8] -> [`move`: pixels rearranged on uint8] ->
        DequantizeLinear; returns (float tensor, scale).

        Where x is itself a dequantized tensor (a requantization), it first gets + DQ(0): the value is
        unchanged, but ORT then fuses DQ -> Add -> Q into one uint8 -> uint8 QLinearAdd pass instead of a
        DequantizeLinear and a QuantizeLinear over float."""
        scale, zp = q.qparams(bits)
        s = self.const(f"{q.name}.scale", np.float32(scale))
        z = self.const(f"{q.name}.zp", np.uint8(zp))
        if x in self.dequantized:
            zero = self.op("DequantizeLinear", [self.const("u8.0", np.uint8(0)), self.const("one", np.float32(1)),
                                                self.const("u8.0", np.uint8(0))], f"{q.name}.zero")
            x = self.op("Add", [x, zero], f"{q.name}.requant")
        t = self.op("QuantizeLinear", [x, s, z], f"{q.name}.q")
        if bits < 8:
            t = self.op("Clip", [t, self.const("u8.0", np.uint8(0)), self.const(f"u8.{2 ** bits - 1}",
                                                                               np.uint8(2 ** bits - 1))],
                        f"{q.name}.clip{bits}")
        if move is not None:
            t = move(t)
        out = self.op("DequantizeLinear", [t, s, z], f"{q.name}.dq")
        self.dequantized.add(out)
        return out, scale

    def point(self, x: str, q: ActQuantizer, bits: int = 8) -> tuple[str, float | None]:
        if not self.quantized or not self.qm.has_point(q):
            return x, None
        return self.quant(x, q, bits)

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

    def conv(self, x: str, qc: QConv, x_scale: float | None, subpixel: int = 0, shuffle: int = 0) -> str:
        """subpixel r: the exact 2x2 rewrite above; shuffle r: output channels laid out for pixel_shuffle_nhwc.

        With both, phases are rotated one shuffle position: position a' then holds phase a' - 1, which sits
        on grid row i + phase_shift = floor((r*i + a + 1) / r), so shuffling the whole (H+1) x (W+1) grid gives
        the image moved by one pixel, and cropping one pixel at the start (r - 1 at the end) gives it back."""
        weight = qc.weight.numpy().astype(np.float32)
        bias = qc.bias.numpy().astype(np.float32)
        quantized = self.quantized and qc.wq is not None
        w_scale = np.ones(weight.shape[0], np.float32)
        if quantized:
            w_scale = qc.wq.scale().detach().numpy().astype(np.float32)
            w_scale = np.broadcast_to(w_scale, (weight.shape[0],)).copy()
            w_int = np.clip(np.round(weight / w_scale[:, None, None, None]), -qc.wq.qmax, qc.wq.qmax)
            weight = w_int
        if subpixel:
            weight, bias = subpixel_conv_weights(weight, bias, subpixel)
            w_scale = np.repeat(w_scale, subpixel * subpixel)
        if shuffle:
            order = shuffle_layout(weight.shape[0] // (shuffle * shuffle), shuffle, rotate=int(bool(subpixel)))
            # index -1 picks the appended zero filter (scale 1, bias 0)
            weight = np.concatenate([weight, np.zeros((1, *weight.shape[1:]), weight.dtype)])[order]
            bias = np.append(bias, np.float32(0))[order]
            w_scale = np.append(w_scale, np.float32(1))[order]
        if not quantized:
            return self.op("Conv", [x, self.const(f"{qc.name}.weight", weight), self.const(f"{qc.name}.bias", bias)],
                           qc.name, pads=[1, 1, 1, 1])
        per_axis = dict(axis=0)
        w = self.op("DequantizeLinear", [self.const(f"{qc.name}.w_int8", weight.astype(np.int8)),
                                         self.const(f"{qc.name}.w_scale", w_scale),
                                         self.const(f"{qc.name}.w_zp", np.zeros(len(w_scale), np.int8))],
                    f"{qc.name}.w", **per_axis)
        b_scale = (np.float32(x_scale) * w_scale).astype(np.float32)
        b_int = np.round(bias / b_scale).astype(np.int32)
        b = self.op("DequantizeLinear", [self.const(f"{qc.name}.b_int32", b_int),
                                         self.const(f"{qc.name}.b_scale", b_scale),
                                         self.const(f"{qc.name}.b_zp", np.zeros(len(b_scale), np.int32))],
                    f"{qc.name}.b", **per_axis)
        return self.op("Conv", [x, w, b], qc.name, pads=[1, 1, 1, 1])

    def mean_shift(self, x: str, conv: torch.nn.Conv2d, base: str, output: str | None = None) -> str:
        w = conv.weight.detach().numpy()[:, :, 0, 0]
        if not np.allclose(w, np.diag(np.diag(w))):
            raise ValueError(f"{base}: mean shift with a non-diagonal weight cannot be exported")
        gain = self.const(f"{base}.gain", np.diag(w).astype(np.float32).reshape(1, -1, 1, 1))
        shift = self.const(f"{base}.shift", conv.bias.detach().numpy().astype(np.float32).reshape(1, -1, 1, 1))
        return self.op("Add", [self.op("Mul", [x, gain], f"{base}.mul"), shift], base, output)

    # -- the network ------------------------------------------------------------------------------------
    def build(self, opset: int, name: str) -> onnx.ModelProto:
        qm, bits = self.qm, self.layer_bits
        x, s = self.point(self.mean_shift("lr", qm.sub_mean, "sub_mean"), qm.q_input)
        h, s = self.point(self.conv(x, qm.head, s), qm.q_head)
        cur, s_cur = h, s
        for i, blk in enumerate(qm.blocks):
            a, s_a = self.point(cur, blk.q_in, bits[2 * i] if bits else 8)
            t = self.op("Relu", [self.conv(a, blk.conv1, s_a)], f"body.{i}.relu")
            t, s_t = self.point(t, blk.q_mid, bits[2 * i + 1] if bits else 8)
            t, _ = self.point(self.conv(t, blk.conv2, s_t), blk.q_out)
            cur, s_cur = self.point(self.op("Add", [t, cur], f"body.{i}.add"), blk.q_add)
        y, _ = self.point(self.conv(cur, qm.body_end, s_cur), qm.q_body_end)
        y, s = self.point(self.op("Add", [y, h], "body.skip"), qm.q_skip)
        n_up = len(qm.shuffle)
        # with the rewrite, the last shuffle moves behind the output conv
        n_shuffled = n_up - 1 if self.subpixel_tail else n_up
        for j, (conv, q) in enumerate(zip(qm.tail[:n_up], qm.q_tail)):
            r = qm.shuffle[j]
            if j >= n_shuffled:
                y, s = self.point(self.conv(y, conv, s), q)
            elif self.quantized and qm.has_point(q):
                y, s = self.quant(self.conv(y, conv, s, shuffle=r), q, 8,
                                  move=lambda t: self.pixel_shuffle_nhwc(t, r, qm.cfg.n_feats, q.name))
            else:
                y = self.op("DepthToSpace", [self.conv(y, conv, s)], f"tail.{j}.d2s", blocksize=r, mode="CRD")
        if self.subpixel_tail:
            r, q = qm.shuffle[-1], qm.q_tail[-1]
            y = self.conv(y, qm.tail[-1], s, subpixel=r, shuffle=r)
            assemble = lambda t: self.pixel_shuffle_nhwc(t, r, qm.cfg.n_colors, q.name, crop=True)  # noqa: E731
            y = self.quant(y, q, 8, move=assemble)[0] if self.quantized and qm.has_point(q) else assemble(y)
        else:
            y, _ = self.point(self.conv(y, qm.tail[-1], s), qm.q_tail[-1])
        self.mean_shift(y, qm.add_mean, "add_mean", output="sr")
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", qm.cfg.n_colors, "H", "W"])],
            [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", qm.cfg.n_colors, "SH", "SW"])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="adabm-deploy")
        model.ir_version = 9 if opset <= 20 else 10  # onnx 1.23 writes IR 14 by default; ORT refuses that
        return model


def build_model(qm: QuantEDSR, image_factor: int | None, opset: int = 17,
                subpixel_tail: bool = True) -> onnx.ModelProto:
    label = "fp32" if image_factor is None else f"int8_factor{image_factor:+d}"
    return GraphWriter(qm, image_factor, subpixel_tail).build(opset, f"edsr_x{qm.cfg.scale}_{label}")
