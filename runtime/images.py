"""Images as users have them: PNG, JPEG, BMP, WebP, TIFF; gray, RGB, RGBA; 8 or 16 bit; EXIF orientation.

An image is split into what the network sees (RGB, as float 0..255 window by window) and what it does not
(an alpha plane, the bit depth, whether it was gray), so the output can be put back together in the input's
own form.
Writes are atomic (a hidden temporary file beside the target, then a rename) and take the output a band of
rows at a time, so a PNG is encoded while the rows below it are still being computed.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .atomic import staged
from .errors import UserError
from .headers import MAX_PIXELS, max_file_bytes, oversized, read_header, regular_file, sniff
from .png import PngStream

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
OUTPUT_SUFFIXES = IMAGE_SUFFIXES
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".gif"}  # GIF: the first frame; written back as PNG (256 colours would band)
MULTI_PAGE = ("TIFF", "GIF", "PNG", "WebP")  # formats whose files may hold more frames or pages (APNG for PNG)


@dataclass
class Picture:
    rgb: np.ndarray  # H x W x 3 RGB in the file's dtype: floats are made per window (as_float)
    alpha: np.ndarray | None  # H x W in the input's dtype
    dtype: np.dtype  # uint8 or uint16
    gray: bool
    pages: int = 1  # frames or pages in the file (animations, multi-page TIFF): the first is upscaled

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


_DIHEDRAL = [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1],
             lambda a: a.transpose(1, 0, *range(2, a.ndim)),
             lambda a: np.rot90(a, -1), lambda a: np.rot90(a, 1),
             lambda a: a[::-1, ::-1].transpose(1, 0, *range(2, a.ndim))]


def load(path: Path, max_pixels: int = MAX_PIXELS) -> Picture:
    """Decode an input image, after its header has passed read_header (format, size, integrity)."""
    path = Path(path)
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise UserError(f"{path}: unsupported format {path.suffix or '(no extension)'!r} "
                        f"(supported: {', '.join(sorted(INPUT_SUFFIXES))})")
    if (why := regular_file(path)) is not None:
        raise UserError(f"{path}: {why}")
    limit = max_file_bytes(max_pixels)
    data = b""
    try:
        too_big = path.stat().st_size > limit
        if not too_big:
            with open(path, "rb") as f:
                data = f.read(limit + 1)  # bounded even if the file grew after the check
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if too_big or len(data) > limit:
        raise oversized(str(path), max_pixels)
    picture = decode(data, path, max_pixels)
    picture.pages = cv2.imcount(str(path)) if sniff(data) in MULTI_PAGE else 1
    return picture


def decode(data: bytes, path: Path, max_pixels: int = MAX_PIXELS) -> Picture:
    """load() of bytes already read (`path` names them in messages)."""
    if not data:
        raise UserError(f"{path}: empty file")
    header = read_header(path, data, max_pixels)
    buf = np.frombuffer(data, np.uint8)
    try:
        with decoder_errors() as errors:
            # ANYCOLOR | ANYDEPTH applies EXIF orientation and keeps 16 bits; only UNCHANGED keeps alpha (unrotated)
            shown = cv2.imdecode(buf, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
            raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise UserError(f"{path}: cannot decode image ({exc.err or 'OpenCV error'})") from None
    if errors:  # the decoder said the data is damaged, and returned what it made of it anyway
        raise UserError(f"{path}: damaged {header.format} data ({errors[0]})")
    if shown is None or shown.size == 0:
        raise UserError(f"{path}: cannot decode image (damaged {header.format} data)")
    if shown.dtype not in (np.uint8, np.uint16):
        raise UserError(f"{path}: {shown.dtype} pixels are not supported (8 or 16 bit only)")
    alpha = None
    if raw is not None and raw.ndim == 3 and raw.shape[2] == 4:
        color = raw[:, :, :3] if shown.ndim == 3 else cv2.cvtColor(raw[:, :, :3], cv2.COLOR_BGR2GRAY)
        orient = next((f for f in _DIHEDRAL if f(color).shape == shown.shape and np.array_equal(f(color), shown)),
                      _DIHEDRAL[0])
        alpha = np.ascontiguousarray(orient(raw[:, :, 3]))
    # OpenCV decodes a gray + alpha PNG as three equal channels; the header says it was gray
    gray = shown.ndim == 2 or bool(header.gray)
    rgb = np.repeat(shown[:, :, None], 3, axis=2) if shown.ndim == 2 else shown[:, :, ::-1]
    return Picture(np.ascontiguousarray(rgb), alpha, shown.dtype, gray)


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def decoder_errors() -> Iterator[list[str]]:
    """The errors OpenCV's decoders log while the block runs. libtiff reports a damaged LZW strip ("Not enough
    data at scanline 0") and OpenCV still returns an image, garbage where the strip was; the only sign is that
    log line, so stderr (the file descriptor the C++ logger writes to) is read for the block. Whatever else was
    written there meanwhile is passed on."""
    found: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield found
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text = log.read().decode(errors="replace")
            for line in text.splitlines():
                if "[ERROR" in line:  # "[ERROR:0@0.5] global grfmt_tiff.cpp:117 TIFF_Error LZWDecode: ..."
                    found.append(line.split("TIFF_Error", 1)[-1].split("] ", 1)[-1].strip())
                elif line.strip():
                    print(line, file=sys.stderr)


def from_array(array: np.ndarray, name: str = "array") -> Picture:
    """A picture from an array: H x W (gray), H x W x 2 (gray + alpha), H x W x 3 (RGB) or H x W x 4 (RGBA),
    uint8 or uint16. RGB channel order, as numpy users have it (OpenCV's BGR arrays need [..., ::-1])."""
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise UserError(f"{name}: {array.dtype} pixels are not supported (uint8 or uint16)")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise UserError(f"{name}: shape {array.shape} is not an image (H x W, or H x W x 1, 2, 3 or 4 channels)")
    gray = array.shape[2] <= 2
    rgb = np.repeat(array[:, :, :1], 3, axis=2) if gray else array[:, :, :3]
    alpha = array[:, :, -1] if array.shape[2] in (2, 4) else None
    return Picture(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), array.dtype,
                   gray)


