"""Shared fixtures: the reference data in ../shared (skipped with a clear reason where it is absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} not present (tests read ../shared beside the checkout)")
    return path


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
    """A model directory of a 1-block, 8-channel EDSR x4 with random weights and fixed ranges, written by the
    exporter: the real runtime path (three INT8 variants, manifest, hashes) at a fraction of the compute."""
    import torch

    from adabm_deploy import artifact
    from adabm_deploy.models.edsr import EDSR, EDSRConfig
    from adabm_deploy.quant import QuantEDSR
    from export import model_dir

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    fp = EDSR(EDSRConfig(n_blocks=1, n_feats=8, scale=4)).eval()
    with torch.no_grad():
        for shift, sign in ((fp.sub_mean, -1.0), (fp.add_mean, 1.0)):
            shift.weight.copy_(torch.eye(3)[:, :, None, None])
            shift.bias.fill_(sign * 114.0)
    checkpoint = root / "tiny_x4.pt"
    torch.save(fp.state_dict(), checkpoint)
    qm = QuantEDSR(fp, 8, 8, full_quant=True)
    for q in qm.act_quantizers():
        q.set_bounds(-60.0, 60.0)
    for conv in qm.qconvs():
        conv.wq.init_clip(conv.weight, "minmax")
    with torch.no_grad():
        qm.image2bit.lower.fill_(10.0)
        qm.image2bit.upper.fill_(40.0)
        qm.layer2bit.m.copy_(torch.tensor([-1.0, 0.0]))
    payload = artifact.to_dict(qm, checkpoint, {"method": "minmax"}, {"fab_calibration_images": 8.0})
    model_dir.write(root / "model", qm, checkpoint, payload, 19)
    return root / "model"
