"""Atomic output: write to a temporary sibling, then rename, so a crash never leaves a half-written file."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_bytes(path: Path, data) -> None:
    """`data`: bytes or any buffer (a numpy array is written without a copy)."""
    with staged(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` (same suffix, so encoders that go by it still work) for the caller to
    write; renamed over `path` on success, removed on any failure."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: output folder does not exist")
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
