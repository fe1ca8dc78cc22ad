"""What every inference engine offers the pipeline: run one graph of a model directory on a batch of windows.

An engine compiles each graph it is asked for once per thread count (the window schedule asks for one thread,
or for all of them on a last lonely window), probes each graph before any image is read, and drops its compiled
graphs on close. A subclass says only how to compile a file and which file is its form of a graph.
"""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from ..manifest import Manifest

Compiled = Callable[[np.ndarray], np.ndarray]  # N x 3 x h x w float32 RGB 0..255 -> N x 3 x sh x sw float32


def cache_folder() -> Path:
    """Where engines keep what they measured or compiled once per machine: $ADABM_DEPLOY_CACHE, else the XDG
    cache folder (~/.cache) / adabm-deploy."""
    root = os.environ.get("ADABM_DEPLOY_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adabm-deploy"


class Engine(ABC):
    name: str  # as the manifest, --engine and --stats spell it
    label: str  # as a user reads it in an error message
    reason_line = 0  # the line of the library's exception messages that says what went wrong

    def __init__(self, model: Manifest, threads: int = 0):
        """threads: intra-op threads of a compiled graph unless a call asks for another count (0: one per core)."""
        self.model = model
        self.threads = threads
        self._sessions: dict[tuple[int | None, int], Compiled] = {}
        self._lock = threading.Lock()  # concurrent window calls must not compile a graph twice
        io = model.raw.get("io", {})
        self.input_name, self.output_name = io.get("input", "lr"), io.get("output", "sr")

    def layout(self, cores: int) -> tuple[int, int]:
        """(calls at once, threads per call) on `cores` cores: one single-threaded call per core, each on its own
        window (on 96x96 windows that keeps the cores busier than intra-op threads). An engine whose measured
        best differs says so by overriding this."""
        return cores, 1

    def path(self, factor: int | None) -> Path:
        """This engine's form of the graph: factor -1 / 0 / +1 an INT8 variant, None the FP32 graph."""
        return self.model.graph(self.name, factor)

    def reason(self, exc: Exception) -> str:
        """What went wrong, in one line of the engine library's exception."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return lines[self.reason_line] if lines else type(exc).__name__

    @abstractmethod
    def compile(self, path: Path, threads: int) -> Compiled:
        """Load `path` for `threads` intra-op threads; a graph it cannot load is a UserError naming the file."""

    def compiled(self, factor: int | None, threads: int | None = None) -> Compiled:
        """The graph for `factor`, compiled once per thread count asked."""
        threads = self.threads if threads is None else threads
        with self._lock:
            if (factor, threads) not in self._sessions:
                self._sessions[(factor, threads)] = self.compile(self.path(factor), threads)
            return self._sessions[(factor, threads)]

    def run(self, factor: int | None, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        """batch: N x 3 x h x w float32 RGB 0..255 -> N x 3 x (h*scale) x (w*scale) float32. The integer
        kernels give the same output whatever the thread count. An output of another size (a graph that maps
        some sizes, not others, by `scale`) is a UserError naming the graph, not a broadcast error in tiling."""
        out = self.compiled(factor, threads)(batch)
        n, _, h, w = batch.shape
        want = (n, 3, h * self.model.scale, w * self.model.scale)
        if out.shape != want:
            raise UserError(f"{self.model.root}: damaged model directory ({self.path(factor).name} maps {w}x{h} to "
                            f"{'x'.join(map(str, out.shape[:1:-1]))}"
                            f"{'' if out.ndim == 4 and out.shape[:2] == (n, 3) else f' (shape {out.shape})'}, not "
                            f"x{self.model.scale} as the manifest says)")
        return out

    def check(self, factors: list[int | None]) -> None:
        """Run each graph once on a small input before any image is read: a graph that cannot load, or whose
        output is not the manifest's scale (run() checks the size), stops the run here instead of after its first
        outputs. The probe is not square, so a graph that swaps height and width is caught too."""
        probe = np.zeros((1, 3, 16, 24), np.float32)
        for factor in factors:
            try:
                self.run(factor, probe)
            except UserError:
                raise
            except Exception as exc:  # each engine library raises its own exception types
                raise UserError(f"{self.path(factor)}: {self.label} cannot run it ({self.reason(exc)})") from None

    def close(self) -> None:
        """Drop the compiled graphs (a later call compiles them again)."""
        with self._lock:
            self._sessions.clear()
