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
