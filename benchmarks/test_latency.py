"""Latency of every way to run EDSR-baseline x4 on this CPU, in one pytest-benchmark run.

Rows: PyTorch FP32, ONNX Runtime FP32 (the plain graph a user's export has), OpenVINO FP32 (its default
precision hint and f32), ORT's own quantize_static INT8 and OpenVINO + NNCF INT8 on that graph, each AdaBM INT8
variant on the whole frame on each engine, and runtime.upscale end to end on each engine and on auto (routing,
tiling, overlap, stitching; and with PNG read/write). Inputs: a 480x270 frame (-> 1920x1080) and a batch of 96x96
patches; 1 thread and all cores. extra_info carries what the report needs: MACs, Set14 Y-PSNR, threads.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime import manifest
from runtime.api import DEFAULT_MODEL, DEFAULT_OVERLAP, SuperResolver
from runtime.engines import installed, open_engine
from runtime.engines.onnxruntime import OnnxRuntimeEngine, session_options
from runtime.pipeline import Upscaler

from benchmarks.workloads import REPO, THREADS, macs_per_lr_pixel, onnx_runner, set14_psnr, shared

ROUNDS = 5
PAIRED_ROUNDS = 7  # rows timed against the bare variant round by round
MODEL = manifest.load(DEFAULT_MODEL)
WORK = Path(tempfile.mkdtemp(prefix="adabm-bench-"))
os.environ["ADABM_DEPLOY_CACHE"] = str(WORK / "cache")  # auto rows probe afresh in each run
ENGINE_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def engine_param(name: str):
    """An engine as a test parameter, skipped where its library is not installed."""
    return pytest.param(name, marks=pytest.mark.skipif(name not in installed() and name != "auto",
                                                       reason=f"{name} is not installed"))


ENGINES = [engine_param(e) for e in ENGINE_NAMES]


def machine() -> dict:
    import torch

    from runtime.cpu import cpu_ghz, cpu_model, int8_extensions
    from importlib.metadata import PackageNotFoundError, version
    try:
        openvino = version("openvino")
    except PackageNotFoundError:
        openvino = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "int8": int8_extensions(), "ghz": cpu_ghz(),
            "onnxruntime": ort.__version__, "openvino": openvino, "torch": torch.__version__}


def record(benchmark, fn, *, row, threads, pixels, macs_per_pixel, accuracy, quick, input_name, frames=1,
           bare=None):
    """`frames`: how many inputs one call of `fn` processes (the report divides its median by it). `bare`: the
    bare whole-frame run of one variant, timed right before each round of `fn` (untimed setup), so that the
    report can give the median of per-round ratios: drift of a busy machine between rows cancels in them."""
    benchmark.extra_info.update(row=row, threads=threads, input=input_name, lr_pixels=int(pixels),
                                macs=int(pixels) * macs_per_pixel, machine=machine(), frames=frames)
    if not quick and accuracy is not None:
        benchmark.extra_info["psnr_y_set14"] = accuracy()
    rounds = 1 if quick else ROUNDS if bare is None else PAIRED_ROUNDS
    if bare is None:
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)
        return
    bare_s, fn_s = [], []

    def setup():
        start = time.perf_counter()
        bare()
        bare_s.append(time.perf_counter() - start)

    def timed():
        start = time.perf_counter()
        fn()
        fn_s.append(time.perf_counter() - start)
    benchmark.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=1)
    ratios = [f / frames / b for b, f in zip(bare_s[-rounds:], fn_s[-rounds:])]
    benchmark.extra_info.update(paired_ratio=float(np.median(ratios)), bare_median=float(np.median(bare_s[-rounds:])))


_ACCURACY: dict[str, float] = {}


def _accuracy(key: str, build) -> float:
    """Set14 Y-PSNR of one model, measured once per run (the cache keeps the number, not the session)."""
    if key not in _ACCURACY:
        _ACCURACY[key] = build()
    return _ACCURACY[key]


def set14_root() -> Path:
    return shared("data", "benchmark", "Set14")


@pytest.fixture(scope="session")
def network(checkpoint):
    from adabm_deploy.models import load_network
    return load_network(checkpoint)


@pytest.fixture(scope="session")
def macs(network) -> dict[bool, int]:
    """Conv multiply-accumulates per LR pixel: the plain graph (False) and the exported, rewritten one (True)."""
    return {rewrite: macs_per_lr_pixel(network.graph, rewrite) for rewrite in (False, True)}


@pytest.fixture(scope="session")
def fp32_graph(network) -> Path:
    """The plain FP32 graph: PixelShuffle then conv, as a user's own export has it."""
    from adabm_deploy.quant import QuantGraph
    from export.qdq import build_model
    plain = WORK / "fp32_plain.onnx"
    onnx.save(build_model(QuantGraph(network.graph, 8, 8, full_quant=True), None, rewrite=False), plain)
    return plain


