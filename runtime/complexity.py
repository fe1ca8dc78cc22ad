"""Image complexity as AdaBM defines it: gradient density of the LR input. The one definition used by both
calibration (to set the image-to-bit thresholds) and the torch-free runtime (to route each patch).

c(x) = 1000 * mean over pixels and both directions of |Sobel(gray) / 8|, gray = 0.299 R + 0.587 G + 0.114 B
of the RGB input scaled to [0, 1], replicate padding. numpy + OpenCV only.
"""
from __future__ import annotations

import cv2
import numpy as np

DEFINITION = "1000*mean(|sobel_x/8|,|sobel_y/8|) of gray=0.299R+0.587G+0.114B in [0,1], replicate padding"

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _gradients(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    gray = (rgb.astype(np.float32) / 255.0) @ _GRAY
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
    return np.abs(gx), np.abs(gy)


def gradient_density(rgb: np.ndarray) -> float:
    """Complexity of one RGB image (HxWx3, values 0..255)."""
    gx, gy = _gradients(rgb)
    return float(1000.0 * 0.5 * (gx.mean(dtype=np.float64) + gy.mean(dtype=np.float64)))
