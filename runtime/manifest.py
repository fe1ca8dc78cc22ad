"""The model-directory contract: the exporter writes manifest.json, the runtime reads and validates it.

A model directory holds manifest.json, fp32.onnx and, for each engine form it holds (`engines`), one INT8 graph
per image-wise bit factor (-1, 0, +1). Validation is strict: a damaged or foreign directory is refused with one
line naming the problem, before any graph is compiled. Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .complexity import DEFINITION as COMPLEXITY_DEFINITION
from .errors import UserError
from .rung import KIND as RUNG_KIND

FORMAT = "adabm-deploy/model"
VERSION = 3  # 3: graphs per engine form; 2 adds the cheap rung; 1 (no rung) loads, every cell runs the network
READS = (1, 2, 3)
LEGACY_ENGINE = "onnxruntime"  # the one form that version 1 and 2 directories hold
MANIFEST = "manifest.json"
FACTORS = (-1, 0, 1)


def sha256_bytes(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Variant:
    factor: int
    layer_bits: list[int]
    graphs: dict[str, Path]  # engine name -> this variant's graph in that engine's form

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
    cheap_threshold: float | None = None  # cells at or below it take the cheap rung (runtime.rung)
    version: int = VERSION

    @property
    def engines(self) -> tuple[str, ...]:
        """The engine forms this directory holds."""
        return tuple(self.variants[0].graphs)

    def graph(self, engine: str, factor: int | None) -> Path:
        """The graph an engine runs: factor -1 / 0 / +1 an INT8 variant, None the FP32 graph (one for all)."""
        if factor is None:
            return self.fp32
        if engine not in self.variants[factor].graphs:
            raise UserError(f"{self.root}: this model directory holds no {engine} form (it holds "
                            f"{', '.join(self.engines)}); export it again to add one")
        return self.variants[factor].graphs[engine]

    @property
    def notice(self) -> str | None:
        """What a user of an older directory should know (one line), or None."""
        if self.version < 2:
            return (f"note: {self.root} is a version {self.version} model directory, without the cheap rung (every "
                    "cell runs the network); export it again to add one")
        return None

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


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__


def _integer(root: Path, value: Any, what: str, low: int, high: int) -> int:
    """JSON integers only (not true/false, not "4"), within [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(root, f"{what} is {_shown(value)}, expected an integer from {low} to {high}")
    return value


def _number(root: Path, value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _fail(root, f"{what} is {_shown(value)}, expected a finite number")
    return float(value)


def _forms(root: Path, data: dict[str, Any]) -> list[str]:
    """The engine forms a version 3 directory declares: `engines` maps each engine name to its form."""
    engines = data["engines"]
    if not isinstance(engines, dict) or not engines or not all(isinstance(e, str) and e for e in engines):
        raise _fail(root, f"engines is {_shown(engines)}, expected a map of engine names to their forms")
    return list(engines)


def load(root: Path, verify_hashes: bool = True) -> Manifest:
    """Read and validate a model directory; every problem is a UserError naming the directory and the field
    (or the file the system would not let us read)."""
    try:
        return _load(Path(root), verify_hashes)
    except OSError as exc:
        raise UserError(f"{exc.filename or root}: cannot read the model directory ({exc.strerror or exc})") from None


def _load(root: Path, verify_hashes: bool) -> Manifest:
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
    version = data.get("version")
    if version not in READS or isinstance(version, bool) or not isinstance(version, int):
        raise _fail(root, f"manifest version {_shown(version)} is not supported (this runtime reads versions "
                          f"{', '.join(map(str, READS))})")
    real_root = root.resolve()

    def checked(entry: Any, what: str) -> Path:
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or Path(name).name != name:
            raise _fail(root, f"{what} names no file in the directory ({_shown(name)})")
        file = root / name
        if not file.is_file():
            raise _fail(root, f"missing {name}")
        if file.resolve().parent != real_root:
            raise _fail(root, f"{name} is a link to {file.resolve()}, outside the model directory")
        if verify_hashes and sha256_bytes(file) != entry.get("sha256"):
            raise _fail(root, f"{name} does not match its sha256")
        return file

    try:
        if data["complexity"]["definition"] != COMPLEXITY_DEFINITION:
            raise _fail(root, "complexity definition differs from this runtime's")
        bounds = data["complexity"]["thresholds"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise _fail(root, f"complexity thresholds are {_shown(bounds)}, expected [lower, upper]")
        lower, upper = (_number(root, v, "a complexity threshold") for v in bounds)
        if not lower <= upper:
            raise _fail(root, "complexity thresholds out of order")
        scale = _integer(root, data["scale"], "scale", 1, 16)
        patch_size = _integer(root, data["patch_size"], "patch_size", 8, 4096)
        if not isinstance(data["variants"], list):
            raise _fail(root, "variants is not a list")
        forms = _forms(root, data) if version >= 3 else [LEGACY_ENGINE]
        variants: dict[int, Variant] = {}
        for v in data["variants"]:
            factor = _integer(root, v["factor"], "a variant's factor", -1, 1)
            bits = v["layer_bits"]
            if not isinstance(bits, list) or not bits:
                raise _fail(root, f"variant {factor:+d} has no layer_bits")
            bits = [_integer(root, b, f"a layer bit-width of variant {factor:+d}", 2, 8) for b in bits]
            if factor in variants:
                raise _fail(root, f"two variants for factor {factor:+d}")
            entries = v["graphs"] if version >= 3 else {LEGACY_ENGINE: v}
            if not isinstance(entries, dict) or sorted(entries) != sorted(forms):
                raise _fail(root, f"variant {factor:+d} has graphs for {_shown(entries)}, expected one for each of "
                                  f"the engines {', '.join(forms)}")
            graphs = {e: checked(entries[e], f"variant {factor:+d} for {e}") for e in forms}
            variants[factor] = Variant(factor, bits, graphs)
        if sorted(variants) != list(FACTORS):
            raise _fail(root, f"variants for factors {sorted(variants)}, expected {list(FACTORS)}")
        if len({len(v.layer_bits) for v in variants.values()}) != 1:
            raise _fail(root, "variants have different numbers of adaptive layers")
        cheap = None
        if version >= 2:
            rung = data["cheap_rung"]
            if not isinstance(rung, dict) or rung.get("kind") != RUNG_KIND:
                raise _fail(root, f"cheap_rung is {_shown(rung)}, expected kind {RUNG_KIND!r}")
            if rung["threshold"] is not None:
                cheap = _number(root, rung["threshold"], "the cheap rung's threshold")
        return Manifest(root=root, scale=scale, patch_size=patch_size, thresholds=(lower, upper),
                        fp32=checked(data["fp32"], "fp32"), variants=variants, raw=data, cheap_threshold=cheap,
                        version=version)
    except KeyError as exc:
        raise _fail(root, f"{MANIFEST} has no {exc.args[0]!r} field") from None
    except (TypeError, AttributeError) as exc:
        raise _fail(root, f"{type(exc).__name__}: {exc}") from None