def channels_of(picture: Picture) -> int:
    """The channels of the picture's own form: gray, gray + alpha, RGB, RGBA."""
    return (1 if picture.gray else 3) + (picture.alpha is not None)


def as_float(pixels: np.ndarray) -> np.ndarray:
    """Pixels as the network and the complexity measure take them: float32 0..255, 16-bit scaled by 1/257.
    Done per window, so the picture itself stays in its own, 4x smaller, dtype."""
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(257)
    return pixels.astype(np.float32, copy=False)


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float 0..255 -> uint8, or -> uint16 (x 257), rounded half to even and saturated (OpenCV's
    saturate_cast: one pass, about 4x faster than the numpy chain on a 1080p frame)."""
    if dtype == np.uint16:
        return cv2.multiply(values, 257.0, dtype=cv2.CV_16U)
    return cv2.multiply(values, 1.0, dtype=cv2.CV_8U)


def output_channels(picture: Picture, suffix: str) -> int:
    """The input's own form where the output format holds it: gray, gray + alpha (PNG; RGBA elsewhere, as
    OpenCV has no two-channel writer), RGB, RGBA. JPEG has no alpha plane, so it is dropped there."""
    alpha = picture.alpha is not None and suffix.lower() not in NO_ALPHA
    if picture.gray:
        return (2 if suffix.lower() == ".png" else 4) if alpha else 1
    return 4 if alpha else 3


def alpha_rows(alpha: np.ndarray, scale: int, y0: int, y1: int) -> np.ndarray:
    """Rows [y0, y1) of the alpha plane upscaled bicubically by `scale`, from the LR rows they need: bicubic
    reads two rows either side, so with that context the rows equal those of resizing the whole plane."""
    h, w = alpha.shape
    lo, hi = max(y0 // scale - 2, 0), min(-(-y1 // scale) + 2, h)
    up = cv2.resize(alpha[lo:hi], (w * scale, (hi - lo) * scale), interpolation=cv2.INTER_CUBIC)
    return up[y0 - lo * scale:y1 - lo * scale]


def compose(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool, channels: int) -> np.ndarray:
    """Output RGB rows (already in the output dtype) + alpha rows -> `channels` (output_channels) rows:
    gray, gray + alpha, RGB or RGBA; a gray picture's colour channels are made equal."""
    if gray:
        luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if channels <= 2:
            return luma if channels == 1 else np.dstack([luma, alpha])
        rgb = cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB)
    return rgb if channels == 3 else np.dstack([rgb, alpha])


