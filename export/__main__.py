"""`python -m export MODEL.pt`: calibrate (unless --qconfig is given) and write an ONNX model directory.

Without --qconfig the default calibration runs first (DEFAULT_CALIBRATION below, on --calib-dir), so the bare
command works; with --qconfig the artifact must have been calibrated for exactly this checkpoint.
"""
from __future__ import annotations

from adabm_deploy.extras import require  # first: a runtime-only install gets the install line, not a traceback

require(__name__, "python -m export", ("torch", "onnx"))

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from adabm_deploy import artifact
from adabm_deploy.calibrate import PRESETS, Settings, calibrate
from adabm_deploy.fidelity import visibly_off
from adabm_deploy.models import load_network
from runtime.command import run_cli
from runtime.errors import UserError

from . import model_dir

# Full quantization (every conv an integer kernel), AdaBM, the cpu preset: the configuration docs/results.md
# shows as the most accurate at equal CPU cost (all bit-widths run in the same INT8 containers).
DEFAULT_CALIBRATION = dict(w_bits=8, a_bits=8, full_quant=True, method="adabm")
DEFAULT_CALIB_DIR = Path("../shared/data/train/BSD200")
OPSETS = range(13, 22)  # per-axis QDQ needs 13; the reference evaluator needs 19 (the default); ORT takes 21


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="checkpoint (EDSR, RDN, SRResNet, CARN, CARN-M, SRVGGNetCompact)")
    p.add_argument("--scale", type=int, help="the scale of a multi-scale checkpoint (CARN, CARN-M); else checked")
    p.add_argument("--qconfig", type=Path, help="calibration artifact from python -m adabm_deploy.calibrate")
    p.add_argument("-o", "--output", type=Path, help="model directory to write (default: <checkpoint name>_adabm)")
    p.add_argument("--opset", type=int, default=19, help=f"ONNX opset, {OPSETS.start}..{OPSETS.stop - 1}")
    p.add_argument("--force", action="store_true", help="replace an existing model directory")
    g = p.add_argument_group("default calibration (without --qconfig)")
    g.add_argument("--calib-dir", type=Path, default=DEFAULT_CALIB_DIR, help="HR images to calibrate on")
    g.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.opset not in OPSETS:
        raise UserError(f"--opset {args.opset}: supported opsets are {OPSETS.start}..{OPSETS.stop - 1}")
    out = args.output or Path(f"{args.model.stem}_adabm")
    model_dir.check_writable(out, args.force)
    network = load_network(args.model, args.scale)  # a checkpoint the tool cannot take stops here, first
    if args.qconfig is not None:
        qm = artifact.load(args.qconfig, network)
        data = artifact.read(args.qconfig)
        found = data.get("report", {}).get("self_check", {}).get("warnings")
        if found:  # calibration said so when it ran; the user exporting it may not have seen that
            print(f"warning: {args.qconfig}: {visibly_off(found)}", file=sys.stderr)
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device available to torch")
        if not args.calib_dir.is_dir():
            raise UserError(f"{args.calib_dir}: calibration folder not found (pass --calib-dir DIR or --qconfig)")
        settings = Settings(**DEFAULT_CALIBRATION, preset=args.preset, **PRESETS[args.preset])
        print(f"calibrating {args.model} ({settings.method} W{settings.w_bits}A{settings.a_bits}, "
              f"preset {args.preset}) on {args.calib_dir}", file=sys.stderr)
        qm, data = calibrate(network, args.calib_dir, settings, args.device, progress=sys.stderr.isatty())
    start = time.perf_counter()
    m = model_dir.write(out, qm, data, args.opset, args.force)
    fabs = ", ".join(f"{f:+d}: FAB {v.fab:.2f}" for f, v in m.variants.items())
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s: x{m.scale}, thresholds "
          f"{m.thresholds[0]:.1f} / {m.thresholds[1]:.1f}, variants {fabs}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
