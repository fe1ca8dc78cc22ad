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
    3x3 conv after it."""
    area: dict[str, int] = {}  # output pixels per LR pixel
    rewritten = subpixel_convs(graph) if rewrite else {}
    macs = 0
    for node in graph.nodes.values():
        area[node.name] = 1 if node.op == "input" else area[node.inputs[0]] * (
            node.factor ** 2 if node.op in MOVES else 1)
        if node.op == "conv":
            c_out, c_in, k, _ = node.weight.shape
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
