"""The runtime as a library: load a model directory once, upscale arrays, image files and videos with it.

    import runtime
    with runtime.load() as sr:                  # the bundled model; or runtime.load("my_model_dir", threads=2)
        hr = sr.upscale(lr)                      # numpy uint8 / uint16, gray, gray + alpha, RGB or RGBA
        sr.upscale_file("photo.jpg")             # -> photo_x4.jpg, written atomically
        sr.upscale_files(["frames/"], "out/")    # folders, conflicts and resumption as the CLI has them

Every problem with an input is a runtime.UserError naming the file and the problem; nothing is half-written.
The options are the CLI's (python -m runtime.upscale is a thin layer over this); the inference engine is the
one named, or the fastest on this machine (engine="auto", runtime/engines/choice.py). close() (or leaving the
`with` block) stops the worker threads and drops the compiled graphs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import images, manifest
from .atomic import check_json_target, write_json
from .cpu import cpu_model, int8_extensions
from .engines.choice import choose
from .errors import UserError
from .files import extra_pages, failure, process
from .headers import MAX_PIXELS
from .jobs import VIDEO_SUFFIXES, Job, collect, plan
from .pipeline import VARIANTS, Upscaler
from .video import upscale_video

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "edsr_baseline_x4"
# LR pixels of context per side; chosen by measurement (README: tiled vs whole-image PSNR and its cost)
DEFAULT_OVERLAP = 2


@dataclass
class Run:
    """What upscale_files did: a record per written image, and one line per skipped or failed input."""
    records: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SuperResolver:
    def __init__(self, model: str | Path | None = None, *, patch: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 threads: int = 0, variant: str = "auto", cheap_rung: bool = True, max_pixels: int = MAX_PIXELS,
                 suffix: str | None = None, engine: str | None = None):
        """model: a model directory from python -m export (default: the bundled one). threads: cores to use (0:
        all), laid out as the engine runs fastest (ONNX Runtime: that many single-threaded calls at once;
        OpenVINO: one call on all of them). variant: auto routes each cell by complexity; -1 / 0 / +1 forces
        one INT8 variant; fp32 runs the FP32 graph. cheap_rung: let the model's cheap rung take the flattest
        cells. engine: onnxruntime, openvino, or auto (the fastest here: a timed probe on first use, cached);
        None: $ADABM_DEPLOY_ENGINE, else auto.
        The model is validated and each graph it may run is probed once, here."""
        self.manifest = manifest.load(Path(model) if model is not None else DEFAULT_MODEL)
        self.patch = patch or self.manifest.patch_size
        if self.patch < 8 or overlap < 0 or overlap >= self.patch:
            raise UserError(f"patch {self.patch} / overlap {overlap}: need patch >= 8 and 0 <= overlap < patch")
        if threads < 0:
            raise UserError(f"threads {threads}: must be 0 (one per core) or more")
        if max_pixels < 1:
            raise UserError(f"max_pixels {max_pixels}: must be positive")
        if variant not in VARIANTS:
            raise UserError(f"variant {variant!r}: choose from {', '.join(VARIANTS)}")
        self.overlap, self.threads, self.variant, self.max_pixels = overlap, threads, variant, max_pixels
        if suffix is not None and ("/" in suffix or "\\" in suffix or "\0" in suffix or suffix in (".", "..")):
            raise UserError(f"suffix {suffix!r}: must be part of a file name, without a path separator")
        self.suffix = suffix if suffix is not None else f"_x{self.manifest.scale}"
        cores = threads or os.cpu_count() or 1
        probe_graph = None if variant == "fp32" else 0 if variant == "auto" else int(variant)
        self.choice = choose(engine, self.manifest, probe_graph, self.patch + 2 * overlap, cores)
        calls, _ = self.choice.engine.layout(cores)
        self.upscaler = Upscaler(self.choice.engine, self.patch, overlap, variant, calls, cheap=cheap_rung)
        self.upscaler.engine.check(self.upscaler.graphs())

    def warm_up(self) -> None:
        """Run each graph once on a window of full size, so that the first image does not pay ONNX Runtime's
        first allocations (a server's first request, each batch worker's first task)."""
        side = self.patch + 2 * self.overlap
        window = np.zeros((1, 3, side, side), np.float32)
        for factor in self.upscaler.graphs():
            self.upscaler.engine.run(factor, window)

    @property
    def scale(self) -> int:
        return self.manifest.scale

    @property
    def engine(self) -> str:
        """The inference engine this resolver runs on."""
        return self.choice.engine.name

    # -- arrays --------------------------------------------------------------------------------------------
    def upscale(self, image: np.ndarray) -> np.ndarray:
        """An image array (H x W, H x W x 2, 3 or 4; uint8 or uint16; RGB order) -> the same form, `scale` times
        larger. An alpha plane is upscaled bicubically beside the network."""
        picture = images.from_array(image)
        s = self.scale
        rgb, _ = self.upscaler.upscale_rgb(picture.rgb, picture.dtype)
        alpha = None if picture.alpha is None else images.alpha_rows(picture.alpha, s, 0, rgb.shape[0])
        out = images.compose(rgb, alpha, picture.gray, images.channels_of(picture))
        return out[:, :, None] if out.ndim == 2 and np.ndim(image) == 3 else out  # H x W x 1 stays so

    # -- files ---------------------------------------------------------------------------------------------
    def upscale_file(self, source: str | Path, target: str | Path | None = None, *, overwrite: bool = False,
                     bitmap: str | Path | None = None) -> dict:
        """One image or video file -> `target` (default: <name>_x4.<ext> beside it); returns its record. A
        derived target that exists is replaced only with overwrite=True; an explicit one is replaced."""
        run = self.upscale_files([source], target, overwrite=overwrite, bitmap=bitmap)
        if run.failed:
            raise UserError(run.failed[0])
        if run.skipped:
            raise UserError(run.skipped[0])
        return run.records[0]

    def upscale_files(self, inputs: Sequence[str | Path], output: str | Path | None = None, *,
                      overwrite: bool = False, bitmap: str | Path | None = None, stats: str | Path | None = None,
                      show: bool = False, on_done: Callable[[dict], None] | None = None,
                      on_error: Callable[[str], None] | None = None,
                      say: Callable[[str], None] | None = None) -> Run:
        """Files and folders (recursive), as python -m runtime.upscale takes them: the whole run is planned
        first (a conflict raises UserError before any image is read), inputs whose outputs exist are skipped
        unless overwrite, a bad input is reported (on_error) and the others still processed. `say` gets the
        notes, skips and warnings as they arise; `stats` is a JSON report of the run, written at its end."""
        paths = [Path(p) for p in inputs]
        output = Path(output) if output is not None else None
        bitmap = Path(bitmap) if bitmap is not None else None
        folders = [p for p in (output, bitmap) if p is not None and p.is_dir()]
        say = say or (lambda line: None)
        found = collect(paths, self.suffix, say, folders)
        stats = Path(stats) if stats is not None else None
        planned = plan(found.inputs, found.own_outputs, output, self.suffix, bitmap, stats, overwrite,
                       self.manifest.root)
        if stats is not None:
            check_json_target(stats)  # before any image runs, not after the last
        run = Run(skipped=found.skipped + planned.skipped, notes=([self.manifest.notice] if self.manifest.notice else [])
                  + planned.notes)
        for line in run.notes + run.skipped:
            say(line)
        for message in found.errors:
            run.failed.append(message)
            if on_error:
                on_error(message)
        stills = [j for j in planned.jobs if j.source.suffix.lower() not in VIDEO_SUFFIXES]
        records, failed = process(stills, self.upscaler, show, on_done, self.max_pixels, on_error)
        for line in filter(None, map(extra_pages, records)):
            run.skipped.append(line)
            say(line)
        run.records += records
        run.failed += failed
        for job in (j for j in planned.jobs if j.source.suffix.lower() in VIDEO_SUFFIXES):
            try:
                record = upscale_video(job, self.upscaler, show)
            except Exception as exc:
                run.failed.append(failure(job, exc))
                if on_error:
                    on_error(failure(job, exc))
                continue
            run.records.append(record)
            if on_done:
                on_done(record)
        if stats is not None:
            write_json(stats, {"model": str(self.manifest.root), "engine": self.engine,
                               "engine_choice": {"how": self.choice.how,
                                                 "windows_per_second": self.choice.windows_per_second},
                               "variant": self.variant, "patch": self.patch,
                               "overlap": self.overlap, "threads": self.threads, "cpu": cpu_model(),
                               "int8": int8_extensions(), "cores": os.cpu_count(), "images": run.records,
                               "skipped": run.skipped, "failed": run.failed})
        return run

    def close(self) -> None:
        self.upscaler.close()
        self.upscaler.engine.close()

    def __enter__(self) -> SuperResolver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(model: str | Path | None = None, **options) -> SuperResolver:
    """A SuperResolver for a model directory (default: the bundled one); options as SuperResolver's."""
    return SuperResolver(model, **options)


__all__ = ["DEFAULT_MODEL", "DEFAULT_OVERLAP", "Job", "Run", "SuperResolver", "UserError", "load"]
