"""Benchmark folders (HR/ + LR_bicubic/X{s}/, the EDSR layout) and the seeded calibration set."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import UserError

from .bicubic import bicubic_downscale
from .images import list_images, read_rgb


@dataclass(frozen=True)
class BenchmarkPair:
    name: str
    hr: Path
    lr: Path


@dataclass(frozen=True)
class BenchmarkSet:
    name: str
    scale: int
    pairs: list[BenchmarkPair]

    def load(self, pair: BenchmarkPair) -> tuple[np.ndarray, np.ndarray]:
        """(LR, HR) as RGB uint8, HR cropped to exactly scale x the LR size."""
        lr, hr = read_rgb(pair.lr), read_rgb(pair.hr)
        h, w = lr.shape[0] * self.scale, lr.shape[1] * self.scale
        if hr.shape[0] < h or hr.shape[1] < w:
            raise UserError(f"{pair.hr}: HR {hr.shape[1]}x{hr.shape[0]} smaller than x{self.scale} of its LR")
        return lr, hr[:h, :w]


def open_benchmark(folder: Path, scale: int) -> BenchmarkSet:
    """Pair every HR image with LR_bicubic/X{scale}/<name>x{scale}.<ext>; refuse a folder that has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: benchmark folder not found")
    hr_dir, lr_dir = folder / "HR", folder / "LR_bicubic" / f"X{scale}"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise UserError(f"{folder}: expected HR/ and LR_bicubic/X{scale}/ inside (EDSR benchmark layout)")
    lr_by_stem = {p.stem: p for p in list_images(lr_dir)}
    pairs = []
    for hr in list_images(hr_dir):
        lr = lr_by_stem.get(f"{hr.stem}x{scale}")
        if lr is None:
            raise UserError(f"{hr}: no LR counterpart {hr.stem}x{scale}.* in {lr_dir}")
        pairs.append(BenchmarkPair(hr.stem, hr, lr))
    if not pairs:
        raise UserError(f"{hr_dir}: no images found")
    return BenchmarkSet(folder.name, scale, pairs)


def expand_benchmark_dirs(folders: list[Path]) -> list[Path]:
    """A folder with HR/ is one set; a folder of such folders (e.g. data/benchmark) is all of them."""
    out = []
    for folder in map(Path, folders):
        if folder.is_dir() and not (folder / "HR").is_dir():
            subsets = sorted(p for p in folder.iterdir() if (p / "HR").is_dir())
            if subsets:
                out.extend(subsets)
                continue
        out.append(folder)
    return out


def calibration_images(folder: Path, count: int, scale: int, seed: int) -> list[np.ndarray]:
    """`count` images drawn with `seed` from `folder`, downscaled by the project's MATLAB bicubic (LR only)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: calibration folder not found")
    paths = list_images(folder)
    if not paths:
        raise UserError(f"{folder}: no images found")
    chosen = random.Random(seed).sample(paths, min(count, len(paths)))
    return [bicubic_downscale(read_rgb(p), scale) for p in chosen]
