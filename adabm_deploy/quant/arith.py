"""The integer arithmetic of the deployed INT8 graph, defined once: the calibration's simulation computes with
these functions and the QDQ writer takes its weight codes, bias codes and scales from them, so what is tuned in
PyTorch is what ONNX Runtime computes.

Activations: uint8 container, per-tensor scale, integer zero point, b-bit levels 0..2^b-1. Weights: int8,
symmetric, zero point 0, levels +-(2^(b-1)-1). Bias: int32 at scale x_scale * w_scale, as QLinearConv takes
it. Rounding is half to even, like QuantizeLinear, with a straight-through gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_BITS, MAX_BITS = 2, 8


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward (half to even, like QuantizeLinear), identity backward."""
    return x + (torch.round(x) - x).detach()


def act_qparams(lower: torch.Tensor, upper: torch.Tensor, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, integer zero point) of a b-bit asymmetric quantizer covering [lower, upper].

    The zero point is rounded so that 0.0 is exactly representable (uint8 QuantizeLinear has an integer zero
    point); the represented range is therefore [lower, upper] shifted by less than half a step.
    """
    qmax = 2.0 ** bits - 1
    scale = (upper - lower).clamp_min(1e-8) / qmax
    zero_point = torch.minimum(torch.maximum(round_ste(-lower / scale), torch.zeros_like(qmax)), qmax)
    return scale, zero_point


def fake_quant_act(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmax: torch.Tensor) -> torch.Tensor:
    """QuantizeLinear -> Clip(0, qmax) -> DequantizeLinear."""
    q = torch.clamp(round_ste(x / scale) + zero_point, min=torch.zeros_like(qmax), max=qmax)
    return (q - zero_point) * scale


def weight_qmax(bits: int) -> float:
    return float(2 ** (bits - 1) - 1)


def weight_scale(clip: torch.Tensor, bits: int) -> torch.Tensor:
    """Per layer ([1]) or per output channel ([C_out]) int8 weight scale for a clipping value."""
    return clip.abs().clamp_min(1e-8) / weight_qmax(bits)


def weight_codes(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer weight levels (as floats), straight-through."""
    qmax = weight_qmax(bits)
    return torch.clamp(round_ste(w / scale.view(-1, *([1] * (w.ndim - 1)))), -qmax, qmax)


def bias_codes(bias: torch.Tensor, acc_scale: torch.Tensor) -> torch.Tensor:
    """The int32 bias QLinearConv adds to its accumulator: bias / (x_scale * w_scale), rounded. acc_scale is
    [N or 1, C_out]; so is the result."""
    return round_ste(bias / acc_scale)


def integer_conv(x: torch.Tensor, x_scale: torch.Tensor, w_codes: torch.Tensor, w_scale: torch.Tensor,
                 bias: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """A conv as QLinearConv computes it, rescaled to float: codes(x) * codes(w) + int32 bias, times x_scale *
    w_scale. The accumulator of integer codes is exact in float32 (|acc| < 2^24); on CUDA the conv runs in
    float64, as cuDNN may pick TF32, Winograd or FFT kernels for float32, which round. x_scale is [] or [N]."""
    acc_scale = x_scale.reshape(-1, 1) * w_scale.reshape(1, -1)
    x_codes = round_ste(x / x_scale.reshape(-1, 1, 1, 1))
    exact = torch.float64 if x.is_cuda else x.dtype
    acc = F.conv2d(x_codes.to(exact), w_codes.to(exact), None, padding=w_codes.shape[-1] // 2,
                   groups=groups).to(x.dtype)
    return (acc + bias_codes(bias, acc_scale)[:, :, None, None]) * acc_scale[:, :, None, None]