@pytest.fixture(scope="session")
def rewritten_fp32_graph(network) -> Path:
    """This project's rewritten FP32 graph (sub-pixel tail, channels-last shuffles): the bundled fp32.onnx."""
    from adabm_deploy.quant import QuantGraph
    from export.qdq import build_model
    path = WORK / "fp32_rewritten.onnx"
    onnx.save(build_model(QuantGraph(network.graph, 8, 8, full_quant=True), None), path)
    return path


@pytest.fixture(scope="session")
def calibration_set(quick) -> list[np.ndarray]:
    from adabm_deploy.data import calibration_images
    return calibration_images(shared("data", "train", "BSD200"), 4 if quick else 100, MODEL.scale, seed=0)


@pytest.fixture(scope="session")
def static_int8(fp32_graph, calibration_set) -> Path:
    from benchmarks.baselines import quantize_static_int8
    return quantize_static_int8(fp32_graph, WORK / "static_int8.onnx", calibration_set)


@pytest.fixture(scope="session")
def static_int8_rewritten(rewritten_fp32_graph, calibration_set) -> Path:
    from benchmarks.baselines import quantize_static_int8
    return quantize_static_int8(rewritten_fp32_graph, WORK / "static_int8_rewritten.onnx", calibration_set)


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def as_batch(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame.transpose(2, 0, 1)[None].astype(np.float32))


INPUTS = ["frame", "patches"]


def _input(request, name):
    x = request.getfixturevalue("frame")
    return as_batch(x) if name == "frame" else request.getfixturevalue("patches")


@pytest.mark.parametrize("threads", THREADS)
def test_pytorch_fp32(benchmark, network, macs, frame, threads, quick):
    import torch

    from adabm_deploy.evaluate import fp32_upscaler
    model = network.module
    x = torch.from_numpy(as_batch(frame))
    torch.set_num_threads(threads)

    def run():
        with torch.inference_mode():
            return model(x)
    record(benchmark, run, row="PyTorch FP32", threads=threads, pixels=x.shape[2] * x.shape[3],
           macs_per_pixel=macs[False], quick=quick, input_name="frame",
           accuracy=lambda: _accuracy("torch", lambda: set14_psnr(
               lambda lr: fp32_upscaler(network)(lr)[0].astype(np.float32), set14_root())))


def bench_onnx_file(benchmark, request, path: Path, row: str, key: str, threads: int, input_name: str, quick,
                    macs_per_pixel: int):
    """One ONNX file on ORT as a user would run it: plain session, whole input."""
    sess = ort_session(path, threads)
    x = _input(request, input_name)
    record(benchmark, lambda: sess.run(None, {"lr": x}), row=row, threads=threads,
           pixels=x.shape[0] * x.shape[2] * x.shape[3], macs_per_pixel=macs_per_pixel, quick=quick,
           input_name=input_name, accuracy=lambda: _accuracy(key, lambda: set14_psnr(
               onnx_runner(lambda b: sess.run(None, {"lr": b})[0]), set14_root())))


@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("threads", THREADS)
def test_ort_fp32(benchmark, request, fp32_graph, macs, threads, input_name, quick):
    bench_onnx_file(benchmark, request, fp32_graph, "ORT FP32", "ort_fp32", threads, input_name, quick, macs[False])


@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("threads", THREADS)
def test_ort_quantize_static_int8(benchmark, request, static_int8, macs, threads, input_name, quick):
    bench_onnx_file(benchmark, request, static_int8, "ORT quantize_static INT8 (W8A8)", "static", threads,
                    input_name, quick, macs[False])


@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("threads", THREADS)
def test_ort_quantize_static_int8_rewritten_graph(benchmark, request, static_int8_rewritten, macs, threads,
                                                  input_name, quick):
    """The same quantizer given the graph rewrite AdaBM's graphs have: the difference to the row above is the
    rewrite's, the difference to the AdaBM variants the quantization method's."""
    bench_onnx_file(benchmark, request, static_int8_rewritten, "ORT quantize_static INT8 (W8A8), rewritten graph",
                    "static_rewritten", threads, input_name, quick, macs[True])


