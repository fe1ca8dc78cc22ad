"""Upscaling image files: one image is computed here while a second thread composes and writes its bands, so a
PNG streams to disk as it is made and the end of image i overlaps the computation of image i + 1.
"""
from __future__ import annotations

import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from . import images
from .errors import UserError
from .headers import MAX_PIXELS
from .jobs import Job
from .pipeline import NonFiniteOutput, Report, Upscaler
from .routing import overlay

# output rows composed and encoded at a time: keeps the encoder's copies small next to a band of 384 rows
WRITE_ROWS = 64


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
    return {"input": job.uri or str(job.source), "output": str(job.target), "lr_size": [w, h],
            "seconds": round(time.perf_counter() - start, 4), "inference_seconds": round(report.seconds, 4),
            "engine": upscaler.engine.name, "cells": report.counts(),
            "fab": None if upscaler.fp32 else report.fab({f: v.fab for f, v in variants.items()}),
            "bit_depth": 8 * picture.dtype.itemsize, "alpha": picture.alpha is not None, "gray": picture.gray,
            "pages": picture.pages}


def extra_pages(record: dict) -> str | None:
    """The skipped-list line for a file with more frames or pages than the one upscaled."""
    pages = record.get("pages", 1)
    return None if pages <= 1 else (f"skipped {pages - 1} more frames or pages of {record['input']}: only the "
                                    "first is upscaled")


def upscale_one(job: Job, upscaler: Upscaler, writer: ThreadPoolExecutor, show: bool, max_pixels: int,
                read: Callable[[Job], bytes] | None = None) -> Future:
    """Compute one image here while `writer` writes its bands; returns the writing's future (its record).
    read: the job's bytes from elsewhere than its local path (a URI)."""
    start = time.perf_counter()
    picture = images.load(job.source, max_pixels) if read is None else \
        images.decode(read(job), job.source, max_pixels)
    report = Report(upscaler.plan(*picture.size))
    bands = BandQueue(lambda queued: writer.submit(write_image, job, picture, report, queued, upscaler, start))
    try:
        with tqdm(total=len(report.grid.tiles()), desc=job.source.name, unit="tile", leave=False,
                  disable=not show) as bar:
            for band in upscaler.bands(picture.rgb, picture.dtype, report, bar):
                bands.put(band)
    except NonFiniteOutput as exc:
        bands.abort()
        raise UserError(f"{job.uri or job.source}: {exc}") from None
    except BaseException:
        bands.abort()
        raise
    bands.close()
    return bands.writing


def process(jobs: list[Job], upscaler: Upscaler, show: bool = False, on_done: Callable[[dict], None] | None = None,
            max_pixels: int = MAX_PIXELS, on_error: Callable[[str], None] | None = None,
            read: Callable[[Job], bytes] | None = None) -> tuple[list[dict], list[str]]:
    """Upscale every job. Each image is written by a second thread as its bands are finished, and that
    thread's last work on image i (the final band, or the whole encode for formats other than PNG) overlaps
    the computation of image i + 1. Returns (stats records, error lines); a bad image is reported (on_error)
    and skipped."""
    records: list[dict] = []
    failures: list[str] = []
    several = len(jobs) > 1

    def fail(message: str) -> None:
        failures.append(message)
        if on_error:
            on_error(message)

    def settle(pending: tuple[Job, Future] | None) -> None:
        if pending is None:
            return
        try:
            record = pending[1].result()
        except Exception as exc:
            return fail(failure(pending[0], exc))
        records.append(record)
        if on_done:
            on_done(record)

    pending = None
    with ThreadPoolExecutor(1) as writer:
        for job in tqdm(jobs, desc="images", unit="img", disable=not show or not several):
            try:
                writing = upscale_one(job, upscaler, writer, show, max_pixels, read)
            except Exception as exc:
                settle(pending)
                pending = None
                fail(failure(job, exc))
                continue
            settle(pending)
            pending = (job, writing)
        settle(pending)
    return records, failures


def failure(job: Job, exc: Exception) -> str:
    """One line for an input that failed. The tool's own errors name the file and the problem; anything else
    (a decoder's, the system's, a bug) is named with its type, so that one input never aborts the run."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"{job.uri or job.source}: out of memory while upscaling it"
    return f"{job.uri or job.source}: failed ({type(exc).__name__}: {exc})"
