"""`python -m runtime.upscale INPUT...`: super-resolve images with an exported model on ONNX Runtime (no torch).

Each LR image is cut into cells of at most --patch pixels; each cell's gradient density picks the INT8
variant (the manifest's thresholds), cells run with --overlap pixels of context, --threads windows at a
time, and the outputs are cross-faded into one image written beside the input (or under -o) with a suffix.
A bad image is reported on one line and skipped; the exit code is 1 if any image failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from adabm_deploy.atomic import write_json
from adabm_deploy.errors import UserError, run_cli
from adabm_deploy.images import IMAGE_SUFFIXES

from . import images, manifest
from .cpu import cpu_model, int8_extensions
from .engine import Engine
from .pipeline import VARIANTS, Report, Upscaler
from .routing import overlay

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "edsr_baseline_x4"
# LR pixels of context per side; chosen by measurement (README: tiled vs whole-image PSNR and its cost)
DEFAULT_OVERLAP = 2


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runtime.upscale", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders (recursive)")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (one input) or folder; default: beside each input")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory from python -m export")
    p.add_argument("--patch", type=int, help="LR cell size for routing and tiling (default: the manifest's, 96)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="LR context pixels per side, cross-faded")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime calls run at once, one thread each (0: one per core)")
    p.add_argument("--variant", choices=VARIANTS, default="auto",
                   help="auto: route each cell by complexity; or force one INT8 variant, or the FP32 graph")
    p.add_argument("--suffix", help="output name suffix (default: _x<scale>)")
    p.add_argument("--stats", type=Path, help="write per-image latency, cells per variant and FAB (JSON)")
    p.add_argument("--bitmap", type=Path,
                   help="write the per-cell bit-factor overlay (PNG; a folder when there are several inputs)")
    return p.parse_args(argv)


def is_own_output(path: Path, suffix: str) -> bool:
    """`a_x4.png` beside `a.png`: a result of an earlier run over the same folder, not a new input."""
    return bool(suffix) and path.stem.endswith(suffix) and \
        path.with_name(path.stem[:-len(suffix)] + path.suffix).is_file()


def collect(inputs: list[Path], suffix: str, warn) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """(image path, folder it was found in or None) for every input; errors for missing paths."""
    found, errors = [], []
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                if is_own_output(path, suffix):
                    continue
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((path, item))
                elif not path.name.startswith("."):
                    warn(f"warning: {path}: not an image, skipped")
        elif item.exists():
            found.append((item, None))
        else:
            errors.append(f"{item}: no such file or folder")
    return found, errors


def plan_jobs(found: list[tuple[Path, Path | None]], output: Path | None, suffix: str) -> list[Job | str]:
    """Output path per image; a string instead of a Job where the target would overwrite an input."""
    single_file = output is not None and len(found) == 1 and output.suffix.lower() in IMAGE_SUFFIXES
    inputs = {p.resolve() for p, _ in found}
    jobs: list[Job | str] = []
    for path, root in found:
        name = f"{path.stem}{suffix}{path.suffix}"
        if single_file:
            target = output
        elif output is None:
            target = path.with_name(name)
        else:
            target = output / (path.parent.relative_to(root) if root else Path()) / name
        if target.resolve() in inputs:
            jobs.append(f"{path}: output {target} would overwrite an input; choose another -o or --suffix")
        else:
            jobs.append(Job(path, target))
    return jobs


@dataclass
class Upscaled:
    """One image computed and not yet written."""
    job: Job
    picture: images.Picture
    rgb: np.ndarray
    alpha: np.ndarray | None
    report: Report
    start: float


def upscale_one(job: Job, upscaler: Upscaler, show: bool) -> Upscaled:
    start = time.perf_counter()
    picture = images.load(job.source)
    h, w = picture.size
    with tqdm(total=len(upscaler.plan(h, w).tiles()), desc=job.source.name, unit="tile", leave=False,
              disable=not show) as bar:
        rgb, alpha, report = upscaler.upscale(picture, bar)
    return Upscaled(job, picture, rgb, alpha, report, start)


def write_one(done: Upscaled, upscaler: Upscaler, bitmap: Path | None) -> dict:
    """Encode and write one image (and its bitmap); returns its stats record."""
    picture, report = done.picture, done.report
    images.save(done.job.target, images.compose(done.rgb, done.alpha, picture.gray))
    if bitmap is not None:
        images.save(bitmap, overlay(picture.rgb, report.grid, report.factors)[:, :, ::-1])
    variants = upscaler.engine.model.variants
    h, w = picture.size
    return {"input": str(done.job.source), "output": str(done.job.target), "lr_size": [w, h],
            "seconds": round(time.perf_counter() - done.start, 4), "inference_seconds": round(report.seconds, 4),
            "cells": report.counts(),
            "fab": None if upscaler.fp32 else report.fab({f: v.fab for f, v in variants.items()}),
            "bit_depth": 8 * picture.dtype.itemsize, "alpha": picture.alpha is not None, "gray": picture.gray}


def process(jobs: list[Job | str], upscaler: Upscaler, bitmap: Path | None = None, show: bool = False,
            on_done=None) -> tuple[list[dict], list[str]]:
    """Upscale every job; image i is encoded and written on a second thread while image i + 1 computes
    (at most one image waits, so memory stays two outputs). Returns (stats records, error lines); a bad
    image is reported and skipped."""
    records: list[dict] = []
    failures: list[str] = []
    several = len(jobs) > 1

    def fail(message: str) -> None:
        failures.append(message)
        print(f"error: {message}", file=sys.stderr)

    def settle(pending: Future | None) -> None:
        if pending is None:
            return
        try:
            record = pending.result()
        except UserError as exc:
            return fail(str(exc))
        records.append(record)
        if on_done:
            on_done(record)

    pending = None
    with ThreadPoolExecutor(1) as writer:
        for job in tqdm(jobs, desc="images", unit="img", disable=not show or not several):
            try:
                if isinstance(job, str):
                    raise UserError(job)
                done = upscale_one(job, upscaler, show)
            except UserError as exc:
                settle(pending)
                pending = None
                fail(str(exc))
                continue
            settle(pending)
            image_bitmap = bitmap / f"{job.source.stem}_bits.png" if bitmap and several else bitmap
            pending = writer.submit(write_one, done, upscaler, image_bitmap)
        settle(pending)
    return records, failures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model = manifest.load(args.model)
    patch = args.patch or model.patch_size
    if patch < 8 or args.overlap < 0 or args.overlap >= patch:
        raise UserError(f"--patch {patch} / --overlap {args.overlap}: need patch >= 8 and 0 <= overlap < patch")
    if args.stats and not args.stats.absolute().parent.is_dir():
        raise UserError(f"{args.stats}: folder for --stats does not exist")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be 0 (one per core) or more")
    workers = args.threads or os.cpu_count() or 1
    upscaler = Upscaler(Engine(model, threads=1), patch, args.overlap, args.variant, workers)
    suffix = args.suffix if args.suffix is not None else f"_x{model.scale}"
    show = sys.stderr.isatty()
    found, failures = collect(args.inputs, suffix, lambda m: tqdm.write(m, file=sys.stderr))
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    jobs = plan_jobs(found, args.output, suffix)

    def announce(record: dict) -> None:
        w, h = record["lr_size"]
        fab = f", FAB {record['fab']:.2f}" if record["fab"] is not None else ""
        print(f"{record['input']} -> {record['output']} ({w}x{h} -> {w * model.scale}x{h * model.scale}, "
              f"{record['seconds']:.2f} s, cells {record['cells']}{fab})")
    records, errors = process(jobs, upscaler, args.bitmap, show, announce)
    failures += errors
    if args.stats:
        write_json(args.stats, {"model": str(args.model), "variant": args.variant, "patch": patch,
                                "overlap": args.overlap, "threads": args.threads, "cpu": cpu_model(),
                                "int8": int8_extensions(), "cores": os.cpu_count(), "images": records,
                                "failed": failures})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
