"""The calibration artifact: a versioned JSON file with everything the exporter needs besides the checkpoint.

It holds per-layer bits and ranges, I2B thresholds, weight clips, FAB and the settings used, bound to one
checkpoint by sha256 and architecture. Loading validates format, version, checkpoint and every key strictly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .atomic import write_json
from .errors import UserError
from .models.checkpoint import sha256_file
from .models.edsr import EDSR
from .quant.qedsr import QuantEDSR

FORMAT = "adabm-deploy/calibration"
VERSION = 1


def to_dict(qm: QuantEDSR, checkpoint: Path, settings: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    cfg = qm.cfg
    return {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint": {"file": Path(checkpoint).name, "sha256": sha256_file(checkpoint), "n_blocks": cfg.n_blocks,
                       "n_feats": cfg.n_feats, "scale": cfg.scale, "n_colors": cfg.n_colors,
                       "res_scale": cfg.res_scale},
        "w_bits": qm.w_bits, "a_bits": qm.a_bits, "full_quant": qm.full_quant, "per_channel": qm.per_channel,
        "adaptive": qm.adaptive_bits,
        "i2b_thresholds": list(qm.image2bit.thresholds()),
        "layer_factor_params": qm.layer2bit.m.detach().tolist(),
        "layer_factors": qm.layer2bit.factors(),
        "variant_bits": {str(f): qm.variant_bits(f) for f in (-1, 0, 1)},
        "activations": {q.name: {"lower": float(q.bounds()[0]), "upper": float(q.bounds()[1]),
                                 "adaptive": q.adaptive} for q in qm.act_quantizers()},
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
    if data.get("version") != VERSION:
        raise UserError(f"{path}: artifact version {data.get('version')} not supported (expected {VERSION})")
    return data


def _require(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise UserError(f"{path}: {message}")


def load(path: Path, fp: EDSR, checkpoint: Path) -> QuantEDSR:
    """Rebuild the calibrated QuantEDSR for `fp`; refuses an artifact made for another checkpoint."""
    data = read(path)
    try:
        ck = data["checkpoint"]
        digest = sha256_file(checkpoint)
        _require(ck["sha256"] == digest, path,
                 f"calibrated for another checkpoint ({ck['file']}, sha256 {ck['sha256'][:12]}...), "
                 f"not {Path(checkpoint).name} (sha256 {digest[:12]}...)")
        qm = QuantEDSR(fp, int(data["w_bits"]), int(data["a_bits"]), bool(data["full_quant"]),
                       bool(data["per_channel"]))
        qm.adaptive_bits = bool(data["adaptive"])
        acts = {q.name: q for q in qm.act_quantizers()}
        _require(set(data["activations"]) == set(acts), path,
                 f"activation points do not match the model: {sorted(set(data['activations']) ^ set(acts))[:3]}")
        for name, q in acts.items():
            q.set_bounds(float(data["activations"][name]["lower"]), float(data["activations"][name]["upper"]))
        convs = {c.name: c for c in qm.qconvs()}
        _require(set(data["weights"]) == set(convs), path,
                 f"quantized convs do not match the model: {sorted(set(data['weights']) ^ set(convs))[:3]}")
        for name, conv in convs.items():
            clip = torch.tensor(data["weights"][name]["clip"], dtype=torch.float32)
            _require(clip.shape == conv.wq.clip.shape, path, f"{name}: weight clip has {clip.numel()} values, "
                                                              f"expected {conv.wq.clip.numel()}")
            with torch.no_grad():
                conv.wq.clip.copy_(clip)
        m = torch.tensor(data["layer_factor_params"], dtype=torch.float32)
        _require(m.shape == qm.layer2bit.m.shape, path, f"{m.numel()} layer factors for "
                                                        f"{qm.layer2bit.m.numel()} adaptive layers")
        lo, hi = (float(v) for v in data["i2b_thresholds"])
        _require(lo <= hi, path, "I2B lower threshold above the upper one")
        with torch.no_grad():
            qm.layer2bit.m.copy_(m)
            qm.image2bit.lower.fill_(lo)
            qm.image2bit.upper.fill_(hi)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed calibration artifact ({type(exc).__name__}: {exc})") from None
    return qm.eval()
