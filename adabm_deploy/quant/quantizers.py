"""Deployable fake quantizers: what is tuned in PyTorch is what ONNX Runtime computes.

Activations: per-tensor scale, integer zero point, b-bit levels 0..2^b-1 held in a uint8 container
(QuantizeLinear -> Clip(0, 2^b-1) -> DequantizeLinear in the exported graph). Weights: int8 container,
symmetric, zero point 0, levels +-(2^(b-1)-1), per layer (the paper) or per output channel.
Rounding uses a straight-through estimator; the bounds receive gradients through clipping (paper eqs. 8-9)
and through the scale, as in the authors' quantizer.
"""
from __future__ import annotations

import torch
from torch import nn

from .arith import act_qparams, fake_quant_act, weight_codes, weight_qmax, weight_scale


class ActQuantizer(nn.Module):
    """Asymmetric activation quantizer with learnable bounds.

    `unsigned=True` pins the lower bound at 0: used after ReLU, so the exported QuantizeLinear has zero point 0
    and ONNX Runtime folds the ReLU into the integer conv.
    """

    def __init__(self, name: str, unsigned: bool = False, adaptive: bool = False):
        super().__init__()
        self.name = name
        self.unsigned = unsigned
        self.adaptive = adaptive  # bit-width follows b_base + b_I + b_L instead of a fixed 8
        self.lower = nn.Parameter(torch.tensor(0.0), requires_grad=not unsigned)
        self.upper = nn.Parameter(torch.tensor(1.0))
        self.ema: tuple[float, float] | None = None  # EMA of per-batch (min, max)
        self.pct_ema: tuple[float, float] | None = None  # EMA of per-batch (1st, 99th) percentiles
        self.std_sum, self.std_count = 0.0, 0
        self.sample: torch.Tensor | None = None

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lower = torch.zeros_like(self.upper) if self.unsigned else torch.minimum(self.lower, torch.zeros_like(self.lower))
        return lower, torch.maximum(self.upper, lower + 1e-4)

    def bound_values(self) -> tuple[float, float]:
        """The bounds as numbers, outside the autograd graph (for reports, artifacts and searches)."""
        lower, upper = self.bounds()
        return float(lower.detach()), float(upper.detach())

    def observe(self, x: torch.Tensor, momentum: float = 0.9, keep_sample: int = 0) -> None:
        """Statistics from the FP network: EMA (min, max) and (1st, 99th) percentiles, mean per-sample std
        (the layer sensitivity), and a random sample of values for bit-aware clipping."""
        flat = x.detach().flatten()
        gen = torch.Generator(device=flat.device).manual_seed(0)
        sub = flat[torch.randint(0, flat.numel(), (1 << 16,), generator=gen, device=flat.device)]
        pct = torch.quantile(sub.float(), torch.tensor([0.01, 0.99], device=flat.device)).tolist()
        ema = lambda old, new: new if old is None else tuple(momentum * o + (1 - momentum) * n  # noqa: E731
                                                             for o, n in zip(old, new))
        self.ema = ema(self.ema, (float(flat.min()), float(flat.max())))
        self.pct_ema = ema(self.pct_ema, tuple(pct))
        if self.adaptive:
            self.std_sum += float(x.flatten(1).std(dim=1).sum())
            self.std_count += x.shape[0]
        if keep_sample and self.sample is None:
            self.sample = sub[:keep_sample].clone()

    @property
    def sensitivity(self) -> float:
        return self.std_sum / max(self.std_count, 1)

    def set_bounds(self, lower: float, upper: float) -> None:
        with torch.no_grad():
            self.lower.fill_(0.0 if self.unsigned else min(lower, 0.0))
            self.upper.fill_(max(upper, 1e-3))

    def quantize(self, x: torch.Tensor, bits: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(fake-quantized x, scale). `bits` is a scalar or one value per sample (shape [N]); values may carry
        surrogate gradients. The scale comes back shaped [N] (per sample) or [] for the bias grid."""
        if not torch.is_tensor(bits):  # a fill, not a host-to-device copy: legal inside a CUDA graph capture
            bits = torch.full((), float(bits), dtype=x.dtype, device=x.device)
        bits = bits.to(device=x.device, dtype=x.dtype)
        per_sample = bits.ndim == 1
        bits_b = bits.view(-1, *([1] * (x.ndim - 1))) if per_sample else bits
        lower, upper = self.bounds()
        scale, zero_point = act_qparams(lower, upper, bits_b)
        return fake_quant_act(x, scale, zero_point, 2.0 ** bits_b - 1), scale.reshape(-1) if per_sample else scale

    def qparams(self, bits: float) -> tuple[float, int]:
        """(scale, zero point) that the exporter writes for this quantizer at `bits`."""
        lower, upper = self.bounds()
        scale, zp = act_qparams(lower.detach(), upper.detach(), torch.tensor(float(bits)))
        return float(scale), int(zp)


class WeightQuantizer(nn.Module):
    """Symmetric weight quantizer, zero point 0, learnable clip (per layer, or per output channel)."""

    def __init__(self, weight: torch.Tensor, bits: int, per_channel: bool = False):
        super().__init__()
        self.bits = bits
        self.per_channel = per_channel
        n = weight.shape[0] if per_channel else 1
        self.clip = nn.Parameter(torch.ones(n))

    @property
    def qmax(self) -> float:
        return weight_qmax(self.bits)

    def scale(self) -> torch.Tensor:
        return weight_scale(self.clip, self.bits)

    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer weight levels (as floats), straight-through."""
        return weight_codes(w, self.scale(), self.bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.codes(w) * self.scale().view(-1, *([1] * (w.ndim - 1)))

    def init_clip(self, w: torch.Tensor, method: str) -> None:
        """minmax: max|W|; percentile: 99th percentile of |W|; omse: the MSE-best fraction of max|W| (OMSE)."""
        flat = w.detach().abs().flatten(1) if self.per_channel else w.detach().abs().flatten()[None]
        if method == "minmax":
            clip = flat.max(dim=1).values
        elif method == "percentile":
            clip = torch.quantile(flat, 0.99, dim=1)
        elif method == "omse":
            best, clip = None, flat.max(dim=1).values
            for eps in torch.linspace(1.0, 0.01, 100):
                cand = flat.max(dim=1).values * eps
                s = weight_scale(cand, self.bits)
                err = ((weight_codes(flat, s, self.bits) * s.view(-1, 1) - flat) ** 2).sum(dim=1)
                if best is None:
                    best, clip = err, cand
                else:
                    better = err < best
                    best, clip = torch.where(better, err, best), torch.where(better, cand, clip)
        else:
            raise ValueError(f"unknown weight clip method {method}")
        with torch.no_grad():
            self.clip.copy_(clip.clamp_min(1e-8))


def bit_aware_clip(q: ActQuantizer, bits: float, steps: int = 100) -> float:
    """Paper eq. 5: scale both bounds by the MSE-best eps in 1.00..0.01 at `bits`, then blend 50/50 with
    the old bounds. Returns the chosen eps."""
    x = q.sample
    if x is None:
        raise RuntimeError(f"{q.name}: no activation sample collected")
    lower, upper = q.bound_values()
    bits_t = torch.tensor(float(bits), device=x.device)
    best_eps, best_err = 1.0, float("inf")
    for eps in torch.linspace(1.0, 0.01, steps).tolist():
        scale, zp = act_qparams(torch.tensor(eps * lower, device=x.device), torch.tensor(eps * upper, device=x.device),
                                bits_t)
        err = float(((fake_quant_act(x, scale, zp, 2.0 ** bits_t - 1) - x) ** 2).sum())
        if err < best_err:
            best_eps, best_err = eps, err
    q.set_bounds(0.5 * (lower + best_eps * lower), 0.5 * (upper + best_eps * upper))
    return best_eps
