"""The calibration artifact: a versioned JSON file with everything the exporter needs besides the checkpoint.

It holds each quantization point's range and bits role, weight clips, the adaptive convs with their layer
factors, I2B thresholds, the per-variant bits, FAB and the settings used, bound to one checkpoint by sha256,
architecture and config. Loading validates format, version, checkpoint and every point strictly: points are
named after the captured graph's nodes, so an artifact fits exactly the network it was made for.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from runtime.atomic import write_json
from runtime.errors import UserError

from .models import Network
from .fidelity import MAX_CORRECTION
from .quant.arith import MAX_BITS, MIN_BITS
from .quant.points import ENGINES
from .quant.qgraph import QuantGraph

FORMAT = "adabm-deploy/calibration"
# Physical bounds a calibration's numbers stay within (checked on load, before anything is exported): an
# activation of a network on 0..255 pixels is far below 1e6, a range narrower than 1e-6 has no steps, a layer
# factor m is clamped to [-1, 1] in use and Adam moves it by at most its learning rate per step, a weight clip
# is positive and at most a few times the largest weight it clips (OMSE starts it at or below that weight).
MAX_ACTIVATION, MIN_RANGE, MAX_LAYER_PARAM, MAX_CLIP_OVER_WEIGHT = 1e6, 1e-6, 10.0, 4.0
VERSION = 2  # 2: points named after graph nodes, any architecture (1: EDSR only, fixed point names)


def to_dict(qm: QuantGraph, network: Network, settings: dict[str, Any], report: dict[str, Any],
            cheap_rung: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint": network.describe(),
        "w_bits": qm.w_bits, "a_bits": qm.a_bits, "full_quant": qm.full_quant, "per_channel": qm.per_channel,
        "adaptive": qm.adaptive_bits,
        "i2b_thresholds": list(qm.image2bit.thresholds()),
        "adaptive_layers": list(qm.plan.adaptive),
        "layer_factor_params": qm.layer2bit.m.detach().tolist(),
        "layer_factors": qm.layer2bit.factors(),
        "variant_bits": {str(f): qm.variant_bits(f) for f in (-1, 0, 1)},
        "output_correction": {str(f): qm.correction[f + 1].tolist() for f in (-1, 0, 1)},
        "engines": list(ENGINES),  # whose quantization points these ranges serve (quant/points.py)
        "cheap_rung": cheap_rung,
        "activations": {p.name: dict(zip(("lower", "upper"), qm.quantizer[p.name].bound_values()), bits=p.bits)
                        for p in qm.plan.points.values()},
        "weights": {c.name: {"bits": c.wq.bits, "clip": c.wq.clip.detach().abs().tolist()} for c in qm.qconvs()},
        "settings": settings,
        "report": report,
    }


def save(path: Path, payload: dict[str, Any]) -> None:
    write_json(path, payload)


def read(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: calibration artifact not found")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a calibration artifact (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not a calibration artifact (format is not {FORMAT!r})")
    if data.get("version") == 1:
        raise UserError(f"{path}: artifact version 1 (written before points were named after the graph) is not "
                        "supported; calibrate again with python -m adabm_deploy.calibrate")
    if data.get("version") != VERSION:
        raise UserError(f"{path}: artifact version {data.get('version')!r} not supported (expected {VERSION})")
    return data


def _require(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise UserError(f"{path}: {message}")


def _number(value, what: str, path: Path, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number (not a bool) within [low, high], or a UserError naming `what`."""
    _require(isinstance(value, (int, float)) and not isinstance(value, bool), path, f"{what} is {value!r}, not a number")
    _require(math.isfinite(value), path, f"{what} is {value!r}, not a finite number")
    _require(low <= value <= high, path, f"{what} is {value!r}, outside [{low:g}, {high:g}]")
    return float(value)


def _bits(value, what: str, path: Path) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool) and MIN_BITS <= value <= MAX_BITS, path,
             f"{what} is {value!r}: the method defines whole bit-widths {MIN_BITS}..{MAX_BITS} (INT8 containers)")
    return value


def _flag(value, what: str, path: Path) -> bool:
    _require(isinstance(value, bool), path, f"{what} is {value!r}, not true or false")
    return value


def check_bounds(data: dict[str, Any], path: Path) -> None:
    """Refuse numbers no calibration produces (NaN, infinities, swapped or empty ranges, bits outside 2..8,
    non-positive clips, runaway layer factors), naming the first; shapes are checked against the network in
    load_payload."""
    _bits(data["w_bits"], "w_bits", path)
    _bits(data["a_bits"], "a_bits", path)
    for key in ("full_quant", "per_channel", "adaptive"):
        _flag(data[key], key, path)
    for name, act in data["activations"].items():
        lower = _number(act["lower"], f"{name}: lower bound", path, -MAX_ACTIVATION, 0.0)
        upper = _number(act["upper"], f"{name}: upper bound", path, -MAX_ACTIVATION, MAX_ACTIVATION)
        _require(upper - lower >= MIN_RANGE, path, f"{name}: range [{lower:g}, {upper:g}] is empty or reversed")
        _require(act["bits"] in ("adaptive", "fixed", 8), path, f"{name}: bits {act['bits']!r} is not adaptive, "
                                                                   "fixed or 8")
    for name, weights in data["weights"].items():
        _bits(weights["bits"], f"{name}: weight bits", path)
        _require(isinstance(weights["clip"], list) and weights["clip"], path, f"{name}: weight clip is not a list")
        for value in weights["clip"]:
            _number(value, f"{name}: weight clip", path, 0.0)
            _require(value > 0, path, f"{name}: weight clip is {value!r}; it must be positive")
    for k, m in enumerate(data["layer_factor_params"]):
        _number(m, f"layer factor {k}", path, -MAX_LAYER_PARAM, MAX_LAYER_PARAM)
    _require(isinstance(data["i2b_thresholds"], list) and len(data["i2b_thresholds"]) == 2, path,
             "i2b_thresholds is not a [lower, upper] pair")
    lo, hi = (_number(v, "I2B threshold", path) for v in data["i2b_thresholds"])
    _require(lo <= hi, path, f"I2B thresholds [{lo:g}, {hi:g}]: the lower one is above the upper one")
    for f, values in data.get("output_correction", {}).items():
        _require(f in ("-1", "0", "1") and isinstance(values, list), path, f"output_correction {f!r} is malformed")
        for v in values:
            _number(v, f"output correction of variant {f}", path, -MAX_CORRECTION, MAX_CORRECTION)
    rung = data["cheap_rung"]
    _require(rung["kind"] == "bicubic", path, "cheap_rung must be bicubic")
    if rung["threshold"] is not None:
        _number(rung["threshold"], "cheap rung threshold", path, 0.0)


