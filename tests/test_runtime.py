"""The torch-free runtime: tiling geometry, routing, image forms, the CLI and its handling of bad input."""
import json
import shutil
import struct
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import REPO

from adabm_deploy.data import open_benchmark
from adabm_deploy.metrics import psnr, to_uint8
from runtime import images, manifest
from runtime.engines.onnxruntime import OnnxRuntimeEngine
from runtime.errors import UserError
from runtime.files import process
from runtime.jobs import Job
from runtime.pipeline import Report, Upscaler
from runtime.png import PngStream
from runtime.routing import CHEAP
from runtime.schedule import WindowSchedule, shared_is_sooner
from runtime.tiling import plan, window_weights

BUNDLED = REPO / "runtime" / "models" / "edsr_baseline_x4"


class ReplicateEngine:
    """Pixel replication in place of the network: local, so tiled output must equal the whole-image one."""
    name = "replicate"

    def __init__(self):
        self.model = manifest.load(BUNDLED, verify_hashes=False)
        self.calls = []

    def run(self, factor, batch, threads=None):
        self.calls.append((factor, batch.shape))
        s = self.model.scale
        return batch.repeat(s, axis=2).repeat(s, axis=3).astype(np.float32)


def upscale_cli(*args, block_torch=True, cwd=REPO):
    """Run the CLI in a fresh interpreter where torch (and onnx) cannot be imported."""
    guard = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; " if block_torch else ""
    code = guard + "import runpy; runpy.run_module('runtime.upscale', run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def lr_image(benchmark_root):
    return benchmark_root / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"


@pytest.mark.parametrize("h,w,patch,overlap", [(270, 480, 96, 2), (96, 96, 96, 8), (40, 30, 96, 2),
                                               (200, 97, 96, 8), (1, 1, 96, 2), (300, 50, 64, 0)])
