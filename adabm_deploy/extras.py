"""The calibration commands need the `calib` extra (torch, onnx); a runtime-only install gets the install line
instead of a ModuleNotFoundError traceback. Torch-free, so it can run before anything imports torch."""
from __future__ import annotations

import importlib.util
import sys

INSTALL = "pip install torch==2.13.0 && pip install 'adabm-deploy[calib]'"


def require(module_name: str, prog: str, packages: tuple[str, ...] = ("torch",)) -> None:
    """Call at the top of a module that needs `packages`, before importing them. Run as a command
    (`module_name` is "__main__"): one line and exit 2; imported: ModuleNotFoundError with the same hint."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if not missing:
        return
    message = f"{prog} needs {' and '.join(missing)}, which this install lacks: {INSTALL}"
    if module_name == "__main__":
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    raise ModuleNotFoundError(message, name=missing[0])
