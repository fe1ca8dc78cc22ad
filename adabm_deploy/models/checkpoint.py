"""Strict EDSR checkpoint loading: infer the architecture from tensor shapes, refuse anything that does not match.

A checkpoint that loads "silently" with missing keys produces a plausible-looking but wrong network, so every
missing, unexpected or mis-shaped key is an error. Files are read with `weights_only=True`: a pickle from a
stranger must never run code.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from pathlib import Path

import torch

from ..errors import UserError
from .edsr import EDSR, EDSRConfig, upsampler_stages

# AdaBM's checkpoints name the two convs of a residual block conv1/conv2 instead of body.0/body.2.
_ADABM_BLOCK_KEY = re.compile(r"^body\.(\d+)\.conv([12])\.(weight|bias)$")
_BLOCK_KEY = re.compile(r"^body\.(\d+)\.body\.")
_BODY_END_KEY = re.compile(r"^body\.(\d+)\.weight$")
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"
# The official full EDSR (32 blocks x 256 channels) was trained with res_scale 0.1; every other EDSR with 1.
_FULL_EDSR = (32, 256)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a plain state dict of tensors, normalising AdaBM's conv1/conv2 naming to EDSR-PyTorch's."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(_ZIP) or head[:1] == _PICKLE):
        raise UserError(f"{path}: not a PyTorch checkpoint (neither the zip archive torch.save writes nor a pickle)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not read; we say why below
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused, it holds Python objects besides tensors (loading those could run "
                        "code; save a state dict of tensors)") from None
    except Exception as exc:  # torch raises many types for damaged files
        reason = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: damaged PyTorch checkpoint ({reason})") from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a state dict of tensors (EDSR-PyTorch layout expected)")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        m = _ADABM_BLOCK_KEY.match(key)
        if m:
            key = f"body.{m.group(1)}.body.{0 if m.group(2) == '1' else 2}.{m.group(3)}"
        out[key] = value
    return out


def infer_config(state: dict[str, torch.Tensor], source: str, res_scale: float | None = None) -> EDSRConfig:
    """Block count, width, colours and scale from tensor shapes; never hard-coded."""
    if "head.0.weight" not in state:
        raise UserError(f"{source}: not an EDSR checkpoint (no head.0.weight)")
    n_feats, n_colors = state["head.0.weight"].shape[:2]
    # from indices, not a count of keys: a checkpoint missing one key must report that key, not a shifted layout
    end = [int(m.group(1)) for m in map(_BODY_END_KEY.match, state) if m]
    blocks = [int(m.group(1)) for m in map(_BLOCK_KEY.match, state) if m]
    n_blocks = end[0] if len(end) == 1 else max(blocks, default=-1) + 1
    scale = 1
    idx = 0
    while f"tail.0.{idx}.weight" in state:
        ratio = state[f"tail.0.{idx}.weight"].shape[0] // n_feats
        factor = round(ratio ** 0.5)
        if factor * factor * n_feats != state[f"tail.0.{idx}.weight"].shape[0]:
            raise UserError(f"{source}: tail.0.{idx}.weight has {state[f'tail.0.{idx}.weight'].shape[0]} outputs, "
                            f"not a pixel-shuffle multiple of {n_feats}")
        scale *= factor
        idx += 2
    try:
        upsampler_stages(scale)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None
    if res_scale is None:
        res_scale = 0.1 if (n_blocks, n_feats) == _FULL_EDSR else 1.0
    return EDSRConfig(n_blocks=n_blocks, n_feats=n_feats, scale=scale, n_colors=n_colors, res_scale=res_scale)


def check_keys(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            problems.append(f"{len(keys)} {label} key(s): {shown}")
    if problems:
        raise UserError(f"{source}: checkpoint does not match EDSR layout: " + "; ".join(problems))


def load_edsr(path: str | Path, res_scale: float | None = None) -> EDSR:
    """Build an EDSR from a checkpoint file with strict key and shape matching; returns it in eval mode."""
    state = read_state_dict(path)
    cfg = infer_config(state, str(path), res_scale)
    model = EDSR(cfg)
    check_keys(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
