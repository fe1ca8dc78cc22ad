"""Upscale one picture: plan cells and windows, route each cell, run windows in per-variant batches, stitch.

Tiles are processed in bands of whole tile rows (at most `max_batch` tiles), so the float buffers hold one
band, not the image: memory is the uint8/uint16 output plus a bounded working set.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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
    def __init__(self, engine: Engine, patch: int, overlap: int, variant: str = "auto", max_batch: int = 16,
                 workers: int = 1):
        """variant: auto routes each cell by complexity; -1 / 0 / +1 forces one INT8 variant; fp32 runs the
        FP32 graph (cells are still routed, for the report). workers > 1 runs that many ORT calls at once
        (give the engine single-threaded sessions): on small tiles this scales better than intra-op threads."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        self.engine, self.patch, self.overlap, self.max_batch = engine, patch, overlap, max_batch
        self.fixed = int(variant) if variant not in ("auto", "fp32") else None
        self.fp32 = variant == "fp32"
        self.scale = engine.model.scale
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def _calls(self, band: list[Tile], factors: list[int]) -> list[tuple[int, list[Tile]]]:
        """(factor, tiles) per ORT call: per-variant batches of at most max_batch tiles, and small enough that
        every worker gets a share of the band."""
        size = max(1, min(self.max_batch, -(-len(band) // self.workers)))
        calls = []
        for factor in sorted(set(factors)):
            chosen = [t for t, f in zip(band, factors) if f == factor]
            calls += [(factor, chosen[i:i + size]) for i in range(0, len(chosen), size)]
        return calls

    def _infer(self, rgb: np.ndarray, grid: Grid, factor: int, part: list[Tile]) -> np.ndarray:
        wh, ww = grid.window_shape
        batch = np.stack([rgb[t.window[0]:t.window[0] + wh, t.window[1]:t.window[1] + ww] for t in part])
        return self.engine.run(None if self.fp32 else factor,
                               np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))

    def plan(self, h: int, w: int) -> Grid:
        return plan(h, w, self.patch, self.overlap)

    def _bands(self, grid: Grid) -> list[list[Tile]]:
        per_row = len(grid.xs.cell_start)
        rows_per_band = max(1, self.max_batch // per_row)
        return [[t for r in range(r0, min(r0 + rows_per_band, grid.rows)) for t in grid.row_tiles(r)]
                for r0 in range(0, grid.rows, rows_per_band)]

    def upscale_rgb(self, rgb: np.ndarray, dtype: np.dtype, progress=None) -> tuple[np.ndarray, Report]:
        """rgb: H x W x 3 float32 0..255 -> (H*s x W*s x 3 in `dtype`, routing report)."""
        start = time.perf_counter()
        h, w = rgb.shape[:2]
        s = self.scale
        grid = self.plan(h, w)
        wh, ww = grid.window_shape
        out = np.empty((h * s, w * s, 3), dtype)[:, :, ::-1]  # RGB view of a BGR buffer: written as is
        stitcher = StripStitcher(out, lambda block: to_dtype(block, dtype))
        report = Report(grid)
        bands = self._bands(grid)
        for b, band in enumerate(bands):
            stitcher.reserve((band[-1].window[0] + wh) * s)
            factors = route(rgb, band, self.engine.model, self.fixed)
            report.factors += factors
            calls = self._calls(band, factors)
            results = self._pool.map(lambda call: self._infer(rgb, grid, *call), calls) if self._pool else \
                (self._infer(rgb, grid, *call) for call in calls)
            for (_, part), sr in zip(calls, results):
                for t, tile_out in zip(part, sr):
                    stitcher.add(t.window[0] * s, t.window[1] * s, tile_out, window_weights(grid, t, s))
                if progress is not None:
                    progress.update(len(part))
            next_top = bands[b + 1][0].window[0] * s if b + 1 < len(bands) else h * s
            stitcher.finalize_until(next_top)
        report.seconds = time.perf_counter() - start
        return out, report

    def upscale(self, picture: Picture, progress=None) -> tuple[np.ndarray, np.ndarray | None, Report]:
        """-> (RGB output in the picture's dtype, alpha upscaled bicubically or None, report)."""
        rgb, report = self.upscale_rgb(picture.rgb, picture.dtype, progress)
        alpha = None
        if picture.alpha is not None:
            alpha = cv2.resize(picture.alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)
        return rgb, alpha, report
