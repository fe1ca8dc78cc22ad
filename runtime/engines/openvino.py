"""OpenVINO's CPU plugin: the model directory's OpenVINO form, whose quantized convs it runs u8 x i8 (on AMX-INT8
where the CPU has it, else VNNI) with the requantization fused.

Float parts run in f32 (INFERENCE_PRECISION_HINT), not the bf16 the plugin defaults to on AMX CPUs: the graph
was calibrated and is checked against a float32 simulation, and a bf16 residual path would drift from it.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openvino as ov
from openvino.frontend import FrontEndManager

from ..errors import UserError
from .base import Compiled, Engine, cache_folder

_CORE: ov.Core | None = None
_CORE_LOCK = threading.Lock()


def core() -> ov.Core:
    """One OpenVINO Core per process (each holds the plugin and its thread pools), compiling through a cache of
    compiled graphs in the user's cache folder (0.63 -> 0.15 s a graph once cached), where that can be made."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = ov.Core()
            folder = cache_folder() / "openvino"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                _CORE.set_property({"CACHE_DIR": str(folder)})
            except OSError:
                pass
        return _CORE


def read_onnx(path: Path) -> ov.Model:
    """The ONNX frontend alone: Core.read_model would hand a file the ONNX frontend refuses to the next one,
    which fills stderr with its own complaints."""
    frontend = FrontEndManager().load_by_framework("onnx")
    return frontend.convert(frontend.load(str(path)))


def config(threads: int) -> dict[str, object]:
    """One stream of `threads` threads (0: the plugin's default, one per core), f32 float parts."""
    cfg: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    return cfg


class OpenVinoEngine(Engine):
    name = "openvino"
    label = "OpenVINO"
    reason_line = -1  # OpenVINO's last line says what went wrong, the ones before where in its sources

    def layout(self, cores: int) -> tuple[int, int]:
        """One call at a time on every core: oneDNN splits a 100x100 window well, and concurrent calls into one
        stream wait for each other (480x270 frame routed, 2 cores, Xeon with AMX: 0.43 s against 0.55 s for two
        single-threaded calls at once; docs/benchmarks.md, rows "frame (layout)")."""
        return 1, cores

    def compile(self, path: Path, threads: int) -> Compiled:
        try:
            model = read_onnx(path)
            if [i.get_any_name() for i in model.inputs] != [self.input_name]:
                raise UserError(f"{path}: graph input is not {self.input_name!r} as the manifest says")
            compiled = core().compile_model(model, "CPU", config(threads))
        except UserError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise UserError(f"{path}: OpenVINO cannot compile it ({self.reason(exc)})") from None
        local = threading.local()  # an infer request is not thread-safe: one per calling thread

        def run(batch: np.ndarray) -> np.ndarray:
            request = getattr(local, "request", None)
            if request is None:
                request = local.request = compiled.create_infer_request()
            request.infer({0: batch})
            return request.get_output_tensor(0).data.copy()  # the request reuses its buffer on the next call
        return run
