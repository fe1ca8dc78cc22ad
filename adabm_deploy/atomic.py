"""Atomic output: write to a temporary sibling, then rename, so a crash never leaves a half-written file."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import UserError


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_bytes(path: Path, data) -> None:
    """`data`: bytes or any buffer (a numpy array is written without a copy)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: output folder does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
