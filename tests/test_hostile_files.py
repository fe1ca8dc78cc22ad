"""Property test: the files cameras, phones, editors and other tools write, valid and damaged, through the CLI.

For each generated file the run either writes a correct output (its size is the input's, oriented, times the
scale; downscaled again it matches what an independent decoder reads from the same bytes) or refuses that
input in one line naming it, with exit 1; nothing else in the folder is touched; no traceback. Generated files
are smooth pictures, so that "matches" can be tight with the real bundled x4 model. FUZZ_EXAMPLES, FUZZ_VIDEOS
and FUZZ_RANDOM=1 (a new draw each run instead of the fixed one) make longer hunts.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct

import cv2
import numpy as np
import pytest

from runtime.command import run_cli
from runtime.upscale import main as upscale_main

hypothesis = pytest.importorskip("hypothesis", reason="the property tests need the test extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCALE = 4


def smooth(h: int, w: int, seed: int, channels: int = 3, depth=np.uint8) -> np.ndarray:
    """Gradients and a disc: what a photo is locally, and what an SR model reproduces closely."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = []
    for _ in range(channels):
        a, b, c = rng.uniform(-3, 3, 3)
        plane = 128 + a * x + b * y + 60 * ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 3) ** 2) * c / 3
        planes.append(np.clip(plane, 0, 255))
    img = np.dstack(planes) if channels > 1 else planes[0]
    return (img * 257).astype(np.uint16) if depth == np.uint16 else img.astype(np.uint8)


def exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an APP1 Exif segment whose IFD0 holds one Orientation tag, as a phone writes it."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def animation(frames: list[np.ndarray], suffix: str) -> bytes:
    anim = cv2.Animation()
    anim.frames, anim.durations = frames, [100] * len(frames)
    ok, data = cv2.imencodeanimation(suffix, anim)
    assert ok
    return bytes(data)


