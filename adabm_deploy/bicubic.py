"""MATLAB-compatible `imresize(img, 1/s, 'bicubic')`: the LR convention of every SR benchmark.

MATLAB widens the cubic kernel by the scale when downscaling (antialiasing), mirrors indices at the borders,
resizes rows then columns, and rounds half away from zero back to uint8 after each pass. OpenCV's
INTER_CUBIC does none of that, so calibration images made with it would not look like benchmark LR inputs.
Torch-free (numpy only).
"""
from __future__ import annotations

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense (out_len, in_len) weights of MATLAB's `contributions` for the bicubic kernel with antialiasing."""
    width = 4.0
    if scale < 1:
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731
        width /= scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = kernel(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), idx.ravel()), w.ravel())
    return mat


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize an HxW or HxWxC array by `scale` like MATLAB; uint8 in gives rounded uint8 out, float gives float."""
    out = img.astype(np.float64)
    h, w = img.shape[:2]
    sizes = {0: int(np.ceil(h * scale)), 1: int(np.ceil(w * scale))}
    for axis in (0, 1):  # equal scales: MATLAB resizes rows first
        mat = resize_matrix(out.shape[axis], sizes[axis], scale)
        out = np.moveaxis(np.tensordot(mat, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
        if img.dtype == np.uint8:  # MATLAB returns the input class after each pass, not only at the end
            out = np.clip(np.floor(out + 0.5), 0, 255)
    return out.astype(np.uint8) if img.dtype == np.uint8 else out


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR image the benchmark way: crop HR to a multiple of `scale`, then MATLAB bicubic by 1/scale."""
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    return imresize(hr, 1.0 / scale)
