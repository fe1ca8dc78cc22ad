"""Shared inputs of the latency suite. `--quick` (CI) runs every benchmark once on small inputs and skips
the accuracy columns, to prove the suite executes; the real report needs the full run."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.workloads import shared


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="one round on small inputs, no accuracy columns")


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return request.config.getoption("--quick")


@pytest.fixture(scope="session")
def checkpoint():
    return shared("weights", "edsr_baseline_x4.pt")


@pytest.fixture(scope="session")
def frame(quick) -> np.ndarray:
    """The 480x270 LR frame (a real photo, B100 img_003, cropped) that becomes 1920x1080; 96x64 in quick mode."""
    from adabm_deploy.images import read_rgb
    img = read_rgb(shared("data", "benchmark", "B100", "HR", "img_003.png"))
    h, w = (64, 96) if quick else (270, 480)
    if img.shape[0] < img.shape[1]:
        return np.ascontiguousarray(img[:h, :w])
    return np.ascontiguousarray(img.transpose(1, 0, 2)[:h, :w])


@pytest.fixture(scope="session")
def patches(frame, quick) -> np.ndarray:
    """A batch of 96x96 LR patches (NCHW float32), cut from the frame (8 of them; 1 in quick mode)."""
    p = 64 if quick else 96
    tiles = [frame[y:y + p, x:x + p] for y in range(0, frame.shape[0] - p + 1, p)
             for x in range(0, frame.shape[1] - p + 1, p)][:8]
    return np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2).astype(np.float32))