def test_cells_partition_the_image_and_weights_sum_to_one(h, w, patch, overlap):
    grid = plan(h, w, patch, overlap)
    covered = np.zeros((h, w), int)
    total = np.zeros((h * 2, w * 2))
    for t in grid.tiles():
        y0, y1, x0, x1 = t.cell
        assert y1 - y0 <= patch and x1 - x0 <= patch
        covered[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = t.window
        assert (wy0, wy1, wx0, wx1) == (max(y0 - overlap, 0), min(y1 + overlap, h),
                                        max(x0 - overlap, 0), min(x1 + overlap, w))  # context only inside
        total[wy0 * 2:wy1 * 2, wx0 * 2:wx1 * 2] += window_weights(grid, t, 2)
    assert (covered == 1).all()
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    assert grid.computed_pixels() == sum((t.window[1] - t.window[0]) * (t.window[3] - t.window[2])
                                         for t in grid.tiles())


def test_overlap_is_capped_at_half_a_cell_so_only_neighbours_meet():
    grid = plan(10, 10, 3, 5)
    total = np.zeros((10, 10))
    for t in grid.tiles():
        wy0, wy1, wx0, wx1 = t.window
        total[wy0:wy1, wx0:wx1] += window_weights(grid, t, 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_tiled_stitching_is_exact_for_a_local_operator(benchmark_root):
    lr = cv2.imread(str(benchmark_root / "Set14" / "LR_bicubic" / "X4" / "barbarax4.png"))[:, :, ::-1]
    lr = np.ascontiguousarray(lr).astype(np.float32)
    engine = ReplicateEngine()
    out, report = Upscaler(engine, patch=24, overlap=4, cheap=False).upscale_rgb(lr, np.uint8)
    np.testing.assert_array_equal(out, to_uint8(lr.repeat(4, 0).repeat(4, 1)))
    assert sum(report.counts().values()) == len(report.grid.tiles()) and set(report.factors) <= {-1, 0, 1}
    assert [shape[0] for _, shape in engine.calls] == [1] * len(report.grid.tiles())


@pytest.mark.parametrize("h,w,patch,overlap", [(97, 200, 24, 4), (1001, 30, 8, 4), (1, 1, 96, 2), (50, 300, 64, 0),
                                               (10, 10, 3, 5), (33, 47, 5, 2)])
def test_bands_cover_the_output_once_each_at_most_a_row_of_windows_high(h, w, patch, overlap):
    """Out-of-range values too: saturation happens once, on the blended sum."""
    lr = np.random.default_rng(0).uniform(-10, 265, (h, w, 3)).astype(np.float32)
    up = Upscaler(ReplicateEngine(), patch, overlap, cheap=False)
    report = Report(up.plan(h, w))
    bands = list(up.bands(lr, np.uint8, report))
    assert len(bands) == report.grid.rows
    ys = report.grid.ys
    assert max(b.shape[0] for b in bands) <= 4 * max(e - s for s, e in zip(ys.win_start, ys.win_end))
    np.testing.assert_array_equal(np.concatenate(bands), to_uint8(lr.repeat(4, 0).repeat(4, 1)))


def test_routing_sends_flat_cells_low_and_texture_high():
    engine = ReplicateEngine()
    rng = np.random.default_rng(0)
    gentle = np.tile(np.linspace(100, 130, 96, dtype=np.float32)[None, :, None], (96, 1, 3))  # complexity 0.6
    texture = rng.integers(0, 256, (96, 96, 3)).astype(np.float32)
    lr = np.concatenate([gentle, gentle[::-1] + rng.normal(0, 10, (96, 96, 3)).astype(np.float32), texture], axis=1)
    assert engine.model.cheap_threshold is not None
    _, report = Upscaler(engine, 96, 2, cheap=False).upscale_rgb(lr, np.uint8)
    assert report.factors == [-1, -1, 1]
    fabs = {f: v.fab for f, v in engine.model.variants.items()}
    assert report.fab(fabs) == pytest.approx((2 * fabs[-1] + fabs[1]) / 3)
    calls = len(engine.calls)
    _, report = Upscaler(engine, 96, 2).upscale_rgb(lr, np.uint8)
    assert report.factors == [CHEAP, -1, 1] and report.counts() == {CHEAP: 1, "-1": 1, "+0": 0, "+1": 1}
    assert len(engine.calls) - calls == 2  # the cheap cell ran no network
    assert report.fab(fabs) == pytest.approx((fabs[-1] + fabs[1]) / 2)  # over the cells the network ran


def test_the_cheap_rung_is_bicubic_cross_faded_into_its_neighbours():
    """A cheap cell's output is the bicubic upscale of its window; in the overlap band it is cross-faded with
    the network output of its neighbour (here pixel replication), as network windows are, so no seam shows."""
    from runtime import rung
    engine = ReplicateEngine()
    lr = np.concatenate([np.tile(np.linspace(100, 130, 96, dtype=np.float32)[None, :, None], (96, 1, 3)),
                         np.random.default_rng(1).integers(0, 256, (96, 96, 3)).astype(np.float32)], axis=1)
    out, report = Upscaler(engine, 96, 2).upscale_rgb(lr, np.uint8)
    assert report.factors[0] == CHEAP
    bicubic = to_uint8(rung.upscale(lr[:, :98], 4))  # the cheap window: the cell and 2 px of context
    replicated = to_uint8(lr.repeat(4, 0).repeat(4, 1))
    np.testing.assert_array_equal(out[:, : 94 * 4], bicubic[:, : 94 * 4])  # before the overlap band
    np.testing.assert_array_equal(out[:, 98 * 4:], replicated[:, 98 * 4:])  # after it
    band = out[:, 94 * 4:98 * 4].astype(int)
    low = np.minimum(bicubic[:, 94 * 4:98 * 4], replicated[:, 94 * 4:98 * 4]).astype(int)
    high = np.maximum(bicubic[:, 94 * 4:98 * 4], replicated[:, 94 * 4:98 * 4]).astype(int)
    assert ((band >= low - 1) & (band <= high + 1)).all()  # a blend of the two, pixel by pixel


def test_the_bitmap_shows_the_cheap_rung_in_its_own_colour():
    from runtime.routing import FACTOR_COLORS, overlay
    lr = np.full((96, 192, 3), 128, np.uint8)
    grid = Upscaler(ReplicateEngine(), 96, 2).plan(96, 192)
    bitmap = overlay(lr, grid, [CHEAP, 1]).astype(int)
    assert bitmap.shape == (96 * 6, 192 * 6, 3)  # the short side enlarged to at least 512 px
    left, right = bitmap[240, 240], bitmap[240, 840]  # inside each cell, away from the borders
    assert len({tuple(c) for c in FACTOR_COLORS.values()}) == 5  # five routes (FP32 too), five colours
    expected = [np.round(0.55 * 128 + 0.45 * np.array(FACTOR_COLORS[f])) for f in (CHEAP, 1)]
    assert np.abs(left - expected[0]).max() <= 1 and np.abs(right - expected[1]).max() <= 1


@pytest.mark.parametrize("height,width", [(1, 3000), (3000, 1), (1, 30000), (96, 96), (4000, 6000)])
def test_the_bitmaps_memory_is_bounded_whatever_the_aspect_ratio(height, width):
    """The short side was enlarged to 512 px whatever the long side: 4.5 GiB for a 1 x 3000 strip, 23.6 GB for
    1 x 30000. Now an overlay has at most max(LR pixels, 2^24) pixels, and stays readable where that allows."""
    from runtime.routing import OVERLAY_MAX_PIXELS, overlay_factor
    k = overlay_factor(height, width)
    assert k >= 1 and height * width * k * k <= max(height * width, OVERLAY_MAX_PIXELS)
    assert min(height, width) * k >= 512 or (k + 1) ** 2 * height * width > OVERLAY_MAX_PIXELS


def test_a_bitmap_of_a_one_pixel_strip_is_written_within_the_bound(tmp_path):
    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.random.default_rng(0).integers(0, 256, (1, 3000, 3), np.uint8))
    proc = upscale_cli(strip, "--bitmap", tmp_path / "bits.png", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    bitmap = cv2.imread(str(tmp_path / "bits.png"))
    assert bitmap.shape[0] * bitmap.shape[1] <= 1 << 24 and bitmap.shape[0] == 74, bitmap.shape


def test_a_version_1_model_directory_loads_without_the_rung_and_says_so(tmp_path, lr_image):
    old = tmp_path / "v1"
    shutil.copytree(BUNDLED, old)
    data = json.loads((old / "manifest.json").read_text())
    data["version"] = 1
    del data["cheap_rung"]
    del data["engines"]  # before version 3 a variant names its one (ONNX Runtime) graph itself
    for v in data["variants"]:
        v.update(v.pop("graphs")["onnxruntime"])
    (old / "manifest.json").write_text(json.dumps(data))
    m = manifest.load(old)
    assert m.version == 1 and m.cheap_threshold is None and "version 1 model directory" in m.notice
    proc = upscale_cli(lr_image, "--model", old, "-o", tmp_path / "x.png")
    assert proc.returncode == 0 and "without the cheap rung" in proc.stderr, proc.stderr
    data["version"] = 2
    (old / "manifest.json").write_text(json.dumps(data))
    proc = upscale_cli(lr_image, "--model", old, "-o", tmp_path / "y.png")
    assert proc.returncode == 2 and "no 'cheap_rung' field" in proc.stderr, proc.stderr


def test_tiled_matches_whole_image_for_one_variant(benchmark_root):
    """Default overlap: tiled vs whole-image Y-PSNR for a fixed variant (README has the Set14 figures)."""
    from runtime.api import DEFAULT_OVERLAP
    model = manifest.load(BUNDLED)
    engine = OnnxRuntimeEngine(model, threads=2)
    up = Upscaler(engine, model.patch_size, DEFAULT_OVERLAP, variant="0")
    bench = open_benchmark(benchmark_root / "Set5", 4)
    whole, tiled = [], []
    for pair in bench.pairs:
        lr, hr = bench.load(pair)
        x = lr.transpose(2, 0, 1)[None].astype(np.float32)
        whole.append(psnr(to_uint8(engine.run(0, x)[0].transpose(1, 2, 0)), hr, crop=4))
        tiled.append(psnr(up.upscale_rgb(lr.astype(np.float32), np.uint8)[0], hr, crop=4))
    assert abs(np.mean(tiled) - np.mean(whole)) <= 0.02, (np.mean(tiled), np.mean(whole))


def test_cli_runs_without_torch_and_writes_stats_and_bitmap(lr_image, tmp_path):
    out = tmp_path / "baby_sr.png"
    proc = upscale_cli(lr_image, "-o", out, "--stats", tmp_path / "s.json", "--bitmap", tmp_path / "b.png",
                       "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    sr = cv2.imread(str(out))
    assert sr.shape == (512, 512, 3)
    hr = cv2.imread(str(lr_image.parents[2] / "HR" / "baby.png"))
    assert psnr(sr[:, :, ::-1], hr[:, :, ::-1], crop=4) > 32.0  # a real super-resolution, not a resize
    stats = json.loads((tmp_path / "s.json").read_text())
    record = stats["images"][0]
    assert sum(record["cells"].values()) == 4 and 7.0 <= record["fab"] <= 8.0 and record["seconds"] > 0
    bitmap = cv2.imread(str(tmp_path / "b.png"))
    assert bitmap is not None and min(bitmap.shape[:2]) >= 512


def _exif_jpeg(bgr: np.ndarray, orientation: int) -> bytes:
    """A JPEG with an APP1 EXIF segment holding only the orientation tag."""
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_image_forms_round_trip(lr_image, tmp_path):
    bgr = cv2.imread(str(lr_image))[:40, :30]
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif"):
        cv2.imwrite(str(src / f"rgb{ext}"), bgr)
    cv2.imwrite(str(src / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    alpha = np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (40, 1))
    cv2.imwrite(str(src / "sub" / "rgba.png"), np.dstack([bgr, alpha]))
    cv2.imwrite(str(src / "deep.png"), bgr.astype(np.uint16) * 257 + 100)
    (src / "exif.jpg").write_bytes(_exif_jpeg(bgr, 6))  # 6: rotate 90 degrees clockwise to display
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    proc = upscale_cli(src, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "notes.txt: not an image, skipped" in proc.stderr
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif"):
        img = cv2.imread(str(out / f"rgb_x4{ext}"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (160, 120, 3) and img.dtype == np.uint8, ext
    assert cv2.imread(str(out / "gray_x4.png"), cv2.IMREAD_UNCHANGED).shape == (160, 120)
    rgba = cv2.imread(str(out / "sub" / "rgba_x4.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (160, 120, 4)
    np.testing.assert_allclose(rgba[:, :, 3].astype(float), cv2.resize(alpha, (120, 160),
                               interpolation=cv2.INTER_CUBIC), atol=1)
    deep = cv2.imread(str(out / "deep_x4.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (160, 120, 3) and deep.max() > 255
    assert cv2.imread(str(out / "exif_x4.jpg")).shape == (120, 160, 3)  # displayed orientation: 30x40 LR
    assert images.load(src / "exif.jpg").size == (30, 40)


def test_bad_inputs_are_reported_and_the_rest_still_processed(lr_image, tmp_path):
    good = tmp_path / "good.png"
    shutil.copy(lr_image, good)
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    jpeg = cv2.imencode(".jpg", cv2.imread(str(lr_image)))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    (tmp_path / "fake.png").write_bytes(b"this is text" * 10 + b"IEND")
    names = ["missing.png", "cut.png", "cut.jpg", "empty.png", "anim.gif", "fake.png", "good.png"]
    proc = upscale_cli(*[tmp_path / n for n in names], "-o", tmp_path / "out")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 6, proc.stderr
    for name, words in [("missing.png", "no such file"), ("cut.png", "truncated PNG"), ("cut.jpg", "truncated JPEG"),
                        ("empty.png", "empty file"), ("anim.gif", "damaged GIF"), ("fake.png", "not a PNG file")]:
        assert any(name in e and words in e for e in errors), (name, errors)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_x4.png"]
    assert good.read_bytes() == data


def test_outputs_never_overwrite_inputs_and_unwritable_output_is_one_line(lr_image, tmp_path):
    a = tmp_path / "a.png"
    shutil.copy(lr_image, a)
    before = a.read_bytes()
    proc = upscale_cli(a, "-o", a)
    assert proc.returncode == 2 and "this input would be overwritten" in proc.stderr and a.read_bytes() == before
    (tmp_path / "blocker").write_text("a file, not a folder")
    proc = upscale_cli(a, "-o", tmp_path / "blocker" / "out")
    assert proc.returncode == 1 and "blocker is a file, not a folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "blocker"]  # no temporary left


def test_damaged_model_directory_exits_2_before_any_image(lr_image, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(BUNDLED, broken)
    (broken / "int8_f+0.onnx").write_bytes(b"garbage")
    proc = upscale_cli(lr_image, "-o", tmp_path / "x.png", "--model", broken)
    assert proc.returncode == 2 and "int8_f+0.onnx does not match its sha256" in proc.stderr
    assert not (tmp_path / "x.png").exists()
    proc = upscale_cli(lr_image, "--model", tmp_path / "nowhere")
    assert proc.returncode == 2 and "model directory not found" in proc.stderr


def test_rerun_over_a_folder_does_not_upscale_its_own_outputs(lr_image, tmp_path):
    shutil.copy(lr_image, tmp_path / "a.png")
    for _ in range(2):
        proc = upscale_cli(tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x4.png"]


def test_concurrent_tile_calls_and_thread_counts_give_the_same_image(benchmark_root):
    lr = cv2.imread(str(benchmark_root / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"))[:, :, ::-1]
    lr = np.ascontiguousarray(lr[:100, :120]).astype(np.float32)
    engine = OnnxRuntimeEngine(manifest.load(BUNDLED), threads=1)
    one, _ = Upscaler(engine, 48, 2).upscale_rgb(lr, np.uint8)
    two, _ = Upscaler(engine, 48, 2, workers=2).upscale_rgb(lr, np.uint8)
    np.testing.assert_array_equal(one, two)
    small = lr[:40, :40]  # one window: run with both workers' threads in one call
    one, _ = Upscaler(engine, 48, 2).upscale_rgb(small, np.uint8)
    two, _ = Upscaler(engine, 48, 2, workers=2).upscale_rgb(small, np.uint8)
    np.testing.assert_array_equal(one, two)
    assert {key[1] for key in engine._sessions} == {1, 2}


@pytest.mark.parametrize("channels,dtype", [(1, np.uint8), (2, np.uint8), (3, np.uint8), (4, np.uint8),
                                            (3, np.uint16), (1, np.uint16)])
def test_png_stream_written_in_uneven_bands_decodes_to_the_same_pixels(tmp_path, channels, dtype):
    rng = np.random.default_rng(channels)
    image = rng.integers(0, np.iinfo(dtype).max + 1, (37, 23, channels), dtype=dtype)
    image[10:20] = image[9]  # flat rows: the Up filter's zero differences
    image = image[:, :, 0] if channels == 1 else image
    path = tmp_path / "x.png"
    with open(path, "wb") as f:
        png = PngStream(f, 37, 23, channels, dtype)
        for a, b in [(0, 1), (1, 17), (17, 37)]:
            png.write(image[a:b])
        png.close()
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if channels == 2:  # OpenCV reads gray + alpha as BGRA
        assert np.array_equal(decoded[:, :, 0], image[:, :, 0]) and np.array_equal(decoded[:, :, 3], image[:, :, 1])
    else:
        np.testing.assert_array_equal(decoded, image if channels == 1 else image[:, :, [2, 1, 0, 3][:channels]])
    with open(tmp_path / "y.png", "wb") as f, pytest.raises(ValueError, match="of its 37 rows"):
        PngStream(f, 37, 23, channels, dtype).close()


def test_alpha_rows_equal_the_rows_of_the_whole_plane_resized():
    alpha = np.random.default_rng(0).integers(0, 256, (29, 13), dtype=np.uint8)
    whole = cv2.resize(alpha, (13 * 4, 29 * 4), interpolation=cv2.INTER_CUBIC)
    for y0, y1 in [(0, 5), (5, 64), (64, 67), (67, 116), (0, 116), (100, 116)]:
        np.testing.assert_array_equal(images.alpha_rows(alpha, 4, y0, y1), whole[y0:y1])


class FailingEngine(ReplicateEngine):
    """Fails on its n-th window, as an unloadable variant would."""

    def __init__(self, n):
        super().__init__()
        self.n, self.tries = n, 0

    def run(self, factor, batch, threads=None):
        self.tries += 1
        if self.tries == self.n:
            raise UserError("variant cannot be loaded")
        return super().run(factor, batch)


def test_a_failure_while_computing_or_writing_leaves_no_file_and_the_batch_goes_on(lr_image, tmp_path):
    src = tmp_path / "in.png"
    shutil.copy(lr_image, src)  # 128x128 LR: 3 x 3 cells of 48
    engine = FailingEngine(n=5)
    jobs = [Job(src, tmp_path / "out" / "a.png"), Job(src, tmp_path / "out" / "b.png")]
    records, failures = process(jobs, Upscaler(engine, 48, 2, cheap=False))
    assert failures == ["variant cannot be loaded"] and [r["output"] for r in records] == [str(jobs[1].target)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]  # no temporary of a.png left
    (tmp_path / "blocker").write_text("a file")
    engine = ReplicateEngine()
    records, failures = process([Job(src, tmp_path / "blocker" / "c.png")], Upscaler(engine, 48, 2, cheap=False))
    assert len(failures) == 1 and "blocker is a file, not a folder" in failures[0] and not records
    assert len(engine.calls) <= 3 + 3  # stopped at the first band, not after the whole image


def test_sixteen_bit_pictures_route_and_upscale_like_their_eight_bit_values():
    """The picture stays in its own dtype; windows and cells are scaled to 0..255 floats as they are cut."""
    lr = np.random.default_rng(1).integers(0, 256, (70, 150, 3), dtype=np.uint8)
    lr[:, :75] = 120  # a flat half and a textured half: two different factors
    up = Upscaler(ReplicateEngine(), 48, 2, cheap=False)  # integer outputs: 8 and 16 bits compare exactly
    eight, report8 = up.upscale_rgb(lr, np.uint8)
    sixteen, report16 = up.upscale_rgb(lr.astype(np.uint16) * 257, np.uint16)
    assert report16.factors == report8.factors and len(set(report8.factors)) > 1
    np.testing.assert_array_equal(sixteen, eight.astype(np.uint16) * 257)


def test_last_round_shares_the_cores_only_when_that_finishes_sooner():
    assert shared_is_sooner(0.02, 0.09, last=1, workers=2)  # 2 cores, the other window nearly done
    assert not shared_is_sooner(0.08, 0.09, last=2, workers=16)  # busy windows far from done
    assert not shared_is_sooner(0.0, 0.09, last=3, workers=4)  # 4 // 3: no core to share
    small = WindowSchedule(workers=4, windows=2)  # fewer windows than workers: all cores at once
    assert small.begin(0) == 2 and small.begin(1) == 2
    schedule = WindowSchedule(workers=2, windows=3)
    assert schedule.begin(0) == 1 and schedule.begin(1) == 1
    time.sleep(0.1)
    schedule.end(0)  # a window takes 0.1 s; window 1, started with it, is about to finish
    threading.Timer(0.2, schedule.end, args=(1,)).start()
    start = time.perf_counter()
    assert schedule.begin(2) == 2  # waited for window 1, then took both cores
    assert time.perf_counter() - start >= 0.1


class NonFiniteEngine(ReplicateEngine):
    """A graph whose output overflows to infinity and NaN, as a damaged or badly exported one can."""

    def run(self, factor, batch, threads=None):
        out = super().run(factor, batch)
        out[:, :, :2, :2] = np.nan
        return out


def test_a_non_finite_model_output_is_refused_for_that_image_and_the_batch_goes_on(lr_image, tmp_path):
    """Before, NaN became a white block in the written image, exit 0."""
    src = tmp_path / "in.png"
    shutil.copy(lr_image, src)
    records, failures = process([Job(src, tmp_path / "out.png")], Upscaler(NonFiniteEngine(), 48, 2, cheap=False))
    assert not records and len(failures) == 1 and not (tmp_path / "out.png").exists()
    assert failures[0].startswith(f"{src}: the model's output is not finite"), failures


def test_variant_fp32_reports_fp32_cells_not_the_int8_variants_routing_would_pick(tmp_path, lr_image):
    """--variant fp32 counted cells per INT8 variant in the CLI line and --stats, though none ran."""
    out, stats, bits = tmp_path / "out.png", tmp_path / "s.json", tmp_path / "bits.png"
    proc = upscale_cli(lr_image, "-o", out, "--variant", "fp32", "--stats", stats, "--bitmap", bits,
                       "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(stats.read_text())["images"][0]
    n = sum(record["cells"].values())
    assert record["cells"] == {"cheap": 0, "-1": 0, "+0": 0, "+1": 0, "fp32": n} and n > 0
    assert record["fab"] is None and f"'fp32': {n}" in proc.stdout
    assert bits.is_file()  # the overlay has a colour for FP32 cells (gray)
