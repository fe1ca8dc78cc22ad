"""EDSR with the quantization points of the deployed QDQ graph, so PyTorch computes what ONNX Runtime will.

Points, in graph order (full quantization; body-only keeps the head, body end and tail in float):
  input (8) -> head conv W8 -> head.out (8) = x_0
  block i: body.i.in (b-bit, adaptive) -> conv1 Wb -> ReLU -> body.i.mid (b-bit, adaptive, zero point 0)
           -> conv2 Wb -> body.i.out (8) -> + x_i -> body.i.add (8) = x_{i+1}
  body.end conv W8 (input x_16) -> body.end.out (8) -> + x_0 -> body.skip (8)
  tail.j conv W8 -> tail.j.out (8) [-> pixel shuffle] ... -> add_mean (float)
Each conv's bias is rounded to the int32 grid of (input scale x weight scale), as QLinearConv does. With all
quantizers disabled the module computes exactly the FP32 EDSR (the teacher during fine-tuning).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..models.edsr import EDSR, upsampler_stages
from .bitmap import ImageToBit, LayerToBit, ste
from .quantizers import MAX_BITS, MIN_BITS, ActQuantizer, WeightQuantizer, round_ste


class QConv(nn.Module):
    """Frozen conv weights with a weight quantizer; float conv when the layer is not quantized."""

    def __init__(self, name: str, conv: nn.Conv2d, w_bits: int | None, per_channel: bool, gain: float = 1.0):
        super().__init__()
        self.name = name
        self.register_buffer("weight", conv.weight.detach().clone() * gain)
        self.register_buffer("bias", conv.bias.detach().clone() * gain)
        self.wq = WeightQuantizer(self.weight, w_bits, per_channel) if w_bits else None

    def forward(self, x: torch.Tensor, x_scale: torch.Tensor | None) -> torch.Tensor:
        """Integer-domain conv when quantized: codes(x) * codes(w) + int32 bias is exact in float32 (|acc| < 2^24),
        so the accumulator equals QLinearConv's; the result is then scaled by x_scale * w_scale."""
        pad = self.weight.shape[-1] // 2
        if self.wq is None or x_scale is None:
            return F.conv2d(x, self.weight, self.bias, padding=pad)
        acc_scale = x_scale.reshape(-1, 1) * self.wq.scale().reshape(1, -1)  # [N or 1, C_out]
        x_codes = round_ste(x / x_scale.reshape(-1, 1, 1, 1))
        # cuDNN may pick TF32, Winograd or FFT kernels for float32 convs, which round; float64 stays exact on GPU
        exact = torch.float64 if x.is_cuda else x.dtype
        acc = F.conv2d(x_codes.to(exact), self.wq.codes(self.weight).to(exact), None, padding=pad).to(x.dtype)
        bias_codes = round_ste(self.bias / acc_scale)
        return (acc + bias_codes[:, :, None, None]) * acc_scale[:, :, None, None]


class QBlock(nn.Module):
    def __init__(self, i: int, block: nn.Module, w_bits: int, per_channel: bool):
        super().__init__()
        self.conv1 = QConv(f"body.{i}.body.0", block.body[0], w_bits, per_channel)
        self.conv2 = QConv(f"body.{i}.body.2", block.body[2], w_bits, per_channel, gain=block.res_scale)
        self.q_in = ActQuantizer(f"body.{i}.in", adaptive=True)
        self.q_mid = ActQuantizer(f"body.{i}.mid", unsigned=True, adaptive=True)
        self.q_out = ActQuantizer(f"body.{i}.out")
        self.q_add = ActQuantizer(f"body.{i}.add")


