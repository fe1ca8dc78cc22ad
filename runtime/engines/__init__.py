"""Inference engines behind one interface (base.Engine), one module per engine library, and the choice among
them (choice.py: by name, or the fastest on this machine by a timed probe).

Only this subpackage imports an engine library (onnxruntime, openvino); the pipeline, the API and the batch job
ask for an engine by name. Its modules import numpy, their own engine library and the runtime's errors,
manifest, cpu and atomic modules, nothing else.
"""
from __future__ import annotations

import importlib
import importlib.util

from ..errors import UserError
from ..manifest import Manifest
from .base import Engine

# name -> (module, class, the package that provides the library, the command that installs it)
ENGINES = {"onnxruntime": ("onnxruntime", "OnnxRuntimeEngine", "onnxruntime", "pip install onnxruntime"),
           "openvino": ("openvino", "OpenVinoEngine", "openvino", "pip install 'adabm-deploy[openvino]'")}


def installed() -> list[str]:
    """The engines whose library this install has."""
    return [name for name, (_, _, package, _) in ENGINES.items() if importlib.util.find_spec(package) is not None]


def open_engine(name: str, model: Manifest, threads: int = 0) -> Engine:
    """An engine of that name for `model`: a name this runtime does not know, a library this install lacks or a
    model directory without that engine's form is a UserError saying so."""
    if name not in ENGINES:
        raise UserError(f"engine {name!r}: choose from auto, {', '.join(ENGINES)}")
    module, cls, package, install = ENGINES[name]
    if importlib.util.find_spec(package) is None:
        raise UserError(f"engine {name}: {package} is not installed ({install})")
    if name not in model.engines:
        raise UserError(f"{model.root}: this model directory holds no {name} form (it holds "
                        f"{', '.join(model.engines)}); export it again to add one")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(model, threads)


__all__ = ["ENGINES", "Engine", "installed", "open_engine"]
