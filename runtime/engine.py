"""ONNX Runtime sessions for a model directory: one per variant, created on first use, INT8 kernels on CPU."""
from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort

from adabm_deploy.errors import UserError

from .manifest import Manifest


_SHARED_ARENA = False


def _share_arena() -> None:
    """One CPU arena for all sessions of the process: separate arenas would each keep their own high-water
    mark (measured: 542 -> 303 MiB peak for a 1080p output). ORT's arena is thread-safe."""
    global _SHARED_ARENA
    if not _SHARED_ARENA:
        ort.create_and_register_allocator(ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                                            ort.OrtMemType.DEFAULT), None)
        _SHARED_ARENA = True


def session_options(threads: int) -> ort.SessionOptions:
    _share_arena()
    so = ort.SessionOptions()
    so.add_session_config_entry("session.use_env_allocators", "1")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # QDQ -> QLinearConv / QLinearAdd
    so.intra_op_num_threads = threads  # 0: ORT's default, one per physical core
    so.log_severity_level = 3
    # No per-shape memory plan: ORT would keep one block per window shape on top of the arena's chunks (one
    # 94x100 window, single thread: 35.5 -> 18.5 MiB after a second run; latency unchanged)
    so.enable_mem_pattern = False
    return so


class Engine:
    def __init__(self, model: Manifest, threads: int = 0):
        """threads: intra-op threads of a session unless a call asks for another count (0: one per core)."""
        self.model = model
        self.threads = threads
        self._sessions: dict[tuple[int | None, int], ort.InferenceSession] = {}
        self._lock = threading.Lock()  # concurrent tile calls must not build a session twice
        io = model.raw.get("io", {})
        self.input_name, self.output_name = io.get("input", "lr"), io.get("output", "sr")

    def session(self, factor: int | None, threads: int | None = None) -> ort.InferenceSession:
        """factor -1 / 0 / +1: that INT8 variant; None: the FP32 graph. One session per thread count asked."""
        with self._lock:
            return self._session_locked(factor, self.threads if threads is None else threads)

    def _session_locked(self, factor: int | None, threads: int) -> ort.InferenceSession:
        if (factor, threads) not in self._sessions:
            path = self.model.fp32 if factor is None else self.model.variants[factor].path
            try:
                sess = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT raises its own exception types for unloadable graphs
                raise UserError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
            if [i.name for i in sess.get_inputs()] != [self.input_name]:
                raise UserError(f"{path}: graph input is not {self.input_name!r} as the manifest says")
            self._sessions[(factor, threads)] = sess
        return self._sessions[(factor, threads)]

    def check(self, factors: list[int | None]) -> None:
        """Run each graph once on a small input before any image is read: a graph that cannot load, or whose
        output is not the manifest's scale, stops the run here instead of after its first outputs."""
        side = 16
        probe = np.zeros((1, 3, side, side), np.float32)
        for factor in factors:
            try:
                out = self.run(factor, probe)
            except UserError:
                raise
            except Exception as exc:  # ORT's own exception types
                path = self.model.fp32 if factor is None else self.model.variants[factor].path
                raise UserError(f"{path}: ONNX Runtime cannot run it ({str(exc).splitlines()[0]})") from None
            want = (1, 3, side * self.model.scale, side * self.model.scale)
            if out.shape != want:
                path = self.model.fp32 if factor is None else self.model.variants[factor].path
                raise UserError(f"{self.model.root}: damaged model directory ({path.name} maps {side}x{side} to "
                                f"{out.shape[3]}x{out.shape[2]}, not x{self.model.scale} as the manifest says)")

    def close(self) -> None:
        """Drop the sessions (a later call creates them again)."""
        with self._lock:
            self._sessions.clear()

    def run(self, factor: int | None, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        """batch: N x 3 x h x w float32 RGB 0..255 -> N x 3 x (h*scale) x (w*scale) float32. The integer
        kernels give the same output whatever the thread count."""
        return self.session(factor, threads).run([self.output_name], {self.input_name: batch})[0]
