"""Write a model directory (manifest.json, fp32.onnx, per engine form one INT8 graph per image-wise bit factor)
atomically.

Everything is written into a hidden staging folder beside the target and renamed into place at the end, so an
error or a kill never leaves a half-written model directory; an existing directory is replaced only on request.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import onnx

from adabm_deploy import artifact
from adabm_deploy.models.checkpoint import sha256_file
from adabm_deploy.quant.qgraph import QuantGraph
from runtime import manifest
from runtime.errors import UserError

from .qdq import build_model

PATCH_SIZE = 96  # the paper's patch-wise protocol; the runtime's default tile size
ARTIFACT_FILE = "calibration.json"
# engine name -> what its form of the INT8 graphs is; the manifest says which forms a directory holds
FORMS = {"onnxruntime": "QDQ ONNX for ONNX Runtime's fusions: b-bit Clip on uint8 after QuantizeLinear, "
                        "shuffles on uint8, adds requantized as QLinearAdd",
         "openvino": "QDQ ONNX for OpenVINO's low-precision transformations: b-bit float Clip before "
                     "QuantizeLinear, DepthToSpace shuffles, the residual stream held at the next conv's bits"}


def variant_file(factor: int | None, engine: str = "onnxruntime") -> str:
    if factor is None:
        return "fp32.onnx"
    return f"int8_f{factor:+d}.onnx" if engine == "onnxruntime" else f"int8_f{factor:+d}.{engine}.onnx"


def replaceable(out_dir: Path) -> str | None:
    """Why --force may not replace `out_dir`, or None: only a model directory this tool wrote, holding nothing
    but the files its manifest names, is ever deleted."""
    if out_dir.is_symlink() or not out_dir.is_dir():
        return "it is not a directory"
    try:
        data = json.loads((out_dir / manifest.MANIFEST).read_text())
        named = {data["fp32"]["file"], data["calibration"]["file"],
                 *(g["file"] for v in data["variants"] for g in (v["graphs"].values() if "graphs" in v else [v]))}
        if data["format"] != manifest.FORMAT:
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return f"it is not a model directory written by this tool (no valid {manifest.MANIFEST})"
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in named | {manifest.MANIFEST})
    if foreign:
        return f"it holds files that are not part of the model ({', '.join(foreign[:3])})"
    return None


def check_writable(out_dir: Path, force: bool) -> None:
    """Fail before any work if the directory cannot be created, or exists and may not be replaced."""
    out_dir = Path(os.path.abspath(out_dir))  # normalised: ".." must compare equal to the parent
    cwd = Path.cwd()
    if out_dir == cwd or out_dir in cwd.parents:
        raise UserError(f"{out_dir}: is the current directory or contains it; choose a new folder for the model")
    if out_dir.exists() or out_dir.is_symlink():
        if not force:
            raise UserError(f"{out_dir}: already exists (pass --force to replace a model directory)")
        reason = replaceable(out_dir)
        if reason:
            raise UserError(f"{out_dir}: --force refused, {reason}")
    parent = out_dir.parent
    if not parent.is_dir():
        raise UserError(f"{out_dir}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out_dir}: output folder {parent} is not writable")


def _save(model: onnx.ModelProto, path: Path) -> dict[str, str]:
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return {"file": path.name, "sha256": sha256_file(path)}


def _fill(staging: Path, qm: QuantGraph, artifact_data: dict[str, Any], opset: int) -> None:
    (staging / ARTIFACT_FILE).write_text(json.dumps(artifact_data, indent=1) + "\n")
    # each engine's points, one calibration's ranges: the forms of the engines the artifact serves
    plans = {engine: qm.for_engine(engine) for engine in FORMS if engine in artifact.engines(artifact_data)}
    variants = []
    for factor in manifest.FACTORS:
        graphs = {engine: _save(build_model(plans[engine], factor, opset), staging / variant_file(factor, engine))
                  for engine in plans}
        bits = qm.variant_bits(factor)
        variants.append({"factor": factor, "graphs": graphs, "layer_bits": bits, "fab": sum(bits) / len(bits)})
    payload = {
        "scale": qm.scale,
        "patch_size": PATCH_SIZE,
        "io": {"input": "lr", "output": "sr", "layout": "NCHW float32 RGB 0..255"},
        "complexity": {"thresholds": list(qm.image2bit.thresholds())},  # non-adaptive: all variants equal
        "cheap_rung": {"kind": artifact_data["cheap_rung"]["kind"],
                       "threshold": artifact_data["cheap_rung"]["threshold"]},
        "fp32": _save(build_model(qm, None, opset), staging / variant_file(None)),
        "engines": {name: {"form": FORMS[name]} for name in plans},
        "variants": variants,
        "checkpoint": artifact_data["checkpoint"],
        "calibration": {"file": ARTIFACT_FILE, "sha256": sha256_file(staging / ARTIFACT_FILE),
                        "method": artifact_data["settings"]["method"], "w_bits": qm.w_bits, "a_bits": qm.a_bits,
                        "full_quant": qm.full_quant, "adaptive": qm.adaptive_bits,
                        "fab_calibration_images": artifact_data["report"].get("fab_calibration_images")},
        "opset": opset,
        "producer": {"name": "adabm-deploy", "onnx": onnx.__version__},
    }
    (staging / manifest.MANIFEST).write_text(json.dumps(manifest.build(payload), indent=1) + "\n")
    manifest.load(staging)  # the runtime's own validation, before anything is renamed into place


def write(out_dir: Path, qm: QuantGraph, artifact_data: dict[str, Any], opset: int,
          force: bool = False) -> manifest.Manifest:
    out_dir = Path(os.path.abspath(out_dir))  # normalised: ".." must compare equal to the parent
    check_writable(out_dir, force)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    retired = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    try:
        staging.mkdir()
        _fill(staging, qm, artifact_data, opset)
        if out_dir.exists():
            os.replace(out_dir, retired)
        try:
            os.replace(staging, out_dir)
        except OSError:
            if retired.exists():
                os.replace(retired, out_dir)  # put the previous model back
            raise
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write model directory ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return manifest.load(out_dir)
