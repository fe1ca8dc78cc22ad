"""AdaBM's two bit mappings: image-to-bit (complexity thresholds) and layer-to-bit (learnable factors).

Both are hard {-1, 0, +1} steps in the forward pass with tanh surrogates in the backward pass (paper eqs. 3,
4, 6, 7), so the thresholds and the layer factors are trained by the same loss as the clipping ranges.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def ste(surrogate: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """`hard` forward, gradient of `surrogate` backward."""
    return surrogate + (hard - surrogate).detach()


class ImageToBit(nn.Module):
    """b_I = -1 below the lower complexity threshold, +1 above the upper one, else 0."""

    def __init__(self):
        super().__init__()
        self.lower = nn.Parameter(torch.tensor(0.0))
        self.upper = nn.Parameter(torch.tensor(1.0))

    def init_from(self, complexities: np.ndarray, p_i: float) -> None:
        """Thresholds at the p_I-th and (100 - p_I)-th percentiles of the calibration complexities."""
        lo, hi = np.percentile(complexities, [p_i, 100 - p_i])
        with torch.no_grad():
            self.lower.fill_(float(lo))
            self.upper.fill_(float(max(hi, lo + 1e-3)))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        hard = (c > self.upper).to(c.dtype) - (c < self.lower).to(c.dtype)
        half_width = ((self.upper - self.lower) / 2).clamp_min(1e-3)
        surrogate = torch.tanh((c - (self.upper + self.lower) / 2) / half_width)
        return ste(surrogate, hard)

    def thresholds(self) -> tuple[float, float]:
        return float(self.lower.detach()), float(self.upper.detach())


class LayerToBit(nn.Module):
    """One free scalar m per adaptive layer: forward round(clamp(m, -1, 1)), gradient through tanh(m)."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(n_layers))

    def init_from(self, sensitivities: np.ndarray, p_l: float) -> None:
        """Layers below the p_L-th percentile of sensitivity start at -1, above the (100 - p_L)-th at +1."""
        lo, hi = np.percentile(sensitivities, [p_l, 100 - p_l])
        init = np.where(sensitivities < lo, -1.0, np.where(sensitivities > hi, 1.0, 0.0))
        with torch.no_grad():
            self.m.copy_(torch.as_tensor(init, dtype=self.m.dtype))

    def forward(self) -> torch.Tensor:
        return ste(torch.tanh(self.m), torch.round(self.m.clamp(-1, 1)))

    def factors(self) -> list[int]:
        return [int(v) for v in torch.round(self.m.detach().clamp(-1, 1)).tolist()]