@pytest.fixture(scope="session")
def openvino_models(fp32_graph, rewritten_fp32_graph, calibration_set) -> dict:
    pytest.importorskip("openvino", reason="OpenVINO rows need the bench extra: pip install -e '.[bench]'")
    pytest.importorskip("nncf", reason="OpenVINO rows need the bench extra: pip install -e '.[bench]'")
    from benchmarks.baselines import openvino_int8
    return {"OpenVINO FP32": (fp32_graph, False, None),
            "OpenVINO FP32, f32 precision hint": (fp32_graph, False, "f32"),
            "OpenVINO NNCF INT8": (openvino_int8(fp32_graph, calibration_set), False, None),
            "OpenVINO NNCF INT8, rewritten graph": (openvino_int8(rewritten_fp32_graph, calibration_set), True, None)}


@pytest.mark.parametrize("row", ["OpenVINO FP32", "OpenVINO FP32, f32 precision hint", "OpenVINO NNCF INT8",
                                 "OpenVINO NNCF INT8, rewritten graph"])
@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("threads", THREADS)
def test_openvino(benchmark, request, openvino_models, macs, row, threads, input_name, quick):
    """The tool an x86 user would pick instead: OpenVINO on the same FP32 graph (its default precision hint is
    bf16 where the CPU has AMX-BF16 or AVX-512 BF16), NNCF's post-training INT8."""
    from benchmarks.baselines import openvino_runner
    model, rewritten, precision = openvino_models[row]
    run = openvino_runner(model, threads, precision)
    x = _input(request, input_name)
    record(benchmark, lambda: run(x), row=row, threads=threads, pixels=x.shape[0] * x.shape[2] * x.shape[3],
           macs_per_pixel=macs[rewritten], quick=quick, input_name=input_name,
           accuracy=lambda: _accuracy(row, lambda: set14_psnr(onnx_runner(run), set14_root())))


def engine_row(engine: str) -> str:
    """The row-name suffix of an engine: ONNX Runtime's rows keep the names earlier reports gave them."""
    return "" if engine == "onnxruntime" else f", {ENGINE_NAMES.get(engine, engine)}"


@pytest.mark.parametrize("input_name", INPUTS)
@pytest.mark.parametrize("factor", manifest.FACTORS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("engine_name", ENGINES)
def test_adabm_variant(macs, benchmark, request, factor, threads, input_name, engine_name, quick):
    """One AdaBM variant on the whole input, as the engine's own form of the graph (ONNX Runtime's is the
    rewritten graph, OpenVINO's the plain one: its MACs are counted as such)."""
    engine = open_engine(engine_name, MODEL, threads)
    x = _input(request, input_name)
    fab = MODEL.variants[factor].fab
    row = f"AdaBM INT8 variant {factor:+d} (FAB {fab:.2f}){engine_row(engine_name)}"
    record(benchmark, lambda: engine.run(factor, x), row=row, threads=threads,
           pixels=x.shape[0] * x.shape[2] * x.shape[3], macs_per_pixel=macs[engine_name == "onnxruntime"],
           quick=quick, input_name=input_name, accuracy=lambda: _accuracy(row, lambda: set14_psnr(
               onnx_runner(lambda b: engine.run(factor, b)), set14_root())))


@pytest.mark.parametrize("side", [100, 196])
@pytest.mark.parametrize("engine_name", ENGINES)
def test_window_size(macs, benchmark, engine_name, side, quick):
    """The window size per engine, in its own layout on all cores: a cell's window (96 + 2 x 2 overlap) against
    one four times its area. GMAC/s in the report compares them per pixel."""
    sr = SuperResolver(threads=os.cpu_count() or 1, engine=engine_name)
    side = 36 if quick else side
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, side, side)).astype(np.float32)
    engine = sr.upscaler.engine
    record(benchmark, lambda: engine.run(0, x), row=f"AdaBM INT8 variant +0, one window{engine_row(engine_name)}",
           threads=os.cpu_count() or 1, pixels=side * side, macs_per_pixel=macs[engine_name == "onnxruntime"],
           quick=quick, input_name=f"window {side}x{side}", accuracy=None)


