"""Inference engines behind one interface (base.Engine), one module per engine library.

Only this subpackage imports an engine library (onnxruntime, openvino); the pipeline, the API and the batch job
ask for an engine by name. Its modules import numpy, their own engine library and the runtime's errors and
manifest, nothing else.
"""
from __future__ import annotations

import importlib

from ..errors import UserError
from ..manifest import Manifest
from .base import Engine

ENGINES = {"onnxruntime": ("onnxruntime", "OnnxRuntimeEngine")}  # name -> (module, class)


def open_engine(name: str, model: Manifest, threads: int = 0) -> Engine:
    """An engine of that name for `model`; a name this runtime does not know is a UserError listing the known."""
    if name not in ENGINES:
        raise UserError(f"engine {name!r}: choose from {', '.join(ENGINES)}")
    module, cls = ENGINES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(model, threads)


__all__ = ["ENGINES", "Engine", "open_engine"]