HIGH_DEPTH = (".png", ".tif", ".tiff")  # formats that keep 16 bits; JPEG, WebP and BMP are 8-bit
NO_ALPHA = (".jpg", ".jpeg")


class _Whole:
    """Rows collected into one image in OpenCV's channel order, for the encoders that need the whole picture
    (all but PNG; OpenCV writes no gray + alpha, so output_channels never asks them for two channels)."""

    def __init__(self, height: int, width: int, channels: int, dtype: np.dtype):
        self.image = np.empty((height, width, channels), dtype)
        self.order = [2, 1, 0, 3][:channels] if channels > 1 else [0]  # RGB(A) -> BGR(A)
        self.rows = 0

    def write(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        self.image[self.rows:self.rows + n] = rows.reshape(n, rows.shape[1], -1)[:, :, self.order]
        self.rows += n

    def close(self) -> None:
        if self.rows != self.image.shape[0]:
            raise ValueError(f"image has {self.rows} of its {self.image.shape[0]} rows")


class Output:
    """What `writer` hands out: takes gray / RGB / RGBA rows top to bottom, in the picture's dtype."""

    def __init__(self, sink, narrow: bool):
        """narrow: 16-bit rows going to an 8-bit format."""
        self.sink, self.narrow = sink, narrow

    def write(self, rows: np.ndarray) -> None:
        self.sink.write((rows // 257).astype(np.uint8) if self.narrow else rows)


@contextlib.contextmanager
def writer(path: Path, height: int, width: int, channels: int, dtype: np.dtype) -> Iterator[Output]:
    """Write an image band by band, atomically: PNG streams to a hidden temporary file as the rows come
    (the whole output never sits in memory); other formats are assembled, then encoded by the suffix.
    Renamed over `path` when the block ends, removed if it raises."""
    path = Path(path)
    suffix = path.suffix.lower()
    stored = dtype if suffix in HIGH_DEPTH else np.dtype(np.uint8)
    _make_folder(path)
    if suffix not in OUTPUT_SUFFIXES:
        raise UserError(f"{path}: cannot write {suffix or 'files without an extension'} "
                        f"(output formats: {', '.join(sorted(OUTPUT_SUFFIXES))})")
    _make_folder(path)
    with staged(path) as tmp:
        with open(tmp, "wb") as f:  # a folder we cannot write to fails here, with the system's reason
            sink = PngStream(f, height, width, channels, stored) if suffix == ".png" else \
                _Whole(height, width, channels, stored)
            yield Output(sink, narrow=stored != dtype)
            sink.close()
            if isinstance(sink, _Whole):  # encoded in memory, so a full disk says so instead of "cannot encode"
                f.write(_encode(path, sink.image))


def _encode(path: Path, image: np.ndarray) -> np.ndarray:
    try:
        ok, data = cv2.imencode(path.suffix.lower(), image)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"{path}: cannot encode a {image.shape[2]}-channel {image.dtype} image as {path.suffix}")
    return data


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():  # mkdir says only "File exists" / "Not a directory"
            raise UserError(f"{path}: cannot write ({blocker} is a file, not a folder)") from None
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None


def save(path: Path, image: np.ndarray) -> None:
    """Write a whole gray / RGB / RGBA image (16-bit kept where the format has it), atomically."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    with writer(path, image.shape[0], image.shape[1], channels, image.dtype) as out:
        out.write(image)
