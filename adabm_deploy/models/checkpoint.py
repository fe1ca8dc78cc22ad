"""Reading checkpoints safely and binding them to a module strictly.

A checkpoint that loads "silently" with missing keys produces a plausible-looking but wrong network, so every
missing, unexpected or mis-shaped key is an error. Files are read with `weights_only=True`: a pickle from a
stranger must never run code.
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch

from runtime.errors import UserError

_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"
# what training code wraps a state dict in: EDSR-PyTorch resumable checkpoints, BasicSR (EMA weights first)
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat state dict of tensors from a file, unwrapped from a training wrapper (`params_ema`, `params`,
    `state_dict`, `model`) where it has one."""
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
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        obj = obj[key] if key else obj
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    for key, value in obj.items():
        check_tensor(value, f"{path}: {key}")
    return dict(obj)


def check_tensor(value: torch.Tensor, what: str) -> None:
    """A weight every later step can compute with: a dense tensor of finite real numbers. A NaN or infinity
    (a diverged training run, a damaged conversion) would calibrate NaN ranges and export a broken graph."""
    if value.layout != torch.strided:
        raise UserError(f"{what}: a {str(value.layout).removeprefix('torch.')} tensor; save dense weights "
                        "(tensor.to_dense())")
    if value.is_complex() or value.is_quantized:
        raise UserError(f"{what}: {value.dtype} weights are not supported (real floating point only)")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise UserError(f"{what}: {bad} of {value.numel()} values are not finite (NaN or infinity)")


def shown(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def grouped_convs(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """What says a checkpoint holds grouped convolutions where the architecture has dense ones: weights with
    the expected output channels and kernel but a 1/g share of the input channels (mobile variants)."""
    found = [k for k, v in state.items() if k in expected and v.ndim == 4 and expected[k].ndim == 4
             and v.shape[0] == expected[k].shape[0] and v.shape[2:] == expected[k].shape[2:]
             and v.shape[1] < expected[k].shape[1] and expected[k].shape[1] % v.shape[1] == 0]
    if not found:
        return []
    have, want = state[found[0]].shape[1], expected[found[0]].shape[1]
    return [f"{len(found)} grouped convs ({found[0]}: {have} input channels of {want}, groups={want // have}) "
            "where the architecture has dense ones"]


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """Load `state` into `model`, refusing any missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = [f"{len(keys)} {label} key(s): {shown(keys)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
                if keys] + grouped_convs({k: state[k] for k in misshaped}, expected)
    if problems:
        raise UserError(f"{source}: checkpoint does not match the {what} layout: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
