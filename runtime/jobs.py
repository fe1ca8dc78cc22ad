"""Which file every input becomes, decided and checked before any image is read.

Nothing a user owns may be lost, so a run's outputs are planned as a whole: no output may be an input, no
two outputs may share a path (two `x.png` from different folders, or `img.bmp` and `img.tiff` sharing one
bitmap), and an existing file is replaced only where the user asked for it: a file named with -o / --bitmap /
--stats, or a derived `<name>_x4.<ext>` with --overwrite. Without --overwrite an input whose output already
exists is skipped, which also makes an interrupted folder run resumable. A conflict is a usage error: the
run stops before it starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UserError
from .headers import regular_file
from .images import INPUT_SUFFIXES, OUTPUT_SUFFIXES

BITMAP_SUFFIX = "_bits"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov"}  # written back in their own container (runtime/video.py)
READ = INPUT_SUFFIXES | VIDEO_SUFFIXES
WRITTEN = OUTPUT_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    bitmap: Path | None = None
    uri: str | None = None  # where the input is read from when it is not a local path (runtime/batch.py)


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # inputs whose outputs exist (one line each)
    notes: list[str] = field(default_factory=list)  # files not taken as inputs, and why


def output_name(source: Path, suffix: str) -> str:
    """`a.jpg` -> `a_x4.jpg`, `clip.mkv` -> `clip_x4.mkv`; formats that cannot be written back (GIF) become
    PNG."""
    ext = source.suffix if source.suffix.lower() in WRITTEN else ".png"
    return f"{source.stem}{suffix}{ext}"


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(f) for f in folders)


def keep_out_of_model(path: Path, model: Path, what: str) -> None:
    """An output may not go into the model directory in use (its manifest and artifact are protected as inputs
    are)."""
    if _inside(Path(path).resolve(), [Path(model).resolve()]):
        raise UserError(f"{path}: is in the model directory in use ({Path(model).resolve()}); {what} must go "
                        "elsewhere")


def bitmap_names(image: Path) -> tuple[str, str]:
    """An image's bitmap: <stem>_bits.png, or <stem>_<ext>_bits.png where two inputs share a stem."""
    return f"{image.stem}{BITMAP_SUFFIX}.png", f"{image.stem}_{image.suffix.lstrip('.').lower()}{BITMAP_SUFFIX}.png"


def written_names(image: Path, suffix: str) -> list[str]:
    """The file names this tool writes for an image: its output (<stem><suffix>.<ext>) and its bitmap."""
    return ([output_name(image, suffix)] if suffix else []) + list(bitmap_names(image))


def _scan(folder: Path, skip: list[Path], skipped: list[str]) -> list[Path]:
    """The files under `folder`, sorted, without hidden ones or this run's output folders. Links are not
    followed (a link loop, or a link out of the folder, would make the scan unbounded or surprising) and, like
    entries that are not regular files or cannot be read, are listed in `skipped`."""
    files: list[Path] = []

    def unreadable(exc: OSError) -> None:
        skipped.append(f"skipped {exc.filename}: cannot read ({exc.strerror})")

    for root, dirs, names in os.walk(folder, onerror=unreadable):
        here = Path(root)
        for name in sorted(dirs):
            sub = here / name
            if name.startswith(".") or _inside(sub.absolute(), skip):
                dirs.remove(name)
            elif sub.is_symlink():
                skipped.append(f"skipped {sub}: a link to a folder (scans do not follow links; name it to scan it)")
        for name in names:
            path = here / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                skipped.append(f"skipped {path}: a link (scans do not follow links; name the file to upscale it)")
            elif (why := regular_file(path)) is not None:
                skipped.append(f"skipped {path}: {why}")
            else:
                files.append(path)
    return sorted(files)


