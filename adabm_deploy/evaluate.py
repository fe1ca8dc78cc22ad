"""`python -m adabm_deploy.evaluate`: PSNR/SSIM of a checkpoint on benchmark folders.

Metric convention (BasicSR): SR rounded to uint8, `scale` pixels cropped from each edge, Y channel, mean
over images. RGB PSNR is reported beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .data import BenchmarkSet, expand_benchmark_dirs, open_benchmark
from .errors import UserError, run_cli
from .metrics import psnr, ssim, to_uint8
from .models import load_edsr

SuperResolve = Callable[[np.ndarray], np.ndarray]


@dataclass
class SetResult:
    set: str
    images: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    seconds: float


def torch_upscaler(model: torch.nn.Module) -> SuperResolve:
    """Wrap a 0..255 RGB network as uint8 HxWx3 -> uint8 HxWx3."""
    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[None]
        with torch.inference_mode():
            y = model(x)[0].permute(1, 2, 0).numpy()
        return to_uint8(y)
    return run


def evaluate_set(upscale: SuperResolve, bench: BenchmarkSet, progress: bool = True) -> SetResult:
    scores = []
    start = time.perf_counter()
    for pair in tqdm(bench.pairs, desc=bench.name, unit="img", disable=not progress, leave=False):
        lr, hr = bench.load(pair)
        sr = upscale(lr)
        scores.append((psnr(sr, hr, bench.scale), ssim(sr, hr, bench.scale), psnr(sr, hr, bench.scale, y_only=False)))
    mean = np.mean(scores, axis=0)
    return SetResult(bench.name, len(scores), float(mean[0]), float(mean[1]), float(mean[2]),
                     time.perf_counter() - start)


def format_table(results: list[SetResult], title: str) -> str:
    lines = [title, f"{'set':<10} {'images':>6} {'PSNR-Y':>8} {'SSIM-Y':>7} {'PSNR-RGB':>9} {'seconds':>8}"]
    lines += [f"{r.set:<10} {r.images:>6d} {r.psnr_y:>8.2f} {r.ssim_y:>7.4f} {r.psnr_rgb:>9.2f} {r.seconds:>8.1f}"
              for r in results]
    return "\n".join(lines)


def write_json_atomic(path: Path, payload: dict) -> None:
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path}: output folder does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m adabm_deploy.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="EDSR checkpoint (EDSR-PyTorch state dict)")
    p.add_argument("--data", required=True, type=Path, nargs="+",
                   help="benchmark folder(s) with HR/ and LR_bicubic/X{s}/, or a folder of such folders")
    p.add_argument("--scale", type=int, help="scale to evaluate (default: the checkpoint's)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_edsr(args.model)
    scale = args.scale or model.cfg.scale
    if scale != model.cfg.scale:
        raise UserError(f"{args.model}: model is x{model.cfg.scale}, --scale {scale} asked")
    sets = [open_benchmark(d, scale) for d in expand_benchmark_dirs(args.data)]
    upscale = torch_upscaler(model)
    results = [evaluate_set(upscale, s, progress=sys.stderr.isatty()) for s in sets]
    title = (f"{args.model.name} FP32, x{scale}, Y-PSNR/SSIM crop {scale}px, "
             f"torch {torch.__version__} {torch.get_num_threads()} threads")
    print(format_table(results, title))
    if args.json:
        write_json_atomic(args.json, {"model": str(args.model), "scale": scale, "precision": "fp32",
                                      "results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
