"""Atomic output: write to a temporary sibling, then rename, so a crash never leaves a half-written file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import UserError


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: output folder does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
