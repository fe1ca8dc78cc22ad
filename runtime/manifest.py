"""The model-directory contract: the exporter writes manifest.json, the runtime reads and validates it.

A model directory holds manifest.json, fp32.onnx and one INT8 QDQ graph per image-wise bit factor (-1, 0, +1).
Validation is strict: a damaged or foreign directory is refused with one line naming the problem, before any
session is created. Torch-free.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adabm_deploy.complexity import DEFINITION as COMPLEXITY_DEFINITION
from adabm_deploy.errors import UserError

FORMAT = "adabm-deploy/model"
VERSION = 1
MANIFEST = "manifest.json"
FACTORS = (-1, 0, 1)


def sha256_bytes(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Variant:
    factor: int
    path: Path
    layer_bits: list[int]

    @property
    def fab(self) -> float:
        return sum(self.layer_bits) / len(self.layer_bits)


@dataclass(frozen=True)
class Manifest:
    root: Path
    scale: int
    patch_size: int
    thresholds: tuple[float, float]
    fp32: Path
    variants: dict[int, Variant]
    raw: dict[str, Any]

    def factor_for(self, complexity: float) -> int:
        """Image-to-bit mapping of the paper (eq. 3) with the calibrated thresholds."""
        lower, upper = self.thresholds
        return -1 if complexity < lower else (1 if complexity > upper else 0)


def build(payload: dict[str, Any]) -> dict[str, Any]:
    """Stamp format, version and the complexity definition onto the exporter's payload."""
    return {"format": FORMAT, "version": VERSION, "complexity": {"definition": COMPLEXITY_DEFINITION,
                                                                 **payload.pop("complexity")}, **payload}


def _fail(root: Path, message: str) -> UserError:
    return UserError(f"{root}: damaged model directory ({message})")


def load(root: Path, verify_hashes: bool = True) -> Manifest:
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise UserError(f"{root}: model directory not found")
    if not path.is_file():
        raise _fail(root, f"no {MANIFEST}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(root, f"{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _fail(root, f"{MANIFEST} format is not {FORMAT!r}")
    if data.get("version") != VERSION:
        raise _fail(root, f"manifest version {data.get('version')} not supported (expected {VERSION})")
    try:
        if data["complexity"]["definition"] != COMPLEXITY_DEFINITION:
            raise _fail(root, "complexity definition differs from this runtime's")
        lower, upper = (float(v) for v in data["complexity"]["thresholds"])
        if not lower <= upper:
            raise _fail(root, "complexity thresholds out of order")

        def checked(entry: dict[str, Any]) -> Path:
            file = root / entry["file"]
            if file.parent != root or not file.is_file():
                raise _fail(root, f"missing {entry['file']}")
            if verify_hashes and sha256_bytes(file) != entry["sha256"]:
                raise _fail(root, f"{entry['file']} does not match its sha256")
            return file

        variants = {int(v["factor"]): Variant(int(v["factor"]), checked(v), [int(b) for b in v["layer_bits"]])
                    for v in data["variants"]}
        if sorted(variants) != list(FACTORS):
            raise _fail(root, f"variants for factors {sorted(variants)}, expected {list(FACTORS)}")
        return Manifest(root=root, scale=int(data["scale"]), patch_size=int(data["patch_size"]),
                        thresholds=(lower, upper), fp32=checked(data["fp32"]), variants=variants, raw=data)
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(root, f"{type(exc).__name__}: {exc}") from None
