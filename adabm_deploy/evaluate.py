"""`python -m adabm_deploy.evaluate`: PSNR/SSIM of a checkpoint on benchmark folders.

Metric convention (BasicSR): SR rounded to uint8, `scale` pixels cropped from each edge, Y channel, mean
over images. RGB PSNR is reported beside it.
"""
from __future__ import annotations

from .extras import require  # first: a runtime-only install gets the install line, not a traceback

require(__name__, "python -m adabm_deploy.evaluate")

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from runtime.atomic import check_json_target, write_json
from runtime.command import run_cli
from runtime.complexity import gradient_density
from runtime.errors import UserError

from . import artifact
from .data import BenchmarkSet, expand_benchmark_dirs, open_benchmark
from .metrics import psnr, ssim, to_uint8
from .models import Network, load_network
from .network.graph import run as run_graph
from .quant.qgraph import QuantGraph

# uint8 LR HxWx3 -> (uint8 SR, mean activation bits over the adaptive layers, or None for float)
SuperResolve = Callable[[np.ndarray], tuple[np.ndarray, float | None]]


@dataclass
class SetResult:
    set: str
    images: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    seconds: float
    fab: float | None = None


def _to_tensor(lr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[None]


def fp32_upscaler(network: Network) -> SuperResolve:
    """The FP32 network (its captured graph, RGB 0..255 in and out) as uint8 HxWx3 -> uint8 HxWx3."""
    def run(lr: np.ndarray) -> tuple[np.ndarray, None]:
        with torch.inference_mode():
            return to_uint8(run_graph(network.graph, _to_tensor(lr))[0].permute(1, 2, 0).numpy()), None
    return run


def quantized_upscaler(qm: QuantGraph, patch: int | None) -> SuperResolve:
    """Simulated quantized model. Whole image: one complexity, one image-wise bit factor. With `patch`, the
    paper's protocol: non-overlapping LR patches, each with its own complexity and bits, stitched."""
    scale = qm.scale

    def one(lr: np.ndarray) -> tuple[np.ndarray, float]:
        c = torch.tensor([gradient_density(lr)])
        with torch.inference_mode():
            return qm(_to_tensor(lr), c)[0].permute(1, 2, 0).numpy(), float(qm.bits(c).mean())

    def run(lr: np.ndarray) -> tuple[np.ndarray, float]:
        if not patch:
            sr, fab = one(lr)
            return to_uint8(sr), fab
        h, w = lr.shape[:2]
        out = np.empty((h * scale, w * scale, 3), np.float32)
        fabs = []
        for y in range(0, h, patch):
            for x in range(0, w, patch):
                sr, fab = one(lr[y:y + patch, x:x + patch])
                out[y * scale:y * scale + sr.shape[0], x * scale:x * scale + sr.shape[1]] = sr
                fabs.append(fab)
        return to_uint8(out), float(np.mean(fabs))
    return run


def evaluate_set(upscale: SuperResolve, bench: BenchmarkSet, progress: bool = True) -> SetResult:
    scores, fabs = [], []
    start = time.perf_counter()
    for pair in tqdm(bench.pairs, desc=bench.name, unit="img", disable=not progress, leave=False):
        lr, hr = bench.load(pair)
        sr, fab = upscale(lr)
        scores.append((psnr(sr, hr, bench.scale), ssim(sr, hr, bench.scale), psnr(sr, hr, bench.scale, y_only=False)))
        fabs.append(fab)
    mean = np.mean(scores, axis=0)
    fab = None if fabs[0] is None else float(np.mean(fabs))
    return SetResult(bench.name, len(scores), float(mean[0]), float(mean[1]), float(mean[2]),
                     time.perf_counter() - start, fab)


def format_table(results: list[SetResult], title: str) -> str:
    lines = [title, f"{'set':<10} {'images':>6} {'PSNR-Y':>8} {'SSIM-Y':>7} {'PSNR-RGB':>9} {'FAB':>5} {'seconds':>8}"]
    lines += [f"{r.set:<10} {r.images:>6d} {r.psnr_y:>8.2f} {r.ssim_y:>7.4f} {r.psnr_rgb:>9.2f} "
              f"{'-' if r.fab is None else f'{r.fab:.2f}':>5} {r.seconds:>8.1f}" for r in results]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m adabm_deploy.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path,
                   help="checkpoint (EDSR, RDN, SRResNet, CARN, CARN-M, SRVGGNetCompact; README lists the layouts)")
    p.add_argument("--data", required=True, type=Path, nargs="+",
                   help="benchmark folder(s) with HR/ and LR_bicubic/X{s}/, or a folder of such folders")
    p.add_argument("--scale", type=int, help="scale to evaluate (default: the checkpoint's; a multi-scale CARN "
                                              "needs it)")
    p.add_argument("--qconfig", type=Path, help="calibration artifact: evaluate the simulated quantized model")
    p.add_argument("--patch", type=int, help="with --qconfig: non-overlapping LR patches of this size, each with "
                                             "its own bit factor (the paper's protocol; e.g. 96)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json:
        check_json_target(args.json)  # a mistyped --json must not replace the checkpoint, nor fail at the end
    network = load_network(args.model, args.scale)
    scale = network.scale
    if args.patch is not None and (args.qconfig is None or args.patch < 8):
        raise UserError("--patch needs --qconfig and a size of at least 8")
    sets = [open_benchmark(d, scale) for d in expand_benchmark_dirs(args.data)]
    if args.qconfig:
        qm = artifact.load(args.qconfig, network)
        upscale = quantized_upscaler(qm, args.patch)
        precision = (f"{artifact.read(args.qconfig)['settings']['method']} W{qm.w_bits}A{qm.a_bits} "
                     f"{'full' if qm.full_quant else 'body-only'} ({args.qconfig.name})"
                     + (f", {args.patch}x{args.patch} LR patches" if args.patch else ", whole image"))
    else:
        upscale, precision = fp32_upscaler(network), "FP32"
    results = [evaluate_set(upscale, s, progress=sys.stderr.isatty()) for s in sets]
    title = (f"{args.model.name} {precision}, x{scale}, Y-PSNR/SSIM crop {scale}px, "
             f"torch {torch.__version__} {torch.get_num_threads()} threads")
    print(format_table(results, title))
    if args.json:
        write_json(args.json, {"model": str(args.model), "scale": scale, "precision": precision,
                                      "qconfig": str(args.qconfig) if args.qconfig else None, "patch": args.patch,
                                      "results": [asdict(r) for r in results]})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
