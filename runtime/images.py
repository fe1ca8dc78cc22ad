"""Images as users have them: PNG, JPEG, BMP, WebP, TIFF; gray, RGB, RGBA; 8 or 16 bit; EXIF orientation.

An image is split into what the network sees (RGB, as float 0..255 window by window) and what it does not
(an alpha plane, the bit depth, whether it was gray), so the output can be put back together in the input's
own form.
Writes are atomic (a hidden temporary file beside the target, then a rename) and take the output a band of
rows at a time, so a PNG is encoded while the rows below it are still being computed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from adabm_deploy.atomic import staged
from adabm_deploy.errors import UserError
from adabm_deploy.images import IMAGE_SUFFIXES

from .png import PngStream


@dataclass
class Picture:
    rgb: np.ndarray  # H x W x 3 RGB in the file's dtype: floats are made per window (as_float)
    alpha: np.ndarray | None  # H x W in the input's dtype
    dtype: np.dtype  # uint8 or uint16
    gray: bool

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


_DIHEDRAL = [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1],
             lambda a: a.transpose(1, 0, *range(2, a.ndim)),
             lambda a: np.rot90(a, -1), lambda a: np.rot90(a, 1),
             lambda a: a[::-1, ::-1].transpose(1, 0, *range(2, a.ndim))]


def _check_complete(path: Path, data: bytes) -> None:
    """libjpeg and libpng hand back a partly grey image for a cut-off file; refuse it instead."""
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg") and b"\xff\xd9" not in data[-4096:]:
        raise UserError(f"{path}: truncated JPEG (no end-of-image marker)")
    if suffix == ".png" and b"IEND" not in data[-64:]:
        raise UserError(f"{path}: truncated PNG (no IEND chunk)")


def load(path: Path) -> Picture:
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: unsupported format {path.suffix or '(no extension)'!r} "
                        f"(supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise UserError(f"{path}: empty file")
    _check_complete(path, data)
    buf = np.frombuffer(data, np.uint8)
    # ANYCOLOR | ANYDEPTH applies EXIF orientation and keeps 16 bits; only UNCHANGED keeps alpha (unrotated).
    shown = cv2.imdecode(buf, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if shown is None or shown.size == 0:
        raise UserError(f"{path}: cannot decode image (damaged or not really {path.suffix})")
    if shown.dtype not in (np.uint8, np.uint16):
        raise UserError(f"{path}: {shown.dtype} pixels are not supported (8 or 16 bit only)")
    alpha = None
    raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if raw is not None and raw.ndim == 3 and raw.shape[2] == 4:
        color = raw[:, :, :3] if shown.ndim == 3 else cv2.cvtColor(raw[:, :, :3], cv2.COLOR_BGR2GRAY)
        orient = next((f for f in _DIHEDRAL if f(color).shape == shown.shape and np.array_equal(f(color), shown)),
                      _DIHEDRAL[0])
        alpha = np.ascontiguousarray(orient(raw[:, :, 3]))
    gray = shown.ndim == 2
    rgb = np.repeat(shown[:, :, None], 3, axis=2) if gray else shown[:, :, ::-1]
    return Picture(np.ascontiguousarray(rgb), alpha, shown.dtype, gray)


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


def output_channels(picture: Picture) -> int:
    """Gray stays gray; gray with alpha becomes RGBA (OpenCV has no two-channel writer)."""
    return 4 if picture.alpha is not None else 1 if picture.gray else 3


def alpha_rows(alpha: np.ndarray, scale: int, y0: int, y1: int) -> np.ndarray:
    """Rows [y0, y1) of the alpha plane upscaled bicubically by `scale`, from the LR rows they need: bicubic
    reads two rows either side, so with that context the rows equal those of resizing the whole plane."""
    h, w = alpha.shape
    lo, hi = max(y0 // scale - 2, 0), min(-(-y1 // scale) + 2, h)
    up = cv2.resize(alpha[lo:hi], (w * scale, (hi - lo) * scale), interpolation=cv2.INTER_CUBIC)
    return up[y0 - lo * scale:y1 - lo * scale]


def compose(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool) -> np.ndarray:
    """Output RGB rows (already in the output dtype) + alpha rows -> gray, RGB or RGBA rows."""
    if gray and alpha is None:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if gray:
        rgb = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return rgb if alpha is None else np.dstack([rgb, alpha])


HIGH_DEPTH = (".png", ".tif", ".tiff")  # formats that keep 16 bits; JPEG, WebP and BMP are 8-bit


class _Whole:
    """Rows collected into one image in OpenCV's channel order, for the encoders that need the whole picture
    (all but PNG)."""

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
    with staged(path) as tmp:
        with open(tmp, "wb") as f:  # a folder we cannot write to fails here, with the system's reason
            sink = PngStream(f, height, width, channels, stored) if suffix == ".png" else \
                _Whole(height, width, channels, stored)
            yield Output(sink, narrow=stored != dtype)
            sink.close()
        if isinstance(sink, _Whole):
            try:
                written = cv2.imwrite(str(tmp), sink.image)
            except cv2.error:
                written = False
            if not written:
                raise UserError(f"{path}: cannot encode as {path.suffix}")


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
