"""Console scripts of the commands that need the `calib` extra. Each checks the extra first (a runtime-only
install gets the install line, not a traceback), then runs the command as `python -m` does."""
from __future__ import annotations

import importlib
import sys

from .extras import require


def _run(module: str, prog: str, packages: tuple[str, ...] = ("torch",)) -> None:
    require("__main__", prog, packages)
    from runtime.command import run_cli
    sys.exit(run_cli(importlib.import_module(module).main))


def calibrate() -> None:
    _run("adabm_deploy.calibrate", "adabm-calibrate")


def evaluate() -> None:
    _run("adabm_deploy.evaluate", "adabm-evaluate")


def experiments() -> None:
    _run("adabm_deploy.experiments", "adabm-experiments")


def export() -> None:
    _run("export.__main__", "adabm-export", ("torch", "onnx"))
