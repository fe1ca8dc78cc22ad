"""The calibration artifact: a versioned JSON file with everything the exporter needs besides the checkpoint.

It holds each quantization point's range and bits role, weight clips, the adaptive convs with their layer
factors, I2B thresholds, the per-variant bits, FAB and the settings used, bound to one checkpoint by sha256,
architecture and config. Loading validates format, version, checkpoint and every point strictly: points are
named after the captured graph's nodes, so an artifact fits exactly the network it was made for.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from runtime.atomic import write_json
from runtime.errors import UserError

from .models import Network
from .quant.points import ENGINES
from .quant.qgraph import QuantGraph

FORMAT = "adabm-deploy/calibration"
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
        rung = data["cheap_rung"]
        _require(rung["kind"] == "bicubic" and (rung["threshold"] is None or isinstance(rung["threshold"], (int, float))
                                                and not isinstance(rung["threshold"], bool)),
                 path, "cheap_rung must be bicubic with a number or null threshold")
        ck = data["checkpoint"]
        _require(ck["sha256"] == network.sha256, path,
                 f"calibrated for another checkpoint ({ck['file']}, sha256 {ck['sha256'][:12]}...), "
                 f"not {network.checkpoint.name} (sha256 {network.sha256[:12]}...)")
        _require(ck.get("config", {}).get("scale") == network.scale, path,
                 f"calibrated for x{ck.get('config', {}).get('scale')}, the network is x{network.scale}")
        qm = QuantGraph(network.graph, int(data["w_bits"]), int(data["a_bits"]), bool(data["full_quant"]),
                        bool(data["per_channel"]))
        qm.adaptive_bits = bool(data["adaptive"])
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
            with torch.no_grad():
                conv.wq.clip.copy_(clip)
        _require(data["adaptive_layers"] == qm.plan.adaptive, path, "adaptive convs do not match the network")
        m = torch.tensor(data["layer_factor_params"], dtype=torch.float32)
        _require(m.shape == qm.layer2bit.m.shape, path, f"{m.numel()} layer factors for "
                                                        f"{qm.layer2bit.m.numel()} adaptive convs")
        lo, hi = (float(v) for v in data["i2b_thresholds"])
        _require(lo <= hi, path, "I2B lower threshold above the upper one")
        with torch.no_grad():
            qm.layer2bit.m.copy_(m)
            qm.image2bit.lower.fill_(lo)
            qm.image2bit.upper.fill_(hi)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: malformed calibration artifact ({type(exc).__name__}: {exc})") from None
    return qm.eval()
