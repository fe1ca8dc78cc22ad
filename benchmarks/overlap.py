"""`python -m benchmarks.overlap`: choose the tiling overlap by measurement (the README's table).

For each overlap, one variant forced (0), Set14 x4: tiled vs whole-image Y-PSNR against HR (crop 4), the worst
image's difference, the largest pixel difference from the whole-image output (a seam shows up here), and the
compute (LR pixels processed / image pixels).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from adabm_deploy.data import open_benchmark
from adabm_deploy.metrics import psnr, to_uint8
from runtime import manifest
from runtime.api import DEFAULT_MODEL
from runtime.command import run_cli
from runtime.engines.onnxruntime import OnnxRuntimeEngine
from runtime.pipeline import Upscaler


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overlap", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/benchmark/Set14"))
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    args = p.parse_args(argv)
    model = manifest.load(args.model)
    engine = OnnxRuntimeEngine(model, threads=0)
    bench = open_benchmark(args.data, model.scale)
    pairs = [bench.load(pair) for pair in bench.pairs]
    whole = [to_uint8(engine.run(0, lr.transpose(2, 0, 1)[None].astype(np.float32))[0].transpose(1, 2, 0))
             for lr, _ in pairs]
    whole_psnr = [psnr(sr, hr, crop=model.scale) for sr, (_, hr) in zip(whole, pairs)]
    print(f"{bench.name} x{model.scale}, variant 0, whole image {np.mean(whole_psnr):.3f} dB\n")
    print("| overlap | tiled Y-PSNR | vs whole image | worst image | max pixel diff vs whole | compute |")
    print("| --- | --- | --- | --- | --- | --- |")
    for overlap in args.overlaps:
        up = Upscaler(engine, model.patch_size, overlap, variant="0")
        scores, diffs, cost = [], [], []
        for (lr, hr), ref in zip(pairs, whole):
            out, report = up.upscale_rgb(lr.astype(np.float32), np.uint8)
            scores.append(psnr(out, hr, crop=model.scale))
            diffs.append(int(np.abs(out.astype(int) - ref).max()))
            cost.append(report.grid.computed_pixels() / (lr.shape[0] * lr.shape[1]))
        delta = np.array(scores) - np.array(whole_psnr)
        print(f"| {overlap} | {np.mean(scores):.3f} | {delta.mean():+.3f} | {delta.min():+.3f} | {max(diffs)} | "
              f"x{np.mean(cost):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
