"""Atomic output: write to a temporary sibling, then rename, so a crash never leaves a half-written file.

Temporaries in progress are registered, so that a CLI stopped by a signal removes them on its way out
(`remove_temporaries`, called by errors.run_cli). JSON outputs never replace a file that is not JSON: a
mistyped `-o model.pt` must not turn a checkpoint into a report.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

_live: set[Path] = set()
_live_lock = threading.Lock()
_counter = itertools.count()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    check_json_target(path)
    write_text(path, json.dumps(payload, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_bytes(path: Path, data) -> None:
    """`data`: bytes or any buffer (a numpy array is written without a copy)."""
    with staged(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def check_json_target(path: Path) -> None:
    """Refuse a JSON output path that is a folder, or an existing file that is not JSON (a checkpoint, an image):
    callers run this before their work starts, and write_json again before it writes."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file to write JSON to")
    if not path.exists():
        if not path.absolute().parent.is_dir():
            raise UserError(f"{path}: output folder does not exist")
        if not os.access(path.absolute().parent, os.W_OK | os.X_OK):
            raise UserError(f"{path}: output folder is not writable")
        return
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16).lstrip()
            if head[:1] in (b"{", b"["):
                json.loads(head + f.read())
                return
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    raise UserError(f"{path}: exists and is not a JSON file; refusing to replace it with JSON")


def temporary_for(path: Path) -> Path:
    """A hidden sibling of `path` with the same suffix (encoders go by it), unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_counter)}.tmp{path.suffix}")


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` for the caller to write; renamed over `path` on success, removed on any
    failure (or by remove_temporaries when a signal stops the process)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: output folder does not exist")
    tmp = temporary_for(path)
    with _live_lock:
        _live.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        with _live_lock:
            _live.discard(tmp)


def remove_temporaries() -> None:
    """Remove every temporary still being written (a signal stopped the process mid-write)."""
    with _live_lock:
        leftovers = list(_live)
    for tmp in leftovers:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