def _differences(found, expected) -> str:
    return ", ".join(sorted(set(found) ^ set(expected))[:3])


def engines(data: dict[str, Any]) -> list[str]:
    """The engines whose plans an artifact serves; one written before engine plans serves all (each plan's
    ranges derive from ONNX Runtime's, which every artifact holds)."""
    return list(data.get("engines", ENGINES))


def load(path: Path, network: Network) -> QuantGraph:
    """Rebuild the calibrated QuantGraph for `network`; refuses an artifact made for another checkpoint."""
    return load_payload(read(path), network, path)


def load_payload(data: dict[str, Any], network: Network, path) -> QuantGraph:
    """load() of an artifact already read (`path` names it in messages)."""
    try:
        check_bounds(data, path)
        ck = data["checkpoint"]
        _require(ck["sha256"] == network.sha256, path,
                 f"calibrated for another checkpoint ({ck['file']}, sha256 {ck['sha256'][:12]}...), "
                 f"not {network.checkpoint.name} (sha256 {network.sha256[:12]}...)")
        _require(ck.get("config", {}).get("scale") == network.scale, path,
                 f"calibrated for x{ck.get('config', {}).get('scale')}, the network is x{network.scale}")
        qm = QuantGraph(network.graph, data["w_bits"], data["a_bits"], data["full_quant"], data["per_channel"])
        qm.adaptive_bits = data["adaptive"]
        _require(set(engines(data)) <= set(ENGINES) and engines(data), path,
                 f"engines {data.get('engines')!r}: expected a list from {', '.join(ENGINES)}")
        acts = data["activations"]
        _require(set(acts) == set(qm.quantizer), path,
                 f"quantization points do not match the network: {_differences(acts, qm.quantizer)}")
        for name, q in qm.quantizer.items():
            _require(acts[name]["bits"] == qm.plan.points[name].bits, path,
                     f"{name}: bits {acts[name]['bits']!r} in the artifact, {qm.plan.points[name].bits!r} here")
            q.set_bounds(float(acts[name]["lower"]), float(acts[name]["upper"]))
        convs = {c.name: c for c in qm.qconvs()}
        _require(set(data["weights"]) == set(convs), path,
                 f"quantized convs do not match the network: {_differences(data['weights'], convs)}")
        for name, conv in convs.items():
            clip = torch.tensor(data["weights"][name]["clip"], dtype=torch.float32)
            _require(clip.shape == conv.wq.clip.shape, path, f"{name}: weight clip has {clip.numel()} values, "
                                                              f"expected {conv.wq.clip.numel()}")
            _require(data["weights"][name]["bits"] == conv.wq.bits, path,
                     f"{name}: weight bits {data['weights'][name]['bits']} in the artifact, {conv.wq.bits} here")
            largest = MAX_CLIP_OVER_WEIGHT * float(conv.weight.abs().max())
            _require(float(clip.max()) <= largest, path, f"{name}: weight clip {float(clip.max()):g} is over "
                                                          f"{MAX_CLIP_OVER_WEIGHT:g}x its largest weight")
            with torch.no_grad():
                conv.wq.clip.copy_(clip)
        _require(data["adaptive_layers"] == qm.plan.adaptive, path, "adaptive convs do not match the network")
        m = torch.tensor(data["layer_factor_params"], dtype=torch.float32)
        _require(m.shape == qm.layer2bit.m.shape, path, f"{m.numel()} layer factors for "
                                                        f"{qm.layer2bit.m.numel()} adaptive convs")
        lo, hi = data["i2b_thresholds"]
        with torch.no_grad():
            qm.layer2bit.m.copy_(m)
            qm.image2bit.lower.fill_(lo)
            qm.image2bit.upper.fill_(hi)
        correction = data.get("output_correction")  # absent: an artifact from before casts were corrected
        if correction is not None:
            _require(sorted(correction) == ["-1", "0", "1"] and all(len(correction[f]) == qm.graph.n_colors
                                                                  for f in correction), path,
                     f"output_correction needs {qm.graph.n_colors} values for each of the variants -1, 0, 1")
            with torch.no_grad():
                qm.correction.copy_(torch.tensor([correction[f] for f in ("-1", "0", "1")]))
        _require(data["variant_bits"] == {str(f): qm.variant_bits(f) for f in (-1, 0, 1)}, path,
                 f"variant_bits {data['variant_bits']} do not follow from the layer factors")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: malformed calibration artifact ({type(exc).__name__}: {exc})") from None
    return qm.eval()
