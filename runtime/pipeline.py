"""Upscale one picture: plan cells and windows, route each cell, run each window through its variant, stitch.

Windows stream through ONNX Runtime one per call, `workers` calls at a time, with a bounded number in flight,
and the output comes back as bands of finished rows for the caller to write while the rest computes: memory
is a band or two of output and one window's working set per worker, whatever the image size.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from . import rung
from .engines import Engine
from .errors import UserError
from .images import as_float, to_dtype
from .manifest import FACTORS
from .routing import CHEAP, FP32, route
from .schedule import WindowSchedule
from .tiling import BandStitcher, Grid, Tile, plan


@dataclass
class Report:
    grid: Grid
    factors: list[int | str] = field(default_factory=list)  # per tile: a bit factor, or CHEAP
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Cells per route that ran: the cheap rung, each INT8 variant, and the FP32 graph where it ran."""
        counts = {CHEAP: self.factors.count(CHEAP), **{f"{f:+d}": self.factors.count(f) for f in (-1, 0, 1)}}
        return counts | ({FP32: self.factors.count(FP32)} if FP32 in self.factors else {})

    def fab(self, layer_fab: dict[int, float]) -> float | None:
        """Mean activation bits over the adaptive layers of the cells the network ran, weighted by each cell's
        LR area (None when the cheap rung took every cell)."""
        pairs = [(layer_fab[f], (t.cell[1] - t.cell[0]) * (t.cell[3] - t.cell[2]))
                 for t, f in zip(self.grid.tiles(), self.factors) if f != CHEAP]
        return float(np.average([b for b, _ in pairs], weights=[a for _, a in pairs])) if pairs else None


VARIANTS = ("auto", "-1", "0", "+1", "fp32")


class NonFiniteOutput(UserError):
    """The network gave NaN or infinity for a window: written out it would be a white or black block, so the
    picture is refused instead (the caller names the file)."""


class Upscaler:
    def __init__(self, engine: Engine, patch: int, overlap: int, variant: str = "auto", workers: int = 1,
                 cheap: bool = True):
        """variant: auto routes each cell by complexity (to the cheap rung too, unless `cheap` is False);
        -1 / 0 / +1 forces one INT8 variant; fp32 runs the FP32 graph (cells are still routed, for the report).
        workers > 1 runs that many ORT calls at once."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        self.engine, self.patch, self.overlap = engine, patch, overlap
        self.fixed = int(variant) if variant not in ("auto", "fp32") else None
        self.fp32 = variant == "fp32"
        self.cheap = cheap and variant == "auto"
        self.scale = engine.model.scale
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def graphs(self) -> list[int | None]:
        """The graphs this upscaler may run: INT8 variants by factor, None for the FP32 graph."""
        if self.fp32:
            return [None]
        return list(FACTORS) if self.fixed is None else [self.fixed]

    def _infer(self, rgb: np.ndarray, tile: Tile, factor: int | str, threads: int | None) -> np.ndarray:
        """One window -> its HR output, 3 x h x w float32 (the cheap rung's, or the network's)."""
        y0, y1, x0, x1 = tile.window
        window = as_float(rgb[y0:y1, x0:x1])
        if factor == CHEAP:
            return np.ascontiguousarray(rung.upscale(window, self.scale).transpose(2, 0, 1))
        x = np.ascontiguousarray(window.transpose(2, 0, 1)[None])
        out = self.engine.run(None if self.fp32 else factor, x, threads)[0]
        if not np.isfinite(out).all():
            raise NonFiniteOutput(f"the model's output is not finite (NaN or infinity) for the cell at LR "
                                  f"x {tile.cell[2]}, y {tile.cell[0]}; nothing written")
        return out

    def _scheduled(self, schedule: WindowSchedule, index: int, rgb: np.ndarray, tile: Tile, factor: int
                   ) -> np.ndarray:
        threads = schedule.begin(index)
        try:
            return self._infer(rgb, tile, factor, threads)
        finally:
            schedule.end(index)

    def _outputs(self, rgb: np.ndarray, jobs: list[tuple[Tile, int | str]]) -> Iterator[np.ndarray]:
        """Window outputs in job order; with workers, at most two network calls per worker are in flight, each
        with the threads its schedule gives it (runtime/schedule.py); cheap-rung windows are done here."""
        if self._pool is None:
            yield from (self._infer(rgb, *job, None) for job in jobs)
            return
        schedule = WindowSchedule(self.workers, sum(f != CHEAP for _, f in jobs))
        pending: deque = deque()
        index = 0
        for tile, factor in jobs:
            if factor == CHEAP:
                done: Future = Future()
                done.set_result(self._infer(rgb, tile, factor, None))
                pending.append(done)
            else:
                pending.append(self._pool.submit(self._scheduled, schedule, index, rgb, tile, factor))
                index += 1
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def plan(self, h: int, w: int) -> Grid:
        return plan(h, w, self.patch, self.overlap)

    def bands(self, rgb: np.ndarray, dtype: np.dtype, report: Report, progress=None) -> Iterator[np.ndarray]:
        """rgb: H x W x 3, uint8 / uint16 / float 0..255 -> the H*s x W*s x 3 output in `dtype`, top to
        bottom, one band of rows per row of windows. `report` (made for this image's grid) receives the
        routing as it happens."""
        start = time.perf_counter()
        grid = report.grid
        stitcher = BandStitcher(grid, self.scale, 3, dtype, lambda block: to_dtype(block, dtype))

        tiles = grid.tiles()  # all routed first (microseconds a cell): the schedule counts the network windows
        # what each cell ran: with --variant fp32 the FP32 graph, whatever the routing would have chosen
        report.factors = [FP32] * len(tiles) if self.fp32 else route(rgb, tiles, self.engine.model, self.fixed,
                                                                      self.cheap)
        for tile, sr in zip(tiles, self._outputs(rgb, list(zip(tiles, report.factors)))):
            band = stitcher.add(tile, sr)
            if progress is not None:
                progress.update(1)
            if band is not None:
                yield band
        report.seconds = time.perf_counter() - start

    def close(self) -> None:
        """Stop the worker threads (the sessions go with the engine)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def upscale_rgb(self, rgb: np.ndarray, dtype: np.dtype, progress=None) -> tuple[np.ndarray, Report]:
        """The whole output at once: (H*s x W*s x 3 in `dtype`, routing report)."""
        report = Report(self.plan(*rgb.shape[:2]))
        return np.concatenate(list(self.bands(rgb, dtype, report, progress))), report