def encode(kind: str, h: int, w: int, seed: int, orientation: int) -> tuple[bytes, str]:
    """(file bytes, suffix) of one kind of file a camera, phone or editor writes."""
    rgb = smooth(h, w, seed)
    enc = lambda ext, img, *params: bytes(cv2.imencode(ext, img, list(params))[1])  # noqa: E731
    if kind == "jpeg":
        return enc(".jpg", rgb, cv2.IMWRITE_JPEG_QUALITY, 95), ".jpg"
    if kind == "jpeg progressive":
        return enc(".jpg", rgb, cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 95), ".jpeg"
    if kind == "jpeg gray":
        return enc(".jpg", smooth(h, w, seed, 1), cv2.IMWRITE_JPEG_QUALITY, 95), ".jpg"
    if kind == "jpeg exif orientation":
        return exif_orientation(enc(".jpg", rgb, cv2.IMWRITE_JPEG_QUALITY, 95), orientation), ".jpg"
    if kind == "png":
        return enc(".png", rgb), ".png"
    if kind == "png 16-bit":
        return enc(".png", smooth(h, w, seed, depth=np.uint16)), ".png"
    if kind == "png gray":
        return enc(".png", smooth(h, w, seed, 1)), ".png"
    if kind == "png rgba":
        return enc(".png", np.dstack([rgb, smooth(h, w, seed + 1, 1)])), ".png"
    if kind == "tiff lzw":
        return enc(".tiff", rgb, cv2.IMWRITE_TIFF_COMPRESSION, 5), ".tif"
    if kind == "tiff 16-bit":
        return enc(".tiff", smooth(h, w, seed, depth=np.uint16)), ".tiff"
    if kind == "webp":
        return enc(".webp", rgb, cv2.IMWRITE_WEBP_QUALITY, 100), ".webp"
    if kind == "bmp":
        return enc(".bmp", rgb), ".bmp"
    if kind == "gif":  # few colours, so the palette holds them without dithering
        return enc(".gif", rgb // 64 * 64 + 32), ".gif"
    if kind == "apng":
        return animation([rgb, smooth(h, w, seed + 1)], ".png"), ".png"
    raise AssertionError(kind)


KINDS = ["jpeg", "jpeg progressive", "jpeg gray", "jpeg exif orientation", "png", "png 16-bit", "png gray",
         "png rgba", "tiff lzw", "tiff 16-bit", "webp", "bmp", "gif", "apng"]
# what happens to files on their way: nothing, a copy cut short, bits flipped, a run zeroed, a trailer appended
# (phones append a video after a JPEG's end: motion photos), a wrong extension
DAMAGE = ["none", "none", "truncated", "bit flip", "zeroed run", "trailer", "wrong suffix"]


def upscale_quietly(src) -> tuple[int, str]:
    """The CLI on one file, in this process: (exit code, what it wrote on stderr); stdout is dropped."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = run_cli(upscale_main, [str(src), "--threads", "1", "--engine", "onnxruntime"])
    return rc, err.getvalue()


def reference(data: bytes) -> np.ndarray | None:
    """What an independent decoder (OpenCV, EXIF orientation applied) reads from the bytes."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)


def test_files_cameras_phones_and_editors_write_valid_or_damaged(tmp_path_factory):
    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"),
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(KINDS), damage=st.sampled_from(DAMAGE), h=st.integers(1, 40), w=st.integers(1, 40),
           seed=st.integers(0, 1000), orientation=st.integers(1, 8), where=st.floats(0.05, 0.95),
           size=st.sampled_from([1, 7, 63, 4097, 70001, 300000]))
    def run(kind, damage, h, w, seed, orientation, where, size):
        root = tmp_path_factory.mktemp("fuzz")
        data, suffix = encode(kind, h, w, seed, orientation)
        pos = min(int(len(data) * where), len(data) - 1)
        if damage == "truncated":
            data = data[:pos]
        elif damage == "bit flip":
            data = data[:pos] + bytes([data[pos] ^ (1 << (size % 8))]) + data[pos + 1:]
        elif damage == "zeroed run":
            data = data[:pos] + bytes(min(size % 64 + 1, len(data) - pos)) + data[pos + 1 + size % 64:]
        elif damage == "trailer":  # bytes after the image's end: a motion photo's video, an editor's padding
            data = data + np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
        elif damage == "wrong suffix":
            suffix = ".png" if suffix != ".png" else ".jpg"
        src = root / f"photo{suffix}"
        src.write_bytes(data)
        (root / "mine.txt").write_text("the user's")
        before = {p: p.read_bytes() for p in root.iterdir()}
        rc, err = upscale_quietly(src)
        lines = err.strip().splitlines()
        case = f"{kind}, {damage}, {h}x{w}, {len(data)} bytes"
        assert "Traceback" not in err, case
        out = root / f"photo_x4{suffix if suffix != '.gif' else '.png'}"
        assert {p: p.read_bytes() for p in before} == before, f"an input changed: {case}"
        assert {p.name for p in root.iterdir()} - {p.name for p in before} <= {out.name}, case
        if rc == 1:
            assert lines and lines[-1].startswith(f"error: {src}: ") and not out.exists(), (case, lines)
            assert damage not in ("none", "wrong suffix", "trailer"), f"a valid file was refused: {case}: {lines}"
            return
        assert rc == 0 and out.is_file(), (case, rc, lines)
        ref, got = reference(data), reference(out.read_bytes())
        assert ref is not None and got.shape[:2] == (ref.shape[0] * SCALE, ref.shape[1] * SCALE), case
        kept = ref.dtype if out.suffix in (".png", ".tif", ".tiff") else np.dtype(np.uint8)  # JPEG etc.: 8-bit
        assert got.ndim == ref.ndim and got.dtype == kept, case
        ref = ref if ref.dtype == kept else (ref // 257).astype(np.uint8)
        if min(ref.shape[:2]) < 8:  # a network's output on a sliver is mostly its edge handling
            return
        unit = 257.0 if ref.dtype == np.uint16 else 1.0
        small = cv2.resize(got.astype(np.float32), (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
        # the picture, not another; a damaged file that decodes (TIFF and BMP data carry no checksum) may hold
        # sharp garbage, which no SR model reproduces as closely as smooth content
        tolerance = 8 if damage in ("none", "wrong suffix", "trailer") else 24
        assert np.abs(small - ref.astype(np.float32)).mean() / unit < tolerance, case

    run()


def clip(suffix: str, frames: int, h: int, w: int, rotation: int) -> bytes:
    """A short H.264 clip as a phone (MP4 with a display rotation) or an editor (MKV) writes it."""
    av = pytest.importorskip("av", reason="videos need the video extra")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4" if suffix == ".mp4" else "matroska") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        for k in range(frames):
            out.mux(video.encode(av.VideoFrame.from_ndarray(smooth(h, w, k), format="rgb24")))
        out.mux(video.encode(None))
    return buf.getvalue()


def decoded(path) -> tuple[int, tuple[int, int], int]:
    """(frames, (height, width), display rotation) as an independent reader (PyAV) sees them."""
    import av
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return len(frames), (frames[0].height, frames[0].width), int(frames[0].rotation or 0)


def test_videos_phones_and_editors_write_valid_or_damaged(tmp_path_factory):
    @settings(max_examples=int(os.environ.get("FUZZ_VIDEOS", "12")), deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"),
              suppress_health_check=list(HealthCheck))
    @given(suffix=st.sampled_from([".mp4", ".mkv"]), rotation=st.sampled_from([0, 90, -90, 180]),
           damage=st.sampled_from(["none", "none", "truncated", "bit flip", "trailer"]),
           h=st.sampled_from([16, 24]), w=st.sampled_from([16, 32]), where=st.floats(0.3, 0.95))
    def run(suffix, rotation, damage, h, w, where):
        root = tmp_path_factory.mktemp("video")
        data = clip(suffix, 5, h, w, rotation)
        pos = int(len(data) * where)
        if damage == "truncated":
            data = data[:pos]
        elif damage == "bit flip":
            data = data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1:]
        elif damage == "trailer":
            data = data + bytes(range(256)) * 8
        src = root / f"clip{suffix}"
        src.write_bytes(data)
        rc, err = upscale_quietly(src)
        lines = err.strip().splitlines()
        case = f"{suffix}, rotation {rotation}, {damage}, {h}x{w}"
        out = root / f"clip_x4{suffix}"
        assert "Traceback" not in err and src.read_bytes() == data, case
        assert {p.name for p in root.iterdir()} <= {src.name, out.name}, case
        if rc == 1:
            assert lines[-1].startswith(f"error: {src}: ") and not out.exists(), (case, lines)
            assert damage != "none", f"a valid video was refused: {case}: {lines}"
            return
        assert rc == 0, (case, lines)
        n, (fh, fw), rot = decoded(src)
        assert decoded(out) == (n, (fh * SCALE, fw * SCALE), rot), case
        if damage == "none":
            assert n == 5 and rot % 360 == rotation % 360, case

    run()


def test_a_tiff_whose_compressed_data_is_damaged_is_refused_not_upscaled_as_garbage(tmp_path, capsys):
    """Found by the property test above: libtiff reports a damaged LZW strip ("Not enough data at scanline 0"),
    OpenCV returns an image anyway (garbage where the strip was), and it was upscaled with exit 0."""
    data = bytes(cv2.imencode(".tiff", smooth(9, 12, 513), [cv2.IMWRITE_TIFF_COMPRESSION, 5])[1])
    pos = len(data) // 2
    src = tmp_path / "scan.tif"
    src.write_bytes(data[:pos] + bytes([data[pos] ^ 2]) + data[pos + 1:])
    assert run_cli(upscale_main, [str(src), "--threads", "1", "--engine", "onnxruntime"]) == 1
    err = capsys.readouterr().err
    assert f"error: {src}: damaged TIFF data (LZWDecode: Not enough data at scanline 0" in err, err
    assert "TIFF_Error" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["scan.tif"]
