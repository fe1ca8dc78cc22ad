"""Upscale one picture: plan cells and windows, route each cell, run each window through its variant, stitch.

Windows stream through ONNX Runtime one per call, `workers` calls at a time, with a bounded number in flight
and rows finalised as soon as their tiles are in: memory is the uint8/uint16 output plus a strip of floats
and one window's working set per worker, whatever the image size.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np

from .engine import Engine
from .images import Picture, to_dtype
from .routing import route
from .tiling import Grid, StripStitcher, Tile, plan, window_weights


@dataclass
class Report:
    grid: Grid
    factors: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {f"{f:+d}": self.factors.count(f) for f in (-1, 0, 1)}

    def fab(self, layer_fab: dict[int, float]) -> float:
        """Mean activation bits over the adaptive layers, weighted by each cell's LR area."""
        areas = [(t.cell[1] - t.cell[0]) * (t.cell[3] - t.cell[2]) for t in self.grid.tiles()]
        return float(np.average([layer_fab[f] for f in self.factors], weights=areas))


VARIANTS = ("auto", "-1", "0", "+1", "fp32")


class Upscaler:
    def __init__(self, engine: Engine, patch: int, overlap: int, variant: str = "auto", workers: int = 1):
        """variant: auto routes each cell by complexity; -1 / 0 / +1 forces one INT8 variant; fp32 runs the
        FP32 graph (cells are still routed, for the report). workers > 1 runs that many ORT calls at once
        (give the engine single-threaded sessions): on small tiles this scales better than intra-op threads."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        self.engine, self.patch, self.overlap = engine, patch, overlap
        self.fixed = int(variant) if variant not in ("auto", "fp32") else None
        self.fp32 = variant == "fp32"
        self.scale = engine.model.scale
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def _infer(self, rgb: np.ndarray, tile: Tile, factor: int) -> np.ndarray:
        """One window -> its HR output, 3 x h x w float32."""
        y0, y1, x0, x1 = tile.window
        x = np.ascontiguousarray(rgb[y0:y1, x0:x1].transpose(2, 0, 1)[None], dtype=np.float32)
        return self.engine.run(None if self.fp32 else factor, x)[0]

    def _outputs(self, rgb: np.ndarray, jobs: Iterable[tuple[Tile, int]]) -> Iterator[np.ndarray]:
        """Window outputs in job order; with workers, at most two calls per worker are in flight."""
        if self._pool is None:
            yield from (self._infer(rgb, *job) for job in jobs)
            return
        pending: deque = deque()
        for job in jobs:
            pending.append(self._pool.submit(self._infer, rgb, *job))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def plan(self, h: int, w: int) -> Grid:
        return plan(h, w, self.patch, self.overlap)

    def upscale_rgb(self, rgb: np.ndarray, dtype: np.dtype, progress=None) -> tuple[np.ndarray, Report]:
        """rgb: H x W x 3 float32 0..255 -> (H*s x W*s x 3 in `dtype`, routing report)."""
        start = time.perf_counter()
        h, w = rgb.shape[:2]
        s = self.scale
        grid = self.plan(h, w)
        out = np.empty((h * s, w * s, 3), dtype)[:, :, ::-1]  # RGB view of a BGR buffer: written as is
        stitcher = StripStitcher(out, lambda block: to_dtype(block, dtype))
        report = Report(grid)

        def jobs() -> Iterator[tuple[Tile, int]]:
            for r in range(grid.rows):  # routed a row at a time, as the windows are submitted
                tiles = grid.row_tiles(r)
                factors = route(rgb, tiles, self.engine.model, self.fixed)
                report.factors += factors
                yield from zip(tiles, factors)

        last_col = len(grid.xs.cell_start) - 1
        for tile, sr in zip(grid.tiles(), self._outputs(rgb, jobs())):
            stitcher.add(tile.window[0] * s, tile.window[2] * s, sr, window_weights(grid, tile, s))
            if progress is not None:
                progress.update(1)
            if tile.col == last_col:  # the row is in: everything above the next row's windows is final
                below = grid.ys.win_start[tile.row + 1] if tile.row + 1 < grid.rows else h
                stitcher.finalize_until(below * s)
        report.seconds = time.perf_counter() - start
        return out, report

    def upscale(self, picture: Picture, progress=None) -> tuple[np.ndarray, np.ndarray | None, Report]:
        """-> (RGB output in the picture's dtype, alpha upscaled bicubically or None, report)."""
        rgb, report = self.upscale_rgb(picture.rgb, picture.dtype, progress)
        alpha = None
        if picture.alpha is not None:
            alpha = cv2.resize(picture.alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)
        return rgb, alpha, report