class QuantEDSR(nn.Module):
    def __init__(self, fp: EDSR, w_bits: int, a_bits: int, full_quant: bool, per_channel: bool = False):
        super().__init__()
        self.cfg = fp.cfg
        self.w_bits, self.a_bits, self.full_quant, self.per_channel = w_bits, a_bits, full_quant, per_channel
        outer_bits = 8 if full_quant else None
        self.sub_mean, self.add_mean = fp.sub_mean, fp.add_mean
        self.q_input = ActQuantizer("input")
        self.head = QConv("head.0", fp.head[0], outer_bits, per_channel)
        self.q_head = ActQuantizer("head.out")
        self.blocks = nn.ModuleList(QBlock(i, b, w_bits, per_channel) for i, b in enumerate(fp.blocks))
        n = len(self.blocks)
        self.body_end = QConv(f"body.{n}", fp.body[-1], outer_bits, per_channel)
        self.q_body_end = ActQuantizer("body.end.out")
        self.q_skip = ActQuantizer("body.skip")
        up = [m for m in fp.tail[0] if isinstance(m, nn.Conv2d)]
        self.tail = nn.ModuleList([QConv(f"tail.0.{2 * j}", c, outer_bits, per_channel) for j, c in enumerate(up)]
                                  + [QConv("tail.1", fp.tail[1], outer_bits, per_channel)])
        self.q_tail = nn.ModuleList(ActQuantizer(f"tail.{j}.out") for j in range(len(self.tail)))
        self.shuffle = upsampler_stages(self.cfg.scale)
        self.image2bit = ImageToBit()
        self.layer2bit = LayerToBit(2 * n)
        self.adaptive_bits = True  # False: static b_base everywhere (MinMax / Percentile baselines)
        self.quant_enabled = True
        self._active = frozenset(q.name for q in self.act_quantizers())
        self.requires_grad_(False)

    # -- the set of quantization points -------------------------------------------------------------------
    def act_quantizers(self) -> list[ActQuantizer]:
        """Every activation point that exists in the deployed graph for this mode."""
        qs = []
        if self.full_quant:
            qs.append(self.q_input)
        qs.append(self.q_head)
        for blk in self.blocks:
            qs += [blk.q_in, blk.q_mid, blk.q_out, blk.q_add]
        if self.full_quant:
            qs += [self.q_body_end, self.q_skip, *self.q_tail]
        return qs

    def has_point(self, q: ActQuantizer) -> bool:
        """Whether `q` exists in the deployed graph for this mode (body-only leaves the outer points float)."""
        return q.name in self._active

    def adaptive_quantizers(self) -> list[ActQuantizer]:
        return [q for blk in self.blocks for q in (blk.q_in, blk.q_mid)]

    def qconvs(self) -> list[QConv]:
        convs = [self.head, *[c for blk in self.blocks for c in (blk.conv1, blk.conv2)], self.body_end, *self.tail]
        return [c for c in convs if c.wq is not None]

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
        """[N, 2*n_blocks] activation bits b_base + b_I(image) + b_L(layer), clamped to 2..8 (STE)."""
        n = complexity.shape[0]
        if not self.adaptive_bits:
            return torch.full((n, len(self.layer2bit.m)), float(self.a_bits), device=complexity.device)
        raw = self.a_bits + self.image2bit(complexity)[:, None] + self.layer2bit()[None, :]
        return ste(raw, raw.clamp(MIN_BITS, MAX_BITS))

    def variant_bits(self, image_factor: int) -> list[int]:
        """Per-adaptive-layer bits of the exported variant for image-wise factor -1, 0 or +1."""
        factors = self.layer2bit.factors() if self.adaptive_bits else [0] * len(self.layer2bit.m)
        shift = image_factor if self.adaptive_bits else 0
        return [min(MAX_BITS, max(MIN_BITS, self.a_bits + shift + f)) for f in factors]

    # -- forward ------------------------------------------------------------------------------------------
    def _q(self, q: ActQuantizer, x: torch.Tensor, bits, observe: dict | None):
        """Apply one quantization point; returns (tensor, its scale or None where it stays float)."""
        if not self.has_point(q):
            return x, None
        if not self.quant_enabled:
            if observe is not None:
                q.observe(x, keep_sample=observe.get(q.name, 0))
            return x, None
        return q.quantize(x, bits)

    def forward(self, x: torch.Tensor, complexity: torch.Tensor | None = None,
                features: list | None = None, observe: dict | None = None) -> torch.Tensor:
        """x: [N, 3, H, W] RGB 0..255; complexity: [N] gradient densities (needed when quantizing).
        `features` collects block outputs (for the SKT loss); `observe` (in fp_mode) collects FP statistics,
        mapping quantizer names to the number of activation values to keep as a sample."""
        bits = None
        if self.quant_enabled:
            if complexity is None:
                raise ValueError("complexity is required for the quantized forward pass")
            bits = self.bits(complexity)
        x, s = self._q(self.q_input, self.sub_mean(x), 8.0, observe)
        h, s = self._q(self.q_head, self.head(x, s), 8.0, observe)
        cur, s_cur = h, s
        for i, blk in enumerate(self.blocks):
            a, s_a = self._q(blk.q_in, cur, None if bits is None else bits[:, 2 * i], observe)
            t = F.relu(blk.conv1(a, s_a))
            t, s_t = self._q(blk.q_mid, t, None if bits is None else bits[:, 2 * i + 1], observe)
            t, _ = self._q(blk.q_out, blk.conv2(t, s_t), 8.0, observe)
            cur, s_cur = self._q(blk.q_add, t + cur, 8.0, observe)
            if features is not None:
                features.append(cur)
        y, _ = self._q(self.q_body_end, self.body_end(cur, s_cur), 8.0, observe)
        y, s = self._q(self.q_skip, y + h, 8.0, observe)
        for j, (conv, q) in enumerate(zip(self.tail, self.q_tail)):
            y, s = self._q(q, conv(y, s), 8.0, observe)
            if j < len(self.shuffle):
                y = F.pixel_shuffle(y, self.shuffle[j])
        return self.add_mean(y)