@pytest.mark.parametrize("layout", ["calls", "threads"])
@pytest.mark.parametrize("engine_name", ENGINES)
def test_engine_layout(macs, benchmark, frame, engine_name, layout, quick):
    """Calls at once against threads per call, per engine, on all cores: the routed frame with one
    single-threaded call per core, or one call at a time on every core. Each engine's layout() is the winner."""
    cores = os.cpu_count() or 1
    calls, threads = (cores, 1) if layout == "calls" else (1, cores)
    up = Upscaler(open_engine(engine_name, MODEL, threads), MODEL.patch_size, DEFAULT_OVERLAP, workers=calls)
    rgb = frame.astype(np.float32)
    record(benchmark, lambda: up.upscale_rgb(rgb, np.uint8), threads=cores, pixels=rgb.shape[0] * rgb.shape[1],
           row=f"AdaBM runtime.upscale, routed, {calls} calls x {threads} threads{engine_row(engine_name)}",
           macs_per_pixel=macs[engine_name == "onnxruntime"], quick=quick, input_name="frame (layout)",
           accuracy=None)


def cli_upscaler(threads: int, cheap: bool = True) -> Upscaler:
    """The upscaler as runtime.upscale builds it on ONNX Runtime: single-threaded sessions, `threads` calls at
    once."""
    return Upscaler(OnnxRuntimeEngine(MODEL, 1), MODEL.patch_size, DEFAULT_OVERLAP, workers=threads, cheap=cheap)


def bare_variant(frame: np.ndarray, threads: int):
    """The yardstick of runtime.upscale's overhead: variant 0 on the whole frame, `threads` intra-op threads."""
    engine, x = OnnxRuntimeEngine(MODEL, threads), as_batch(frame)
    return lambda: engine.run(0, x)


@pytest.mark.parametrize("cheap", [True, False])
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("engine_name", [*ENGINES, "auto"])
def test_adabm_upscale_routed(macs, benchmark, frame, threads, cheap, engine_name, quick):
    """runtime.upscale's work on one frame: routing, tiling with overlap, per-variant batches, stitching; with
    the cheap rung (3 of the frame's 15 cells are sky) and without it (the overhead of tiling alone); on each
    engine in its own layout, and on auto (the engine the runtime picks here, after a fresh probe)."""
    sr = SuperResolver(threads=threads, cheap_rung=cheap, engine=engine_name)
    up = sr.upscaler
    rgb = frame.astype(np.float32)
    chosen = f" (chose {ENGINE_NAMES[sr.engine]})" if engine_name == "auto" else ""
    row = ("AdaBM runtime.upscale, routed" + ("" if cheap else ", no cheap rung")
           + (", auto" + chosen if engine_name == "auto" else engine_row(engine_name)))
    record(benchmark, lambda: up.upscale_rgb(rgb, np.uint8), row=row, threads=threads,
           pixels=rgb.shape[0] * rgb.shape[1], macs_per_pixel=macs[sr.engine == "onnxruntime"], quick=quick,
           input_name="frame", bare=bare_variant(frame, threads),
           accuracy=lambda: _accuracy(row, lambda: set14_psnr(
               lambda lr: up.upscale_rgb(lr.astype(np.float32), np.uint8)[0].astype(np.float32), set14_root())))


@pytest.mark.parametrize("threads", THREADS)
def test_adabm_upscale_with_png_io(macs, benchmark, frame, threads, quick):
    """The CLI's work on one PNG: read it, compute, and write the 1080p PNG as its bands are finished."""
    from runtime import images
    from runtime.jobs import Job
    from runtime.files import process
    images.save(WORK / "frame.png", frame)
    jobs = [Job(WORK / "frame.png", WORK / "frame_x4.png")]
    up = cli_upscaler(threads)

    def run():
        records, failures = process(jobs, up)
        assert len(records) == 1 and not failures
    record(benchmark, run, row="AdaBM runtime.upscale, routed, PNG in/out", threads=threads,
           pixels=frame.shape[0] * frame.shape[1], macs_per_pixel=macs[True], quick=quick, input_name="frame",
           accuracy=None, bare=bare_variant(frame, threads))


@pytest.mark.parametrize("threads", THREADS)
def test_adabm_upscale_folder_of_frames(macs, benchmark, frame, threads, quick):
    """The CLI's loop over a folder of PNG frames: each frame is encoded and written while the next one
    computes. Per-frame time (the report divides by the frame count)."""
    from runtime import images
    from runtime.jobs import Job
    from runtime.files import process
    frames = 2 if quick else 4
    jobs = []
    for i in range(frames):
        images.save(WORK / f"seq_{i}.png", frame)
        jobs.append(Job(WORK / f"seq_{i}.png", WORK / f"seq_{i}_x4.png"))
    up = cli_upscaler(threads)

    def run():
        records, failures = process(jobs, up)
        assert len(records) == frames and not failures
    record(benchmark, run, row=f"AdaBM runtime.upscale, routed, PNG in/out, per frame of {frames}",
           threads=threads, pixels=frame.shape[0] * frame.shape[1], macs_per_pixel=macs[True], quick=quick,
           input_name="frame", accuracy=None, frames=frames, bare=bare_variant(frame, threads))


