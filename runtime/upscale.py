"""`python -m runtime.upscale INPUT...`: super-resolve images with an exported model on ONNX Runtime (no torch).

Each LR image is cut into cells of at most --patch pixels; each cell's gradient density picks the INT8
variant (the manifest's thresholds), cells run with --overlap pixels of context, --threads windows at a
time, and the outputs are cross-faded into one image written beside the input (or under -o) with a suffix.
A bad image is reported on one line and skipped; the exit code is 1 if any image failed.
"""
from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from adabm_deploy.atomic import check_json_target, write_json
from adabm_deploy.errors import UserError, run_cli

from . import images, manifest
from .cpu import cpu_model, int8_extensions
from .engine import Engine
from .headers import MAX_PIXELS
from .jobs import Job, collect, plan
from .pipeline import VARIANTS, Report, Upscaler
from .routing import overlay

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "edsr_baseline_x4"
# LR pixels of context per side; chosen by measurement (README: tiled vs whole-image PSNR and its cost)
DEFAULT_OVERLAP = 2
# output rows composed and encoded at a time: keeps the encoder's copies small next to a band of 384 rows
WRITE_ROWS = 64


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
    p.add_argument("--no-cheap-rung", action="store_true",
                   help="run the network on every cell, also those the model's cheap rung would upscale bicubically")
    p.add_argument("--suffix", help="output name suffix (default: _x<scale>)")
    p.add_argument("--stats", type=Path, help="write per-image latency, cells per variant and FAB (JSON)")
    p.add_argument("--bitmap", type=Path,
                   help="write the per-cell bit-factor overlay (a file for one input, else a folder of "
                        "<name>_bits.png)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing <name>_x4.* outputs (default: skip inputs whose output exists)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"refuse inputs whose header claims more pixels (default {MAX_PIXELS:,})")
    return p.parse_args(argv)



class BandQueue:
    """Bands of one image, handed from the computing thread to the writing thread (at most one waits, so
    memory stays a few bands). A writer that fails stops the computation at the next band; a computation
    that fails makes the writer drop its temporary file."""

    _END, _ABORT = object(), object()

    def __init__(self, start_writing):
        """start_writing: the bands (this queue, iterated) -> the writing's Future."""
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self.writing: Future = start_writing(self)

    def put(self, band: np.ndarray) -> None:
        if not self._offer(band):
            self.writing.result()  # the writer's error, raised here
            raise RuntimeError("writer finished before the image did")

    def close(self) -> None:
        self._offer(self._END)  # a writer that failed meanwhile reports it through `writing`

    def abort(self) -> None:
        self._offer(self._ABORT)
        wait([self.writing])

    def _offer(self, item) -> bool:
        """Queue `item` unless the writer is gone (then nothing would ever take it): False if it is."""
        while not self.writing.done():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[np.ndarray]:
        while (item := self._queue.get()) is not self._END:
            if item is self._ABORT:
                raise Aborted
            yield item


class Aborted(Exception):
    """The image's computation failed; its output is dropped."""


def write_image(job: Job, picture: images.Picture, report: Report, bands: Iterable[np.ndarray],
                upscaler: Upscaler, start: float) -> dict:
    """Compose and write the output band by band as it arrives (and the bitmap); returns the stats record."""
    s = upscaler.scale
    h, w = picture.size
    channels = images.output_channels(picture, job.target.suffix)
    with images.writer(job.target, h * s, w * s, channels, picture.dtype) as out:
        y = 0
        for band in bands:
            for rows in np.split(band, range(WRITE_ROWS, band.shape[0], WRITE_ROWS)):
                n = rows.shape[0]
                alpha = None if picture.alpha is None else images.alpha_rows(picture.alpha, s, y, y + n)
                out.write(images.compose(rows, alpha, picture.gray, channels))
                y += n
    if job.bitmap is not None:
        images.save(job.bitmap, overlay(picture.rgb, report.grid, report.factors))
    variants = upscaler.engine.model.variants
    return {"input": str(job.source), "output": str(job.target), "lr_size": [w, h],
            "seconds": round(time.perf_counter() - start, 4), "inference_seconds": round(report.seconds, 4),
            "cells": report.counts(),
            "fab": None if upscaler.fp32 else report.fab({f: v.fab for f, v in variants.items()}),
            "bit_depth": 8 * picture.dtype.itemsize, "alpha": picture.alpha is not None, "gray": picture.gray}


def upscale_one(job: Job, upscaler: Upscaler, writer: ThreadPoolExecutor, show: bool, max_pixels: int) -> Future:
    """Compute one image here while `writer` writes its bands; returns the writing's future (its record)."""
    start = time.perf_counter()
    picture = images.load(job.source, max_pixels)
    report = Report(upscaler.plan(*picture.size))
    bands = BandQueue(lambda queued: writer.submit(write_image, job, picture, report, queued, upscaler, start))
    try:
        with tqdm(total=len(report.grid.tiles()), desc=job.source.name, unit="tile", leave=False,
                  disable=not show) as bar:
            for band in upscaler.bands(picture.rgb, picture.dtype, report, bar):
                bands.put(band)
    except BaseException:
        bands.abort()
        raise
    bands.close()
    return bands.writing


def process(jobs: list[Job], upscaler: Upscaler, show: bool = False, on_done=None,
            max_pixels: int = MAX_PIXELS) -> tuple[list[dict], list[str]]:
    """Upscale every job. Each image is written by a second thread as its bands are finished, and that
    thread's last work on image i (the final band, or the whole encode for formats other than PNG) overlaps
    the computation of image i + 1. Returns (stats records, error lines); a bad image is reported and
    skipped."""
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
                writing = upscale_one(job, upscaler, writer, show, max_pixels)
            except UserError as exc:
                settle(pending)
                pending = None
                fail(str(exc))
                continue
            settle(pending)
            pending = writing
        settle(pending)
    return records, failures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model = manifest.load(args.model)
    patch = args.patch or model.patch_size
    if patch < 8 or args.overlap < 0 or args.overlap >= patch:
        raise UserError(f"--patch {patch} / --overlap {args.overlap}: need patch >= 8 and 0 <= overlap < patch")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be 0 (one per core) or more")
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels {args.max_pixels}: must be positive")
    workers = args.threads or os.cpu_count() or 1
    upscaler = Upscaler(Engine(model, threads=1), patch, args.overlap, args.variant, workers,
                        cheap=not args.no_cheap_rung)
    upscaler.engine.check(upscaler.graphs())
    suffix = args.suffix if args.suffix is not None else f"_x{model.scale}"
    folders = [p for p in (args.output, args.bitmap) if p is not None and p.is_dir()]
    found, own_outputs, failures = collect(args.inputs, suffix, lambda m: tqdm.write(m, file=sys.stderr), folders)
    run = plan(found, own_outputs, args.output, suffix, args.bitmap, args.stats, args.overwrite)
    if args.stats:
        check_json_target(args.stats)  # before any image runs, not after the last
    failures += run.errors
    for line in [*([model.notice] if model.notice else []), *run.notes, *run.skipped]:
        print(line, file=sys.stderr)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)

    def announce(record: dict) -> None:
        w, h = record["lr_size"]
        fab = f", FAB {record['fab']:.2f}" if record["fab"] is not None else ""
        print(f"{record['input']} -> {record['output']} ({w}x{h} -> {w * model.scale}x{h * model.scale}, "
              f"{record['seconds']:.2f} s, cells {record['cells']}{fab})")
    records, errors = process(run.jobs, upscaler, sys.stderr.isatty(), announce, args.max_pixels)
    failures += errors
    if args.stats:
        write_json(args.stats, {"model": str(args.model), "variant": args.variant, "patch": patch,
                                "overlap": args.overlap, "threads": args.threads, "cpu": cpu_model(),
                                "int8": int8_extensions(), "cores": os.cpu_count(), "images": records,
                                "skipped": run.skipped, "failed": failures})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
