"""What the benchmarks run: the FP32 baseline graphs, ORT's static INT8, Set14 accuracy, and the arithmetic
(multiply-accumulates) that turns a latency into an achieved int8 rate."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from adabm_deploy.data import open_benchmark
from adabm_deploy.metrics import psnr, to_uint8
from adabm_deploy.models.edsr import upsampler_stages
from export.graph import padded_group

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
THREADS = sorted({1, os.cpu_count() or 1})  # one thread and all cores


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} not present (benchmarks read ../shared beside the checkout)")
    return path


def macs_per_lr_pixel(n_blocks: int, n_feats: int, scale: int, n_colors: int = 3, subpixel_tail: bool = False
                      ) -> int:
    """Multiply-accumulates of the EDSR convs per LR pixel. The sub-pixel tail computes a 2x2 conv with padded
    output channels before the last shuffle instead of the 3-channel 3x3 conv after it (export.graph)."""
    k = 9
    macs = k * n_colors * n_feats + (2 * n_blocks + 1) * k * n_feats * n_feats
    res = 1
    stages = upsampler_stages(scale)
    for r in stages:
        macs += res * res * k * n_feats * n_feats * r * r
        res *= r
    if subpixel_tail:
        last = stages[-1]
        macs += (res // last) ** 2 * 4 * n_feats * last * last * padded_group(n_colors, last) * last * last
    else:
        macs += res * res * k * n_feats * n_colors
    return macs


def set14_psnr(run: Callable[[np.ndarray], np.ndarray], root: Path) -> float:
    """Mean Y-PSNR on Set14 x4 (whole images, SR rounded to uint8, 4 px crop): run maps uint8 LR -> float SR."""
    bench = open_benchmark(root, 4)
    scores = []
    for pair in bench.pairs:
        lr, hr = bench.load(pair)
        scores.append(psnr(to_uint8(run(lr)), hr, crop=4))
    return float(np.mean(scores))


def onnx_runner(engine_run: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap an NCHW float32 network call as uint8 HxWx3 LR -> float HxWx3 SR."""
    def run(lr: np.ndarray) -> np.ndarray:
        return engine_run(lr.transpose(2, 0, 1)[None].astype(np.float32))[0].transpose(1, 2, 0)
    return run
