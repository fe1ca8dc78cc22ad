"""Shared fixtures: the reference data in ../shared (skipped with a clear reason where it is absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} not present (tests read ../shared beside the checkout)")
    return path


@pytest.fixture(autouse=True, scope="session")
def engine_defaults(tmp_path_factory) -> None:
    """Tests run on ONNX Runtime unless they name an engine (auto's probe and OpenVINO's compiles would add a few
    seconds to each of the hundreds of runs; tests/test_engines.py and tests/test_openvino.py cover them), and
    engines keep what they measure or compile in a folder of the tests' own; subprocesses inherit both."""
    os.environ["ADABM_DEPLOY_ENGINE"] = "onnxruntime"
    os.environ["ADABM_DEPLOY_CACHE"] = str(tmp_path_factory.mktemp("engine-cache"))


@pytest.fixture(scope="session")
def x4_checkpoint() -> Path:
    return shared_path("weights", "edsr_baseline_x4.pt")


@pytest.fixture(scope="session")
def x2_checkpoint() -> Path:
    return shared_path("weights", "edsr8_x2.pt")


@pytest.fixture(scope="session")
def benchmark_root() -> Path:
    return shared_path("data", "benchmark")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model directory of a 2-block, 16-channel EDSR x4 with random weights and ranges observed on random
    images, written by the exporter: the real runtime path (three INT8 variants, manifest, hashes) at a
    fraction of the compute."""
    import torch

    from benchmarks import zoo
    from adabm_deploy import artifact
    from adabm_deploy.models import load_network
    from adabm_deploy.quant import QuantGraph
    from export import model_dir

    root = tmp_path_factory.mktemp("tiny")
    network = load_network(zoo.save("edsr", root, 4))
    qm = zoo.observed(QuantGraph(network.graph, 8, 8, full_quant=True))
    with torch.no_grad():
        qm.image2bit.lower.fill_(10.0)
        qm.image2bit.upper.fill_(40.0)
        qm.layer2bit.m.copy_(torch.tensor([-1.0, 0.0, 1.0, 0.0]))
    payload = artifact.to_dict(qm, network, {"method": "minmax"}, {"fab_calibration_images": 8.0},
                               {"kind": "bicubic", "threshold": 5.0})
    model_dir.write(root / "model", qm, payload, 19)
    return root / "model"