def test_peak_memory_grows_with_the_output_not_with_floats(benchmark, quick):
    """Peak RSS (Linux VmHWM) of the CLI, default settings: a 16x16 input (start-up: interpreter, libraries, a
    session), one row of windows (one per core: ONNX Runtime's working set at full concurrency), then up to
    an 8K output. What a larger image adds beyond that row should stay far below its float output."""
    from adabm_deploy.images import read_rgb
    from runtime import images
    img = read_rgb(shared("data", "benchmark", "B100", "HR", "img_003.png"))
    img = img if img.shape[1] >= img.shape[0] else img.transpose(1, 0, 2)
    windows = (MODEL.patch_size, MODEL.patch_size * (os.cpu_count() or 1))
    sizes = [(16, 16), windows] + ([(135, 240)] if quick else [(270, 480), (540, 960), (1080, 1920)])
    # VmHWM, the high-water mark of this process's own memory (ru_maxrss would carry the parent's across exec)
    hwm = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    probe = ("import runpy, sys; sys.argv = ['upscale', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('runtime.upscale', run_name='__main__')\n"
             "except SystemExit:\n    pass\n" + hwm)
    peaks = {}

    def peak(h: int, w: int) -> float:
        src = WORK / f"mem_{w}x{h}.png"
        images.save(src, np.ascontiguousarray(np.tile(img, (4, 4, 1))[:h, :w]))
        proc = subprocess.run([sys.executable, "-c", probe, str(src), "-o", str(WORK / f"mem_{w}x{h}_x4.png")],
                              capture_output=True, text=True, cwd=REPO, check=True)
        return int(proc.stdout.strip().splitlines()[-1]) / 1024

    def run():
        for h, w in sizes:
            peaks[(h, w)] = peak(h, w)
    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    s = MODEL.scale
    benchmark.extra_info.update(row="peak RSS, CLI", threads=0, memory=[
        {"input": f"{w}x{h}", "output": f"{w * s}x{h * s}", "peak_rss_mib": peaks[(h, w)],
         "uint8_output_mib": h * s * w * s * 3 / 2 ** 20, "float_output_mib": h * s * w * s * 3 * 4 / 2 ** 20}
        for h, w in sizes])


# The published sizes: RDN config B (AdaBM's rdn_baseline), SRResNet 16 x 64, CARN, CARN-M, realesr-general-x4v3.
ARCHITECTURES = {"RDN": ("rdn", dict(g0=64, n_blocks=16, n_convs=8, growth=64)),
                 "SRResNet": ("srresnet", dict(n_blocks=16, n_feats=64)), "CARN": ("carn", dict(n_feats=64)),
                 "CARN-M": ("carn_m", dict(n_feats=64)),
                 "SRVGGNetCompact": ("srvgg", dict(n_feats=64, n_convs=32))}


@pytest.fixture(scope="session")
def architecture_graphs(quick) -> dict[str, tuple[Path, Path, int, int]]:
    """name -> (plain FP32 graph, AdaBM INT8 variant 0, plain MACs, exported MACs per LR pixel) for random-weight
    models of each architecture at its published size (tiny ones with --quick); ranges from FP statistics."""
    from adabm_deploy.models import load_network
    from adabm_deploy.quant import QuantGraph
    from benchmarks import zoo
    from export.qdq import build_model
    out = {}
    for name, (kind, size) in ARCHITECTURES.items():
        net = load_network(zoo.save(kind, WORK, 4, **({} if quick else size)))
        qm = zoo.observed(QuantGraph(net.graph, 8, 8, full_quant=True))
        paths = WORK / f"{kind}_fp32.onnx", WORK / f"{kind}_int8.onnx"
        onnx.save(build_model(qm, None, rewrite=False), paths[0])
        onnx.save(build_model(qm, 0), paths[1])
        out[name] = (*paths, macs_per_lr_pixel(net.graph, False), macs_per_lr_pixel(net.graph, True))
    return out