@dataclass
class Found:
    """What collect() found: inputs (path, folder it was found in or None), files of scanned folders left out as
    outputs of an earlier run (file -> the input it belongs to), entries a scan skipped (one line each), and
    errors for named paths that cannot be inputs."""
    inputs: list[tuple[Path, Path | None]] = field(default_factory=list)
    own_outputs: dict[Path, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def collect(inputs: list[Path], suffix: str, warn: Callable[[str], None], output_folders: list[Path] = ()
            ) -> Found:
    """Every input, checked as what it is before anything reads it. Hidden files and folders (our own
    temporaries among them) and this run's output folders (-o, --bitmap) are not scanned."""
    found = Found()
    skip = [f.absolute() for f in output_folders]
    for item in inputs:
        if item.is_dir():
            files = _scan(item, skip, found.skipped)
            images = [p for p in files if p.suffix.lower() in READ]
            # a file named like what this tool writes for an image of the scan, wherever it is, is an earlier output
            written = {name: p for p in images for name in written_names(p, suffix)}
            for path in files:
                if path.name in written and written[path.name] != path:
                    found.own_outputs[path] = written[path.name]
                elif path.suffix.lower() in READ:
                    found.inputs.append((path, item))
                else:
                    warn(f"warning: {path}: not an image, skipped")
        elif not item.exists() and not item.is_symlink():
            found.errors.append(f"{item}: no such file or folder")
        elif (why := regular_file(item)) is not None:
            found.errors.append(f"{item}: {why}")
        else:
            found.inputs.append((item, None))
    return found


def identity(path: Path) -> tuple:
    """Two names of one file compare equal (hard links, symlinks, `a/../b`)."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(os.path.realpath(path)))


def names_a_file(path: Path, flag: str) -> bool:
    """Whether -o / --bitmap names one image file rather than a folder: a name with a suffix is a file (a
    folder with a dot in its name must exist already, or be written with a trailing slash)."""
    if path.is_dir() or str(path).endswith(os.sep):
        return False
    suffix = path.suffix.lower()
    if suffix in WRITTEN:
        return True
    if suffix:
        raise UserError(f"{flag} {path}: cannot write {suffix} files (image formats: "
                        f"{', '.join(sorted(OUTPUT_SUFFIXES))}; videos: {', '.join(sorted(VIDEO_SUFFIXES))}; "
                        "a new folder: end the name with /)")
    if path.exists():
        raise UserError(f"{flag} {path}: is a file, not an output folder")
    return False


def _place(folder: Path, source: Path, root: Path | None, name: str) -> Path:
    return folder / (source.parent.relative_to(root) if root else Path()) / name


def _bitmaps(found: list[tuple[Path, Path | None]], folder: Path) -> list[Path]:
    """`<stem>_bits.png` per input under `folder`, mirroring the folder structure; inputs that share a stem
    there (img.bmp, img.tiff) get `<stem>_<ext>_bits.png`."""
    plain = [_place(folder, p, root, bitmap_names(p)[0]) for p, root in found]
    counts: dict[tuple, int] = {}
    for path in plain:
        counts[identity(path)] = counts.get(identity(path), 0) + 1
    return [path.with_name(bitmap_names(p)[1]) if counts[identity(path)] > 1 else path
            for path, (p, _) in zip(plain, found)]


def plan(found: list[tuple[Path, Path | None]], own_outputs: dict[Path, Path], output: Path | None, suffix: str,
         bitmap: Path | None = None, stats: Path | None = None, overwrite: bool = False,
         model: Path | None = None) -> Plan:
    """Jobs for `found`. Raises UserError on a conflict: an output that is an input or inside the model directory
    in use (`model`), two outputs on one path, -o / --bitmap naming one file for several inputs."""
    result = Plan()
    single = output is not None and names_a_file(output, "-o")
    if single and len(found) > 1:
        raise UserError(f"-o {output}: names one file, but there are {len(found)} inputs (give a folder)")
    bitmap_single = bitmap is not None and names_a_file(bitmap, "--bitmap")
    if bitmap_single and len(found) > 1:
        raise UserError(f"--bitmap {bitmap}: names one file, but there are {len(found)} inputs (give a folder)")
    targets = [output if single else (p.with_name(output_name(p, suffix)) if output is None
                                      else _place(output, p, root, output_name(p, suffix))) for p, root in found]
    bitmaps: list[Path | None] = [None] * len(found)
    if bitmap is not None:
        bitmaps = [bitmap] * len(found) if bitmap_single else _bitmaps(found, bitmap)

    inputs = {identity(p): p for p, _ in found}
    # output folders may be shared (-o and --bitmap in one folder), but no file may be named as one
    owners: dict[tuple, str] = {identity(f): what for f, what in ((output, "the -o folder"),
                                                                   (bitmap, "the --bitmap folder"))
                                if f is not None and not names_a_file(f, "")}

    def claim(path: Path, what: str) -> None:
        key = identity(path)
        if model is not None:
            keep_out_of_model(path, model, what)
        if key in inputs:
            raise UserError(f"{inputs[key]}: this input would be overwritten by {what} (choose another -o, "
                            "--suffix, --bitmap or --stats)")
        if key in owners:
            raise UserError(f"{path}: named as both {owners[key]} and {what}" + (
                " (write the inputs to separate folders)" if owners[key].startswith("the output of")
                and what.startswith("the output of") else ""))
        owners[key] = what

    for (source, _), target in zip(found, targets):
        video = source.suffix.lower() in VIDEO_SUFFIXES
        if video != (target.suffix.lower() in VIDEO_SUFFIXES):
            kinds = ", ".join(sorted(VIDEO_SUFFIXES if video else OUTPUT_SUFFIXES))
            raise UserError(f"{target}: {'a video' if video else 'an image'} ({source}) cannot be written as "
                            f"{target.suffix} (give one of {kinds})")
    if stats is not None:
        claim(stats, "the --stats file")
    for (source, _), target, bits in zip(found, targets, bitmaps):
        claim(target, f"the output of {source}")
        if bits is not None:
            claim(bits, f"the bitmap of {source}")
    for (source, _), target, bits in zip(found, targets, bitmaps):
        derived = [p for p, explicit in ((target, single), (bits, bitmap_single)) if p is not None and not explicit]
        existing = [p for p in derived if p.exists()]
        if existing and not overwrite:
            result.skipped.append(f"skipped {source}: {existing[0]} already exists (--overwrite replaces it)")
            continue
        result.jobs.append(Job(source, target, bits))
    targets_of = {identity(t) for t in targets}
    for path, source in own_outputs.items():
        if identity(path) not in targets_of:
            result.notes.append(f"note: {path} not taken as an input: it is named like the output of {source}")
    return result
