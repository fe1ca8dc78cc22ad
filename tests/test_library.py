"""The runtime as a library (runtime.api), videos (runtime.video) and the distributed batch job (runtime.batch)."""
import json
import os
import shutil
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime
from conftest import REPO
from runtime.api import SuperResolver


def photo(h=24, w=32, seed=0, channels=3, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    img = rng.integers(0, top + 1, (h, w, channels)).astype(dtype)
    img[:, : w // 2] = top // 2
    return img[:, :, 0] if channels == 1 else img


@pytest.mark.parametrize("channels,dtype", [(1, np.uint8), (2, np.uint8), (3, np.uint8), (4, np.uint8),
                                            (3, np.uint16), (1, np.uint16)])
def test_upscale_an_array_of_any_form(tiny_model_dir, channels, dtype, tmp_path):
    lr = photo(channels=channels, dtype=dtype)
    with runtime.load(tiny_model_dir, threads=2) as sr:
        hr = sr.upscale(lr)
        assert hr.dtype == dtype and hr.shape[:2] == (96, 128) and hr.shape[2:] == lr.shape[2:]
        if channels in (2, 4):  # the alpha plane: bicubic, beside the network
            expected = cv2.resize(lr[:, :, -1], (128, 96), interpolation=cv2.INTER_CUBIC)
            np.testing.assert_allclose(hr[:, :, -1].astype(float), expected, atol=1)
        if channels == 3 and dtype == np.uint8:  # the same pixels as the file path (the CLI's) gives
            cv2.imwrite(str(tmp_path / "lr.png"), lr[:, :, ::-1])
            sr.upscale_file(tmp_path / "lr.png", tmp_path / "sr.png")
            assert np.array_equal(hr, cv2.imread(str(tmp_path / "sr.png"))[:, :, ::-1])


def test_files_and_bad_input_through_the_api(tiny_model_dir, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), photo()[:, :, ::-1])
    (tmp_path / "bad.png").write_text("not an image")
    with SuperResolver(tiny_model_dir) as sr:
        record = sr.upscale_file(tmp_path / "a.png")
        assert record["output"] == str(tmp_path / "a_x4.png") and cv2.imread(record["output"]).shape == (96, 128, 3)
        with pytest.raises(runtime.UserError, match="a_x4.png already exists"):
            sr.upscale_file(tmp_path / "a.png")  # a derived output is replaced only with overwrite=True
        sr.upscale_file(tmp_path / "a.png", overwrite=True)
        with pytest.raises(runtime.UserError, match=r"bad.png: not a PNG file"):
            sr.upscale_file(tmp_path / "bad.png")
        with pytest.raises(runtime.UserError, match="float64 pixels are not supported"):
            sr.upscale(np.zeros((8, 8, 3)))
        with pytest.raises(runtime.UserError, match=r"shape \(8, 8, 5\) is not an image"):
            sr.upscale(np.zeros((8, 8, 5), np.uint8))
        run = sr.upscale_files([tmp_path], tmp_path / "out", stats=tmp_path / "s.json")
        assert len(run.records) == 1 and len(run.failed) == 1 and "bad.png" in run.failed[0]
        assert json.loads((tmp_path / "s.json").read_text())["failed"] == run.failed
    assert not [p for p in tmp_path.rglob(".*")]
    with pytest.raises(runtime.UserError, match="model directory not found"):
        runtime.load(tmp_path / "nowhere")
    with pytest.raises(runtime.UserError, match="variant 'x'"):
        runtime.load(tiny_model_dir, variant="x")


def test_close_stops_the_worker_threads(tiny_model_dir):
    before = threading.active_count()
    sr = runtime.load(tiny_model_dir, threads=2)
    sr.upscale(photo(100, 200))
    assert threading.active_count() > before
    sr.close()
    assert threading.active_count() == before and not sr.upscaler.engine._sessions


def test_warm_up_runs_every_graph_the_router_may_pick_at_window_size(tiny_model_dir, monkeypatch):
    with runtime.load(tiny_model_dir, threads=1) as sr:
        calls = []
        run = sr.upscaler.engine.run
        monkeypatch.setattr(sr.upscaler.engine, "run", lambda factor, x, *a: calls.append((factor, x.shape)) or
                            run(factor, x, *a))
        sr.warm_up()
        side = sr.patch + 2 * sr.overlap
        assert calls == [(f, (1, 3, side, side)) for f in (-1, 0, 1)]


def test_console_scripts_run_the_commands():
    import shutil
    import tomllib
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["adabm-upscale"] == "runtime.upscale:console"
    for name in ("adabm-upscale", "adabm-batch", "adabm-export", "adabm-calibrate", "adabm-evaluate"):
        assert name in scripts
        path = shutil.which(name, path=str(Path(sys.executable).parent))
        if path is None:
            pytest.skip(f"{name} not installed (pip install -e . writes the console scripts)")
        proc = subprocess.run([path, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (name, proc.stderr)


# -- video ----------------------------------------------------------------------------------------------------

def make_clip(path, frames=6, size=(48, 32), audio=True, subtitles=False, rotation=0):
    """rotation: the display rotation a phone writes for a portrait clip (frames stored sideways)."""
    av = pytest.importorskip("av", reason="videos need the video extra: pip install -e '.[video]'")
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        video.codec_context.color_primaries = video.codec_context.color_trc = video.codec_context.colorspace = 1
        sound = out.add_stream("aac", rate=16000) if audio else None
        text = out.add_stream("ass") if subtitles else None
        if text is not None:
            text.time_base = Fraction(1, 1000)
        for i in range(frames):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            img[:, : 8 + 4 * i] = (200, 90, 40)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            samples = np.sin(np.linspace(0, 400, 16000 // 2)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
        if text is not None:
            cue = av.Packet(SUBTITLE)
            cue.stream, cue.time_base, cue.pts, cue.dts, cue.duration = text, text.time_base, 0, 0, 400
            out.mux(cue)
    return path


SUBTITLE = b"an upscaled line"


def test_a_video_is_upscaled_frame_by_frame_with_its_audio_and_colour_kept(tmp_path):
    av = pytest.importorskip("av")
    clip = make_clip(tmp_path / "clip.mp4")
    proc = subprocess.run([sys.executable, "-m", "runtime.upscale", str(clip), "--threads", "2"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "6 frames" in proc.stdout
    with av.open(str(tmp_path / "clip_x4.mp4")) as out, av.open(str(clip)) as src:
        v, sv = out.streams.video[0], src.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (192, 128)
        assert v.average_rate == sv.average_rate and v.codec_context.color_primaries == 1
        assert [s.type for s in out.streams] == ["video", "audio"]
        assert out.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
    assert len(frames) == 6 and frames[-1].shape == (128, 192, 3)
    assert abs(int(frames[-1][64, 20, 0]) - 200) < 24  # the picture, upscaled (through two lossy encodes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_x4.mp4"]


def test_subtitles_are_copied_packet_for_packet(tmp_path):
    av = pytest.importorskip("av")
    clip = make_clip(tmp_path / "clip.mkv", frames=3, audio=False, subtitles=True)
    proc = subprocess.run([sys.executable, "-m", "runtime.upscale", str(clip)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(tmp_path / "clip_x4.mkv")) as out:
        assert [s.type for s in out.streams] == ["video", "subtitle"]
        cues = [bytes(p) for p in out.demux(subtitles=0) if p.size]
    assert cues == [SUBTITLE]


def test_a_broken_video_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path):
    pytest.importorskip("av")
    (tmp_path / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 200)
    proc = subprocess.run([sys.executable, "-m", "runtime.upscale", str(tmp_path / "broken.mkv"), "--model",
                           str(tiny_model_dir)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "broken.mkv" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mkv"]


@pytest.mark.parametrize("name,cut", [("clip.mkv", 0.6), ("clip.mkv", 0.9), ("clip.mp4", 0.6), ("clip.mp4", 0.9)])
def test_a_truncated_video_is_refused_not_written_shorter(tiny_model_dir, tmp_path, name, cut):
    """A video cut off mid-stream decoded what it had without an error, and a shorter output was written with
    exit 0. Now the decoded frames are compared with what the header declares; the video fails (exit 1) in one
    line, nothing is written, and the run's other inputs still go on."""
    av = pytest.importorskip("av")
    whole = make_clip(tmp_path / f"whole_{name}", frames=24, size=(48, 32), audio=True)
    if name.endswith(".mp4"):  # moov first (as phones and `-movflags faststart` write it), so a cut file opens
        with av.open(str(whole)) as src, av.open(str(tmp_path / "fast.mp4"), "w",
                                                 options={"movflags": "faststart"}) as out:
            streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
        whole = tmp_path / "fast.mp4"
    data = whole.read_bytes()
    src = tmp_path / "in"
    src.mkdir()
    (src / name).write_bytes(data[:int(len(data) * cut)])
    cv2.imwrite(str(src / "a.png"), photo()[:, :, ::-1])
    proc = subprocess.run([sys.executable, "-m", "runtime.upscale", str(src), "-o", str(tmp_path / "out"),
                           "--model", str(tiny_model_dir)], capture_output=True, text=True, cwd=REPO)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and str(src / name) in errors[0], proc.stderr
    assert "truncated or damaged video" in errors[0] or "damaged video data at frame" in errors[0], errors
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png"]


# -- the batch job -------------------------------------------------------------------------------------------

def run_batch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "runtime.batch", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_a_batch_job_on_a_local_two_worker_cluster_reports_failures_and_resumes(tiny_model_dir, tmp_path):
    pytest.importorskip("dask.distributed", reason="the batch job needs the batch extra: pip install -e '.[batch]'")
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(src / ("sub" if i == 3 else "") / f"img{i}.png"), photo(seed=i)[:, :, ::-1])
    (src / "cut.png").write_bytes((src / "img0.png").read_bytes()[:100])
    cv2.imwrite(str(tmp_path / "remote.jpg"), photo(seed=9)[:, :, ::-1])
    (tmp_path / "uris.txt").write_text(f"{(tmp_path / 'remote.jpg').as_uri()}\nfile://{tmp_path}/missing.png\n")
    out, report = tmp_path / "out", tmp_path / "report.json"
    proc = run_batch(src, "--list", tmp_path / "uris.txt", "-o", out, "--model", tiny_model_dir, "--workers", 2,
                     "--report", report)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(report.read_text())
    assert data["workers"] == 2 and len(data["images"]) == 5 and len(data["failed"]) == 2
    assert len({r["worker"] for r in data["images"]}) == 2
    assert any("cut.png: truncated PNG" in f for f in data["failed"])
    assert any("missing.png: cannot read" in f for f in data["failed"])
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["img0_x4.png", "img1_x4.png", "img2_x4.png", "remote_x4.jpg", "sub/img3_x4.png"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    (out / "img1_x4.png").unlink()  # as if the job had stopped before this image
    proc = run_batch(src, "-o", out, "--model", tiny_model_dir, "--workers", 2, "--report", report)
    data = json.loads(report.read_text())
    assert [r["input"] for r in data["images"]] == [str(src / "img1.png")] and len(data["skipped"]) == 3
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "img1_x4.png")
    assert not [p for p in tmp_path.rglob(".*")]


def test_batch_tasks_travel_by_name_so_each_worker_keeps_one_model():
    """Pickled by value (as functions of __main__ are), a task would carry a fresh model cache each time."""
    pytest.importorskip("dask.distributed")
    import cloudpickle

    from runtime import batch
    for task in (batch.run_one, batch.warm):
        payload = cloudpickle.dumps(task)
        assert b"runtime.batch" in payload and len(payload) < 200


def test_the_readmes_library_example_runs_as_written(tmp_path):
    """Every ```python block of the README, run in a fresh interpreter from a folder that holds only what a fresh
    clone has beside it (the examples folder)."""
    import re
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert blocks
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo_api_x4.png").is_file() and (tmp_path / "lib_stats.json").is_file()


def test_a_phones_portrait_video_keeps_its_display_rotation(tmp_path):
    """A phone stores a portrait clip sideways with a 90-degree display matrix. The frames are upscaled as stored
    and the output carries the same rotation, so players show it upright as they show the input."""
    av = pytest.importorskip("av", reason="videos need the video extra: pip install -e '.[video]'")
    clip = make_clip(tmp_path / "portrait.mp4", frames=3, audio=False, rotation=-90)
    with SuperResolver(threads=1) as sr:
        record = sr.upscale_file(clip)
    assert record["rotation"] == -90
    with av.open(str(tmp_path / "portrait_x4.mp4")) as out, av.open(str(clip)) as src:
        frame, first = next(out.decode(video=0)), next(src.decode(video=0))
        assert frame.rotation == first.rotation == -90
        assert (frame.width, frame.height) == (4 * first.width, 4 * first.height)
        stored = frame.to_ndarray(format="rgb24")
        # the bar drawn at the stored frame's left edge is still there, not turned to the top or bottom
        assert stored[:, :16].mean() > stored[:, -16:].mean() + 40


def test_a_batch_whose_list_names_another_file_of_the_same_name_is_refused_before_any_work(tmp_path):
    """A local b/x.png and a listed URI c/x.png would both write out/x_x4.png: one result would be lost."""
    pytest.importorskip("dask.distributed", reason="the batch job needs the batch extra")
    for folder in ("b", "c"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.full((16, 16, 3), 128, np.uint8))
    (tmp_path / "uris.txt").write_text(f"file://{tmp_path / 'c' / 'x.png'}\n")
    proc = run_batch(tmp_path / "b" / "x.png", "--list", tmp_path / "uris.txt", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "named as both the output of" in proc.stderr, proc.stderr
    assert not list((tmp_path / "out").glob("*.png"))


def test_a_video_named_as_an_image_output_or_the_reverse_is_one_line(tmp_path):
    """`clip.mp4 -o out.png` was a traceback from the video muxer; an image to a video name likewise."""
    clip = make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    still = tmp_path / "a.png"
    cv2.imwrite(str(still), np.full((16, 16, 3), 128, np.uint8))
    for source, target in ((clip, tmp_path / "out.png"), (still, tmp_path / "out.mp4")):
        proc = subprocess.run([sys.executable, "-m", "runtime.upscale", str(source), "-o", str(target)],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"cannot be written as {target.suffix}" in proc.stderr and not target.exists(), proc.stderr


def test_a_batch_job_refuses_fifos_and_devices_without_hanging_and_goes_on(tiny_model_dir, tmp_path):
    """A FIFO named x.png hung the batch job forever (a scan, a named input, a file:// URI alike)."""
    pytest.importorskip("dask.distributed", reason="the batch job needs the batch extra")
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), photo()[:, :, ::-1])
    for name in ("scanned.png", "named.png", "listed.png"):
        os.mkfifo((src if name == "scanned.png" else tmp_path) / name)
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "uris.txt").write_text(f"file://{tmp_path}/listed.png\n")
    report = tmp_path / "report.json"
    proc = run_batch(src, tmp_path / "named.png", tmp_path / "zero.png", "--list", tmp_path / "uris.txt",
                     "-o", tmp_path / "out", "--model", tiny_model_dir, "--report", report, timeout=120)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(report.read_text())
    assert sorted(data["failed"]) == sorted([f"{tmp_path / 'named.png'}: a FIFO, not a file to read",
                                             f"{tmp_path / 'zero.png'}: a device, not a file to read",
                                             f"file://{tmp_path}/listed.png: a FIFO, not a file to read"])
    assert data["skipped"] == [f"skipped {src / 'scanned.png'}: a FIFO, not a file to read"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_x4.png"]


def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    """An unreachable --scheduler was a traceback after Dask's 30 s connect timeout (shortened here)."""
    pytest.importorskip("dask.distributed", reason="the batch job needs the batch extra")
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), photo()[:, :, ::-1])
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    proc = run_batch(src, "-o", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9", timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --scheduler tcp://127.0.0.1:9: cannot reach it " \
        "(Timed out trying to connect to tcp://127.0.0.1:9 after 2 s)", proc.stderr