@pytest.mark.parametrize("graph", ["fp32", "int8"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("threads", THREADS)
def test_architecture(benchmark, architecture_graphs, patches, arch, graph, threads, quick):
    """Every architecture beside EDSR: ORT FP32 (plain graph) against its AdaBM INT8 variant (W8A8 base bits,
    the bundled model's setting) on one 96x96 LR patch. Random weights: latency only, no accuracy column."""
    fp32, int8, plain_macs, int8_macs = architecture_graphs[arch]
    sess = ort_session(fp32 if graph == "fp32" else int8, threads)
    x = patches[:1]
    row = f"{arch} ORT FP32" if graph == "fp32" else f"{arch} AdaBM INT8 variant +0"
    record(benchmark, lambda: sess.run(None, {"lr": x}), row=row, threads=threads,
           pixels=x.shape[2] * x.shape[3], macs_per_pixel=plain_macs if graph == "fp32" else int8_macs,
           quick=quick, input_name="patch", accuracy=None)


@pytest.fixture(scope="session")
def clip(frame, quick) -> Path:
    """A 480x270 clip (12 frames of the benchmark frame panning; 3 in quick mode), H.264 at 24 frames/s."""
    av = pytest.importorskip("av", reason="the video row needs the video extra")
    path = WORK / "clip.mp4"
    h, w = frame.shape[:2]
    big = np.concatenate([frame, frame[:, ::-1]], axis=1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(3 if quick else 12):
            shifted = np.ascontiguousarray(big[:, 8 * i: 8 * i + w])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("threads", THREADS)
def test_video_frames(benchmark, clip, macs, threads, quick):
    """runtime.upscale on a video: decode, upscale, encode (H.264) and mux, frame by frame; per frame."""
    import av

    from runtime.api import SuperResolver
    with av.open(str(clip)) as c:
        frames = c.streams.video[0].frames
    sr = SuperResolver(threads=threads)
    target = WORK / "clip_x4.mp4"
    record(benchmark, lambda: sr.upscale_file(clip, target), row="runtime.upscale video, per frame (H.264)",
           threads=threads, pixels=int(clip_size(clip)), macs_per_pixel=macs[True], quick=quick, input_name="clip",
           accuracy=None, frames=frames)
    sr.close()


def clip_size(path: Path) -> int:
    import av
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        return ctx.width * ctx.height


@pytest.mark.parametrize("workers,threads", [(1, 0), (1, 1), (2, 1)])
def test_batch_throughput_per_worker(benchmark, frame, workers, threads, quick):
    """The distributed batch job on a local cluster of `workers` workers of `threads` cores each (0: all) against
    the CLI's single process on as many cores, on the same images (16 copies of the frame; 2 in quick mode), from
    running workers with their models loaded and warmed (the cluster's start-up is reported apart), the CLI's
    model warmed the same way. One worker on all cores is the default; one worker against the CLI at one thread
    is the job's own overhead per worker; two single-core workers, the layout of one process per core."""
    pytest.importorskip("dask.distributed", reason="the batch row needs the batch extra")
    from runtime import images
    from runtime.api import SuperResolver
    folder = WORK / "batch_in"
    folder.mkdir(exist_ok=True)
    n = 2 if quick else 16
    for i in range(n):
        images.save(folder / f"f{i}.png", frame)
    runs = {}

    def run():
        with SuperResolver(threads=workers * threads) as sr:
            sr.warm_up()
            start = time.perf_counter()
            sr.upscale_files([folder], WORK / "batch_cli", overwrite=True)
            cli = time.perf_counter() - start
        report = WORK / "batch.json"
        subprocess.run([sys.executable, "-m", "runtime.batch", str(folder), "-o", str(WORK / "batch_out"),
                        "--overwrite", "--workers", str(workers), "--threads", str(threads), "--report", str(report)],
                       check=True,
                       capture_output=True, cwd=REPO)
        data = __import__("json").loads(report.read_text())
        runs.update(images=n, cli_images_per_s=n / cli, per_worker_images_per_s=n / data["seconds"] / data["workers"],
                    job_images_per_s=n / data["seconds"], workers=data["workers"], startup_s=data["startup_seconds"],
                    threads=threads or os.cpu_count(), engines=sorted({r["engine"] for r in data["images"]}))
    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(row="batch job throughput", threads=workers * (threads or os.cpu_count()), batch=runs,
                                ratio=runs["job_images_per_s"] / runs["cli_images_per_s"])
