"""The cheap rung: a cell whose complexity is at most the calibrated threshold is upscaled in closed form
(bicubic) instead of by the network. Defined once, torch-free, for the calibration that sets the threshold
under an accuracy budget and for the runtime that routes by it.

Bicubic (OpenCV's, on the window with the same overlap context as a network window) was measured against a
cheaper network (the first half of the residual blocks) and against skipping only constant cells:
docs/rung.md.
"""
from __future__ import annotations

import cv2
import numpy as np

KIND = "bicubic"


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """HxWx3 float 0..255 -> (H*scale)x(W*scale)x3 float32."""
    h, w = pixels.shape[:2]
    return cv2.resize(np.asarray(pixels, np.float32), (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def is_cheap(complexity: float, threshold: float | None) -> bool:
    """None: the rung is off (a zero budget, or a model directory without one)."""
    return threshold is not None and complexity <= threshold
