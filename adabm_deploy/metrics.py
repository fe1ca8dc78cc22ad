"""SR accuracy metrics in the BasicSR convention (torch-free).

Images are RGB uint8 (or float in 0..255). The SR output is rounded to uint8 before measuring, `crop` pixels
are removed from every edge (crop = scale by convention), Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
in float64, PSNR = 10 log10(255^2 / MSE). SSIM: 11x11 Gaussian (sigma 1.5), C1 = (0.01*255)^2,
C2 = (0.03*255)^2, valid filtering, on Y.
"""
from __future__ import annotations

import cv2
import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round a float image in 0..255 to uint8, as a saved SR output would be."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in 16..235 from RGB in 0..255 (float64)."""
    return 16.0 + img.astype(np.float64) @ _Y_WEIGHTS


def _prepare(sr: np.ndarray, hr: np.ndarray, crop: int, y_only: bool) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: SR {sr.shape} vs HR {hr.shape}")
    sr, hr = to_uint8(sr), to_uint8(hr)
    if crop:
        sr, hr = sr[crop:-crop, crop:-crop], hr[crop:-crop, crop:-crop]
    if y_only:
        return rgb_to_y(sr), rgb_to_y(hr)
    return sr.astype(np.float64), hr.astype(np.float64)


def psnr(sr: np.ndarray, hr: np.ndarray, crop: int = 0, y_only: bool = True) -> float:
    a, b = _prepare(sr, hr, crop, y_only)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _ssim_single(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    window = g @ g.T
    filt = lambda x: cv2.filter2D(x, -1, window)[5:-5, 5:-5]  # noqa: E731  ('valid' region)
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, crop: int = 0, y_only: bool = True) -> float:
    a, b = _prepare(sr, hr, crop, y_only)
    if a.ndim == 2:
        return _ssim_single(a, b)
    return float(np.mean([_ssim_single(a[..., c], b[..., c]) for c in range(a.shape[2])]))
