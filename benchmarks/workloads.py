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
from adabm_deploy.network.graph import MOVES, Graph
from export.qdq import padded_group, subpixel_convs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
THREADS = sorted({1, os.cpu_count() or 1})  # one thread and all cores


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} not present (benchmarks read ../shared beside the checkout)")
    return path


def macs_per_lr_pixel(graph: Graph, rewrite: bool) -> int:
    """Multiply-accumulates of the network's convs per LR pixel. With the rewrite, a conv that export.qdq turns
    into a sub-pixel conv computes a 2x2 conv with padded output channels before its shuffle instead of the
    3x3 conv after it, and a grouped conv is computed as the dense one (ONNX Runtime's INT8 form)."""
    area: dict[str, int] = {}  # output pixels per LR pixel
    rewritten = subpixel_convs(graph) if rewrite else {}
    macs = 0
    for node in graph.nodes.values():
        area[node.name] = 1 if node.op == "input" else area[node.inputs[0]] * (
            node.factor ** 2 if node.op in MOVES else 1)
        if node.op == "conv":
            c_out, c_in, k, _ = node.weight.shape
            c_in *= node.groups if rewrite else 1
            if node.name in rewritten:
                shuffle = rewritten[node.name]
                r = shuffle.factor
                macs += area[shuffle.inputs[0]] * 4 * c_in * r * r * padded_group(c_out, r) * r * r
            else:
                macs += area[node.inputs[0]] * k * k * c_in * c_out
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


def sky_frame() -> tuple[np.ndarray, np.ndarray]:
    """(LR 960x540, HR 3840x2160) RGB uint8: a 4K frame whose upper half is sky (a smooth gradient with sensor
    noise of sigma 1.5) over a lower half of real photos (B100's landscape images, tiled). The content the cheap
    rung is for; its HR is the ground truth the LR was made from (MATLAB bicubic)."""
    from adabm_deploy.bicubic import bicubic_downscale
    from adabm_deploy.images import read_rgb
    h, w = 2160, 3840
    rows = np.linspace(0, 1, h // 2)[:, None, None]
    cols = np.linspace(0, 1, w)[None, :, None]
    top, horizon = np.array([70.0, 120.0, 200.0]), np.array([185.0, 210.0, 235.0])
    sky = top + (horizon - top) * rows ** 1.5 + 12 * np.sin(3.0 * cols + 1.0)
    sky = sky + np.random.default_rng(0).normal(0, 1.5, (h // 2, w, 1))
    photos = [im for im in (read_rgb(p) for p in sorted((SHARED / "data" / "benchmark" / "B100" / "HR").glob("*.png")))
              if im.shape[1] > im.shape[0]]
    ground = np.concatenate([np.concatenate(photos[r * 8:(r + 1) * 8], axis=1) for r in range(4)], axis=0)
    hr = np.concatenate([np.clip(np.round(sky), 0, 255).astype(np.uint8), ground[:h // 2, :w]], axis=0)
    return bicubic_downscale(hr, 4), hr
