"""What an input file is and what an image file says about itself, before anything decodes it: a regular file
of a size an image can have, its format, size and integrity.

Decoders fail late and badly on hostile or damaged files: a 3 KB PNG that claims 100000 x 100000 pixels
makes OpenCV allocate (or throw) before it reads a row, a 0 x 0 PNG makes libpng print noise, a text file
named .png reads as a "truncated PNG", and libjpeg turns a JPEG damaged mid-stream into garbage blocks with
no more than a warning. So the content is sniffed, the dimensions are read from the header (imagesize; PNG
here, with its chunk CRCs) and checked against a pixel limit, and a JPEG's entropy-coded data is decoded once
with every libjpeg warning an error (simplejpeg, at 1/8 scale: the same parse, a fraction of the work).
"""
from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagesize
import simplejpeg

from .errors import UserError

# Default limit on an input's pixels, from its header: 2^25 (33.5 MP, an 8K frame) keeps a decode and the
# uint8 picture under about 100 MB, while the streamed x4 output of such an input is 537 MP.
MAX_PIXELS = 1 << 25
# An image file holds at most 8 bytes a pixel (16-bit RGBA, uncompressed BMP / TIFF) plus metadata (EXIF, ICC
# profiles, thumbnails, XMP: a few MB); a bigger file is refused from its size before it is read.
BYTES_PER_PIXEL, METADATA_BYTES = 8, 16 << 20


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file a pixel limit admits."""
    return max_pixels * BYTES_PER_PIXEL + METADATA_BYTES


def oversized(name: str, max_pixels: int) -> UserError:
    """The refusal of a file (a path or a URI) larger than max_file_bytes(max_pixels)."""
    return UserError(f"{name}: over {max_file_bytes(max_pixels):,} bytes, more than an image of at most "
                     f"{max_pixels:,} pixels takes (raise --max-pixels)")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAGIC = [(PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")]
SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WebP", ".tif": "TIFF",
                 ".tiff": "TIFF", ".gif": "GIF"}
PNG_GRAY_TYPES = (0, 4)  # colour types: gray, gray + alpha


@dataclass(frozen=True)
class Header:
    format: str  # PNG, JPEG, GIF, BMP, WebP or TIFF
    width: int
    height: int
    gray: bool | None = None  # known from the header (PNG); None where the decoder decides


def regular_file(path: Path) -> str | None:
    """None for a regular file (after links) that can be read; else why it is not taken: a FIFO would block the
    run forever, a device (/dev/zero) never ends, a folder or socket is no image."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else \
            "not a regular file"
        return f"{kind}, not a file to read"
    if not os.access(path, os.R_OK):
        return "cannot read (permission denied)"
    return None


def sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


def _png(path: Path, data: bytes) -> Header:
    """Walk the chunks: each complete with a matching CRC, IHDR first, IEND last."""
    pos, width = len(PNG_SIGNATURE), None
    while True:
        if pos + 8 > len(data):
            raise UserError(f"{path}: truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise UserError(f"{path}: truncated PNG ({kind.decode('latin-1')} chunk cut off)")
        body = data[pos + 8:end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack(">I", data[end - 4:end])[0]:
            raise UserError(f"{path}: damaged PNG (CRC mismatch in a {kind.decode('latin-1')} chunk)")
        if width is None:
            if kind != b"IHDR" or length != 13:
                raise UserError(f"{path}: damaged PNG (no IHDR chunk first)")
            width, height, _, color_type = struct.unpack(">IIBB", body[:10])
        if kind == b"IEND":
            return Header("PNG", width, height, gray=color_type in PNG_GRAY_TYPES)
        pos = end


def _jpeg(path: Path, data: bytes) -> None:
    """Decode once, every libjpeg warning an error: a file cut short (even by its end marker alone) says
    "Premature end". Bytes after the end marker are not looked at: phones append a video there (motion photos)."""
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY", strict=True,
                               min_factor=8)
    except ValueError as exc:
        what = "truncated" if "Premature end" in str(exc) else "damaged"
        raise UserError(f"{path}: {what} JPEG data (libjpeg: {exc})") from None


def read_header(path: Path, data: bytes, max_pixels: int = MAX_PIXELS) -> Header:
    """The header of an image file's bytes, after checking that it is one, that its size is sane, and (PNG,
    JPEG) that its data is whole. Raises UserError naming the file and the problem."""
    fmt = sniff(data)
    expected = SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        kind = f"a {expected} file" if expected else "an image"
        raise UserError(f"{path}: not {kind} (its content has no PNG, JPEG, GIF, BMP, WebP or TIFF signature)")
    if fmt == "PNG":
        header = _png(path, data)
    else:
        width, height = imagesize.get(io.BytesIO(data), exif_rotation=False)
        if width < 0 or height < 0:
            raise UserError(f"{path}: damaged {fmt} (no readable image size in its header)")
        header = Header(fmt, width, height)
    if header.width == 0 or header.height == 0:
        raise UserError(f"{path}: image has no pixels ({header.width}x{header.height} in its header)")
    if header.width * header.height > max_pixels:
        raise UserError(f"{path}: {header.width}x{header.height} is {header.width * header.height:,} pixels, over "
                        f"the limit of {max_pixels:,} (raise it with --max-pixels)")
    if fmt == "JPEG":
        _jpeg(path, data)
    return header
