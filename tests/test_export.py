"""The exporter: graph rules, fidelity to the PyTorch simulation on fresh exports of every architecture, the
integer range of every activation, the model-directory contract, bad input."""
import itertools
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import REPO, shared_path

from adabm_deploy import artifact
from adabm_deploy.calibrate import Settings, calibrate
from adabm_deploy.data import open_benchmark
from adabm_deploy.images import read_rgb
from adabm_deploy.metrics import psnr, to_uint8
from adabm_deploy.models import load_network, sha256_file
from adabm_deploy.network.graph import run as run_graph
from adabm_deploy.quant import QuantGraph
from benchmarks import zoo
from export import model_dir
from export.qdq import build_model
from runtime import manifest

BUNDLED = REPO / "runtime" / "models" / "edsr_baseline_x4"
TINY = dict(n_images=8, patch=32, batch=2, epochs=2, iters_per_epoch=4, stats_batch=4)
ARCHS = ["edsr", "rdn", "srresnet", "carn", "carn_m", "srvgg"]
# Worst mutual Y-PSNR (ORT vs simulation, over the three variants) of a correct export, random weights: a full
# W4A4 export is exact or within a rounding flip (61.5-inf dB measured); dropping the b-bit Clip gives
# 41-57 dB. Body-only keeps outer convs in float, whose last-bit differences between PyTorch and ORT flip a few
# codes at the first quantization point: RDN (two float convs before it) bottoms out at 48.6 dB there.
FIDELITY_DB = {"full": 60.0, "body": 45.0}


def session(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, optimized_to=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    if optimized_to:
        so.optimized_model_filepath = str(optimized_to)
    source = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def run_image(sess, lr: np.ndarray) -> np.ndarray:
    return sess.run(None, {"lr": lr.transpose(2, 0, 1)[None].astype(np.float32)})[0][0].transpose(1, 2, 0)


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


def fused_ops(model, tmp_path) -> list[str]:
    session(model, optimized_to=tmp_path / "opt.onnx")
    return [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]


def with_factors(qm: QuantGraph) -> QuantGraph:
    """Thresholds at 10 / 40 and layer factors cycling -1, 0, +1, so the three variants differ; each variant
    with its own colour-cast correction, so a graph that drops it is a few levels off."""
    with torch.no_grad():
        qm.image2bit.lower.fill_(10.0)
        qm.image2bit.upper.fill_(40.0)
        qm.correction.copy_(torch.tensor([[1.5, -2.0, 0.75], [-0.5, 0.25, 1.0], [2.5, 0.0, -1.5]]))
        qm.layer2bit.m.copy_(torch.tensor([(-1.0, 0.0, 1.0)[i % 3] for i in range(qm.layer2bit.m.numel())]))
    return qm


COMPLEXITY_FOR = {-1: 5.0, 0: 25.0, 1: 50.0}  # on each side of the thresholds above


@pytest.fixture(scope="module")
def zoo_networks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {kind: load_network(zoo.save(kind, folder, 4)) for kind in ARCHS}


@pytest.fixture(scope="module")
def tiny_artifact(x2_checkpoint, tmp_path_factory):
    """A short real AdaBM W4A4 full-quantization calibration of the x2 model."""
    t91 = shared_path("data", "train", "T91")
    _, payload = calibrate(x2_checkpoint, t91, Settings(full_quant=True, **TINY), progress=False)
    path = tmp_path_factory.mktemp("calib") / "x2_w4a4.json"
    artifact.save(path, payload)
    return path


@pytest.fixture(scope="module")
def bundled_sim(x4_checkpoint):
    """The bundled model's calibration rebuilt as the PyTorch simulation it was exported from."""
    m = manifest.load(BUNDLED)
    return m, artifact.load(BUNDLED / m.raw["calibration"]["file"], load_network(x4_checkpoint))


def test_qdq_graphs_check_fuse_to_integer_convs_and_fp32_graph_matches_torch(x2_checkpoint, tmp_path):
    network = load_network(x2_checkpoint)
    qm = zoo.observed(QuantGraph(network.graph, 4, 4, full_quant=True))
    x = torch.rand(1, 3, 20, 24) * 255
    for rewrite, factor in itertools.product((True, False), (None, -1, 0, 1)):
        model = build_model(qm, factor, rewrite=rewrite)
        onnx.checker.check_model(model, full_check=True)
        y = session(model).run(None, {"lr": x.numpy()})[0]
        conv_ops = [op for op in fused_ops(model, tmp_path) if "Conv" in op]
        if factor is None:
            with torch.no_grad():
                assert np.abs(y - run_graph(network.graph, x).numpy()).max() < 0.05  # the rewrites are exact
        else:
            assert conv_ops and all(op == "QLinearConv" for op in conv_ops), conv_ops


@pytest.mark.parametrize("kind", ARCHS)
def test_fresh_exports_of_every_architecture_match_the_simulation(kind, zoo_networks):
    """ORT (all optimizations) vs the simulation forced to each variant's image factor, on fresh exports of
    random-weight models: W4A4 and W8A8, full and body-only, per-tensor and per-channel weights; and the FP32
    graph vs the captured network."""
    network = zoo_networks[kind]
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, 20, 24)).astype(np.float32))
    fp32 = session(build_model(QuantGraph(network.graph, 8, 8, True), None)).run(None, {"lr": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(fp32 - run_graph(network.graph, x).numpy()).max() < 0.05
    worst = {}
    for (w, a), full, per_channel in itertools.product([(4, 4), (8, 8)], [True, False], [False, True]):
        qm = with_factors(zoo.observed(QuantGraph(network.graph, w, a, full, per_channel)))
        for factor in (-1, 0, 1):
            y = session(build_model(qm, factor)).run(None, {"lr": x.numpy()})[0]
            with torch.no_grad():
                sim = qm(x, torch.tensor([COMPLEXITY_FOR[factor]]))
            mutual = psnr(to_uint8(y[0].transpose(1, 2, 0)), to_uint8(sim[0].permute(1, 2, 0).numpy()))
            key = (f"W{w}A{a}", "full" if full else "body", "per-channel" if per_channel else "per-tensor")
            worst[key] = min(worst.get(key, np.inf), mutual)
    failed = {k: round(v, 1) for k, v in worst.items() if v < FIDELITY_DB[k[1]]}
    assert not failed, failed


def expected_bits(data: dict, point: str, factor: int) -> int:
    """A point's bit-width in variant `factor`, read from the calibration artifact alone."""
    bits = data["activations"][point]["bits"]
    if bits == "adaptive":
        return data["variant_bits"][str(factor)][data["adaptive_layers"].index(point.rsplit(".in", 1)[0])]
    return data["a_bits"] if bits == "fixed" else 8


def integer_ranges(model: onnx.ModelProto) -> dict[str, int]:
    """Per activation point: the largest uint8 code its QuantizeLinear can pass on (the Clip after it, or 255)."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    after = {i: n for n in model.graph.node for i in n.input}
    ranges = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[1] not in ("",) and ".w_" not in node.input[0]:
            point = node.name.rsplit(".q_", 1)[0]
            nxt = after.get(node.output[0])
            ranges[point] = int(consts[nxt.input[2]]) if nxt is not None and nxt.op_type == "Clip" else 255
    return ranges


@pytest.mark.parametrize("kind", ["edsr", "rdn"])
def test_every_activation_range_in_each_graph_is_the_artifacts_bits_for_its_variant(kind, zoo_networks, tmp_path):
    network = zoo_networks[kind]
    for full in (True, False):
        qm = with_factors(zoo.observed(QuantGraph(network.graph, 4, 4, full)))
        data = artifact.to_dict(qm, network, {"method": "adabm"}, {}, {"kind": "bicubic", "threshold": None})
        m = model_dir.write(tmp_path / f"{kind}_{full}", qm, data, 19)
        assert len({tuple(v.layer_bits) for v in m.variants.values()}) == 3  # the variants differ
        for factor, variant in m.variants.items():
            ranges = integer_ranges(onnx.load(variant.graphs["onnxruntime"]))
            assert set(ranges) == set(data["activations"])
            wrong = {p: (r, 2 ** expected_bits(data, p, factor) - 1) for p, r in ranges.items()
                     if r != 2 ** expected_bits(data, p, factor) - 1}
            assert not wrong, (factor, wrong)


def test_bias_codes_are_the_bias_over_the_accumulator_scale_rounded_half_to_even():
    """The int32 bias QLinearConv adds, computed here independently with numpy (float32, as the graph's scales
    are): half-way cases go to even, as QuantizeLinear rounds."""
    from adabm_deploy.quant.arith import bias_codes
    bias = np.array([0.25, -0.25, 0.75, 1.25, -2.5, 0.0, 3.0, -7.5, 1.3, -2.6], np.float32)
    acc_scale = np.array([[0.5, 0.5, 0.5, 0.5, 1.0, 0.3, 2.0, 1.0, 0.1, 0.1]], np.float32)
    expected = np.round(bias / acc_scale)
    assert expected.tolist()[0][:8] == [0.0, -0.0, 2.0, 2.0, -2.0, 0.0, 2.0, -8.0]
    assert bias_codes(torch.from_numpy(bias), torch.from_numpy(acc_scale)).numpy().tolist() == expected.tolist()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_pixel_shuffles_compute_what_pytorch_does(scale, tmp_path):
    """The INT8 graphs shuffle pixels on uint8, channels-last, with the conv's output channels reordered (and
    3 colours padded to 4 per sub-pixel position): x2, x3 and the two-stage x4 upsampler against PyTorch's
    PixelShuffle in the simulation. A wrong channel order scrambles pixels and misses by far more than 1 LSB."""
    network = load_network(zoo.save("edsr", tmp_path, scale))
    qm = zoo.observed(QuantGraph(network.graph, 8, 8, full_quant=True))
    x = torch.rand(1, 3, 11, 13) * 255
    model = build_model(qm, 0)
    y = session(model).run(None, {"lr": x.numpy()})[0]
    assert "DepthToSpace" not in fused_ops(model, tmp_path)
    with torch.no_grad():
        sim = qm(x, torch.tensor([sum(qm.image2bit.thresholds()) / 2])).numpy()
    lsb = qm.quantizer["tail.1.out"].qparams(8)[0]
    assert y.shape == sim.shape == (1, 3, 11 * scale, 13 * scale)
    assert np.abs(y - sim).max() <= 1.01 * lsb and np.mean(np.abs(y - sim) > 1e-3) < 0.01


def test_bundled_model_is_valid_and_every_variant_runs_integer_convs(x4_checkpoint, tmp_path):
    m = manifest.load(BUNDLED)  # checks format, complexity definition and every file's sha256
    raw = m.raw
    assert m.scale == 4 and m.patch_size == 96 and m.thresholds[0] < m.thresholds[1]
    assert raw["checkpoint"]["sha256"] == sha256_file(x4_checkpoint)
    assert raw["calibration"]["method"] == "adabm" and raw["calibration"]["full_quant"]
    assert raw["calibration"]["sha256"] == sha256_file(BUNDLED / raw["calibration"]["file"])
    sizes = sum(p.stat().st_size for p in BUNDLED.iterdir())
    assert sizes < 16e6, "the bundled model directory must stay small enough for the repository"
    fabs = [m.variants[f].fab for f in manifest.FACTORS]
    assert fabs == sorted(fabs) and all(2 <= b <= 8 for f in manifest.FACTORS for b in m.variants[f].layer_bits)
    for f, v in m.variants.items():
        onnx.checker.check_model(onnx.load(v.graphs["onnxruntime"]), full_check=True)
        ops = fused_ops(v.graphs["onnxruntime"], tmp_path)
        assert ops.count("QLinearConv") == 2 * 16 + 2 + 3 and "Conv" not in ops, sorted(set(ops))
        assert ops.count("QLinearAdd") == 16 + 1 + 16  # residual adds, skip, requantizations


def test_bundled_model_directory_is_what_the_exporter_writes_from_its_calibration(bundled_sim, tmp_path):
    m, qm = bundled_sim
    data = json.loads((BUNDLED / "calibration.json").read_text())
    again = model_dir.write(tmp_path / "again", qm, data, m.raw["opset"])
    for name in ["fp32.onnx", *(g.name for v in m.variants.values() for g in v.graphs.values()), "calibration.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (BUNDLED / name).read_bytes(), name
    assert {k: v for k, v in again.raw.items() if k != "producer"} == \
        {k: v for k, v in m.raw.items() if k != "producer"}


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_onnx_runtime_matches_the_pytorch_simulation(bundled_sim, benchmark_root, set_name):
    """Each variant on ORT (all optimizations) vs the simulated model forced to the same image-wise factor."""
    m, qm = bundled_sim
    lo, hi = m.thresholds
    complexity_for = {-1: lo - 1.0, 0: (lo + hi) / 2, 1: hi + 1.0}
    bench = open_benchmark(benchmark_root / set_name, m.scale)
    for factor, variant in m.variants.items():
        sess = session(variant.graphs["onnxruntime"])
        mutual, hr_ort, hr_sim = [], [], []
        for pair in bench.pairs:
            lr, hr = bench.load(pair)
            ours = to_uint8(run_image(sess, lr))
            with torch.no_grad():
                sim = qm(torch.from_numpy(lr.transpose(2, 0, 1).copy()).float()[None],
                         torch.tensor([complexity_for[factor]]))
            sim = to_uint8(sim[0].permute(1, 2, 0).numpy())
            mutual.append(psnr(ours, sim))
            hr_ort.append(psnr(ours, hr, crop=m.scale))
            hr_sim.append(psnr(sim, hr, crop=m.scale))
        assert min(mutual) >= 45.0, (factor, mutual)
        assert abs(np.mean(hr_ort) - np.mean(hr_sim)) <= 0.05, (factor, np.mean(hr_ort), np.mean(hr_sim))


def test_reference_evaluator_agrees_with_onnx_runtime_op_by_op(benchmark_root, tmp_path):
    """A second consumer of the graph: onnx's reference evaluator on a small input.

    Op by op they agree within 1 LSB: every integer tensor of the graph, recomputed by the reference
    evaluator from ONNX Runtime's own integer inputs, matches what ORT's fused kernels (QLinearConv,
    QLinearAdd) wrote. Over the whole network they cannot agree pixel for pixel: a value on a rounding
    boundary flips by 1 LSB and 37 further requantizations spread the flip (ORT's own op-by-op and fused
    modes differ the same way); that spread is bounded here (>= 45 dB, most pixels within 1 LSB) and on
    whole images above."""
    from onnx.reference import ReferenceEvaluator

    from export.probe import FED, exposing, fed_externally, integer_tensors, op_differences
    lr = read_rgb(benchmark_root / "Set5" / "LR_bicubic" / "X4" / "birdx4.png")[20:36, 20:36]
    x = lr.transpose(2, 0, 1)[None].astype(np.float32)
    for variant in manifest.load(BUNDLED).variants.values():
        model = onnx.load(variant.graphs["onnxruntime"])
        names = integer_tensors(model)
        assert len(names) == 71  # input, head, 4 per block, body end, skip, 3 tail convs
        # exposing the integer tensors keeps ORT's fusion: these are the values its integer kernels wrote
        onnx.save(exposing(model, names), tmp_path / "probe.onnx")
        ort_run = session(tmp_path / "probe.onnx", optimized_to=tmp_path / "probe_opt.onnx")
        fused = [n.op_type for n in onnx.load(tmp_path / "probe_opt.onnx").graph.node]
        assert fused.count("QLinearConv") == 37 and "Conv" not in fused
        ort_vals = dict(zip((o.name for o in ort_run.get_outputs()), ort_run.run(None, {"lr": x})))
        fed = fed_externally(model, names)
        ref_vals = dict(zip((o.name for o in fed.graph.output), ReferenceEvaluator(fed).run(
            None, {"lr": x, **{n + FED: ort_vals[n] for n in names}})))
        assert max(op_differences(ref_vals, ort_vals, names).values()) <= 1, variant.factor
        np.testing.assert_allclose(ref_vals["sr"], ort_vals["sr"], atol=1e-3)
        whole_ref = to_uint8(ReferenceEvaluator(model).run(None, {"lr": x})[0][0].transpose(1, 2, 0))
        whole_ort = to_uint8(run_image(session(variant.graphs["onnxruntime"]), lr))
        assert psnr(whole_ref, whole_ort) >= 45.0, (variant.factor, psnr(whole_ref, whole_ort))
        assert (np.abs(whole_ref.astype(int) - whole_ort) <= 1).mean() >= 0.75, variant.factor


def test_probe_cli_compares_two_runs_op_by_op(benchmark_root, tmp_path):
    """The cross-machine check (benchmarks/arm_qemu.sh): dump here, recompute each op from that dump, compare;
    a corrupted tensor is caught."""
    from export.probe import main as probe
    lr = benchmark_root / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    model = manifest.load(BUNDLED).variants[0].graphs["onnxruntime"]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert probe(["dump", str(model), str(lr), str(a)]) == 0
    assert probe(["dump", str(model), str(lr), str(b), "--from", str(a)]) == 0
    assert probe(["compare", str(a), str(b)]) == 0
    bad = dict(np.load(b))
    name = next(n for n, v in bad.items() if v.dtype == np.uint8)
    bad[name] = bad[name] + np.uint8(3)
    np.savez(tmp_path / "bad.npz", **bad)
    assert probe(["compare", str(a), str(tmp_path / "bad.npz")]) == 1


def test_export_cli_writes_a_complete_model_directory(tiny_artifact, x2_checkpoint, tmp_path):
    out = tmp_path / "x2_model"
    proc = run_export(x2_checkpoint, "--qconfig", tiny_artifact, "-o", out)
    assert proc.returncode == 0, proc.stderr
    m = manifest.load(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "calibration.json", "fp32.onnx", "int8_f-1.onnx", "int8_f+0.onnx", "int8_f+1.onnx",
         "int8_f-1.openvino.onnx", "int8_f+0.openvino.onnx", "int8_f+1.openvino.onnx"])
    assert list(m.engines) == ["onnxruntime", "openvino"]
    data = json.loads(tiny_artifact.read_text())
    assert m.scale == 2 and list(m.thresholds) == pytest.approx(data["i2b_thresholds"])
    for f, v in m.variants.items():
        assert v.layer_bits == data["variant_bits"][str(f)]
    assert m.raw["calibration"]["sha256"] == sha256_file(out / "calibration.json")
    assert m.raw["opset"] == 19 and onnx.load(m.fp32).opset_import[0].version == 19
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"
    # an existing directory is kept unless --force; with --force it is replaced as a whole
    proc = run_export(x2_checkpoint, "--qconfig", tiny_artifact, "-o", out, "--opset", "13")
    assert proc.returncode == 2 and "already exists" in proc.stderr and manifest.load(out).raw["opset"] == 19
    proc = run_export(x2_checkpoint, "--qconfig", tiny_artifact, "-o", out, "--opset", "13", "--force")
    assert proc.returncode == 0, proc.stderr
    assert manifest.load(out).raw["opset"] == 13


def test_export_without_qconfig_runs_the_default_calibration(x2_checkpoint, tmp_path, monkeypatch):
    import export.__main__ as cli
    t91 = shared_path("data", "train", "T91")
    monkeypatch.setitem(cli.PRESETS, "cpu", TINY)  # the default path, shortened for a test
    out = tmp_path / "default"
    assert cli.main([str(x2_checkpoint), "--calib-dir", str(t91), "-o", str(out)]) == 0
    m = manifest.load(out)
    assert m.raw["calibration"]["method"] == "adabm" and m.raw["calibration"]["full_quant"]
    assert m.raw["calibration"]["w_bits"] == cli.DEFAULT_CALIBRATION["w_bits"]


def test_export_bad_inputs_exit_2_and_leave_no_directory(tiny_artifact, x2_checkpoint, x4_checkpoint, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases = [
        ([tmp_path / "none.pt", "--qconfig", tiny_artifact], "checkpoint not found"),
        ([foreign, "--qconfig", tiny_artifact], "foreign.pt: not a checkpoint of a supported architecture"),
        ([x4_checkpoint, "--qconfig", tiny_artifact], "calibrated for another checkpoint"),
        ([x2_checkpoint, "--qconfig", tmp_path / "none.json"], "calibration artifact not found"),
        ([x2_checkpoint, "--calib-dir", tmp_path / "no_images_here"], "calibration folder not found"),
        ([x2_checkpoint, "--qconfig", tiny_artifact, "--opset", "11"], "supported opsets"),
    ]
    for args, message in cases:
        out = tmp_path / "model"
        proc = run_export(*args, "-o", out)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists()
    proc = run_export(x2_checkpoint, "--qconfig", tiny_artifact, "-o", blocker / "model")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "foreign.pt"]


def test_failure_while_writing_leaves_no_partial_directory(tiny_artifact, x2_checkpoint, tmp_path, monkeypatch):
    from runtime.errors import UserError
    qm = artifact.load(tiny_artifact, load_network(x2_checkpoint))
    data = artifact.read(tiny_artifact)
    out = tmp_path / "model"
    model_dir.write(out, qm, data, 19)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*_):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(model_dir.onnx, "save", disk_full)
    with pytest.raises(UserError, match="No space left"):
        model_dir.write(out, qm, data, 17, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("kind,scale", [("edsr", 3), ("edsr_adabm", 2), ("rdn", 4), ("srresnet", 4), ("carn_multi", 3),
                                        ("srvgg", 4)])
def test_every_architecture_calibrates_exports_and_upscales_with_the_unchanged_runtime(kind, scale, tmp_path):
    """A short real AdaBM calibration (full and body-only), the model directory, and runtime.upscale --model on
    it in a fresh interpreter without torch."""
    import cv2
    t91 = shared_path("data", "train", "T91")
    checkpoint = zoo.save(kind, tmp_path, scale)
    lr = tmp_path / "lr.png"
    cv2.imwrite(str(lr), cv2.imread(str(t91 / "tt27.png"))[:40, :52])
    for full in (True, False):
        qm, payload = calibrate(checkpoint, t91, Settings(full_quant=full, **TINY), progress=False,
                                warn=lambda m: None, scale=scale)
        assert payload["checkpoint"]["config"]["scale"] == scale and payload["adaptive_layers"]
        out = tmp_path / f"model_{full}"
        model_dir.write(out, qm, payload, 19)
        code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; import runpy; "
                "runpy.run_module('runtime.upscale', run_name='__main__')")
        sr = tmp_path / f"sr_{full}.png"
        proc = subprocess.run([sys.executable, "-c", code, str(lr), "--model", str(out), "-o", str(sr)],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert cv2.imread(str(sr)).shape == (40 * scale, 52 * scale, 3)


def test_the_official_carn_m_calibrates_exports_and_upscales_on_every_engine(tmp_path):
    """Grouped convs and shared blocks end to end on the released carn_m.pth (x2 of its three scales): a short
    real W8A8 calibration, the model directory in both engines' forms, and runtime.upscale on each engine,
    within 40 dB of the FP32 network's own output."""
    import cv2
    checkpoint = shared_path("weights", "carn_m.pth")
    short = {**TINY, "n_images": 4, "epochs": 1}  # 14 s against TINY's 47 s on 2 cores
    qm, payload = calibrate(checkpoint, shared_path("data", "train", "T91"), Settings(full_quant=True, w_bits=8,
                            a_bits=8, **short), progress=False, warn=lambda m: None, scale=2)
    assert payload["checkpoint"]["architecture"] == "CARN-M" and "body.b1.b1.body.0@3" in payload["adaptive_layers"]
    m = model_dir.write(tmp_path / "model", qm, payload, 19)
    lr = read_rgb(shared_path("data", "benchmark", "Set14", "LR_bicubic", "X2", "barbarax2.png"))[:96, :128]
    cv2.imwrite(str(tmp_path / "lr.png"), lr[:, :, ::-1])
    with torch.no_grad():
        fp32 = to_uint8(run_graph(load_network(checkpoint, 2).graph, torch.from_numpy(lr.transpose(2, 0, 1).copy())
                                  [None].float())[0].permute(1, 2, 0).numpy())
    engines = ["onnxruntime"] + (["openvino"] if "openvino" in m.raw["engines"] else [])
    for engine in engines:
        proc = subprocess.run([sys.executable, "-m", "runtime.upscale", str(tmp_path / "lr.png"), "--model",
                               str(tmp_path / "model"), "--engine", engine, "-o", str(tmp_path / f"{engine}.png")],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        close = psnr(read_rgb(tmp_path / f"{engine}.png"), fp32)
        assert close > 40.0, (engine, close)  # 51.3 dB on ONNX Runtime measured


def test_a_network_the_tool_cannot_quantize_stops_the_export_with_one_line(tmp_path, monkeypatch, capsys):
    """An architecture whose module holds an attention block: its checkpoint loads, the capture refuses it,
    nothing is written."""
    from adabm_deploy import models
    from adabm_deploy.models.architecture import Architecture, Layout
    from export.__main__ import main as export_main
    from runtime.command import run_cli

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Conv2d(8, 24, 1)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=1)
            return x + torch.softmax(q * k, dim=1) * v

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.attn, self.tail = torch.nn.Conv2d(3, 8, 3, padding=1), Attention(), \
                torch.nn.Conv2d(8, 3, 3, padding=1)

        def forward(self, x):
            return self.tail(self.attn(self.head(x)))

    arch = Architecture("AttentionNet", (Layout("test", (r".*",), ("attn.qkv.weight",)),),
                        build=lambda state, source, scale: (Net(), {"scale": 1}), role=lambda n, c: "outer",
                        features=lambda n, m: False)
    monkeypatch.setattr(models, "ARCHITECTURES", (arch,))
    torch.save(Net().state_dict(), tmp_path / "net.pt")
    rc = run_cli(export_main, [str(tmp_path / "net.pt"), "--calib-dir", str(tmp_path), "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot quantize module attn: op chunk" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]


def test_the_artifact_says_which_engine_forms_the_model_directory_gets(tiny_artifact, tmp_path):
    """A calibration serves every engine's plan (engines in the artifact); an artifact restricted to ONNX Runtime
    exports its form alone, and the manifest says so; an unknown engine is refused before anything is written."""
    data = json.loads(tiny_artifact.read_text())
    assert data["engines"] == ["onnxruntime", "openvino"]
    only = tmp_path / "ort_only.json"
    only.write_text(json.dumps({**data, "engines": ["onnxruntime"]}))
    out = tmp_path / "ort_model"
    proc = run_export(shared_path("weights", "edsr8_x2.pt"), "--qconfig", only, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert manifest.load(out).engines == ("onnxruntime",) and not list(out.glob("*.openvino.onnx"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "engines": ["tensorrt"]}))
    proc = run_export(shared_path("weights", "edsr8_x2.pt"), "--qconfig", bad, "-o", tmp_path / "none")
    assert proc.returncode == 2 and "engines ['tensorrt']: expected a list from onnxruntime, openvino" in proc.stderr
    assert not (tmp_path / "none").exists()


def _first(data: dict, key: str, unsigned: bool | None = None) -> str:
    """The first point (activations) or conv (weights) of the artifact; for activations, a signed or an
    unsigned one when asked."""
    names = [n for n, v in data[key].items() if unsigned is None or (v["lower"] == 0.0) == unsigned]
    return names[0]


ARTIFACT_DAMAGE = [  # (edit of the artifact's JSON, what the one-line refusal says)
    (lambda d: d["activations"][_first(d, "activations", False)].update(lower=5.0, upper=-5.0), "lower bound is 5.0"),
    (lambda d: d["activations"][_first(d, "activations", True)].update(upper=0.0), "range [0, 0] is empty"),
    (lambda d: d["activations"][_first(d, "activations")].update(upper=1e30), "upper bound is 1e+30, outside"),
    (lambda d: d["activations"][_first(d, "activations", False)].update(lower=-1e30), "lower bound is -1e+30"),
    (lambda d: d["activations"][_first(d, "activations")].update(upper=float("nan")), "upper bound is nan, not a "
                                                                                      "finite number"),
    (lambda d: d["weights"][_first(d, "weights")]["clip"].__setitem__(0, 0.0), "weight clip is 0.0; it must be positive"),
    (lambda d: d["weights"][_first(d, "weights")]["clip"].__setitem__(0, float("nan")), "weight clip is nan"),
    (lambda d: d["weights"][_first(d, "weights")]["clip"].__setitem__(0, 1e6), "weight clip 1e+06 is over 4x its largest"),
    (lambda d: d.update(a_bits=0), "a_bits is 0: the method defines whole bit-widths 2..8"),
    (lambda d: d.update(w_bits=40), "w_bits is 40"),
    (lambda d: d.update(w_bits=-4), "w_bits is -4"),
    (lambda d: d.update(w_bits=7.9), "w_bits is 7.9"),
    (lambda d: d.update(full_quant="yes"), "full_quant is 'yes', not true or false"),
    (lambda d: d["layer_factor_params"].__setitem__(0, 1e6), "layer factor 0 is 1000000.0, outside [-10, 10]"),
    (lambda d: d["layer_factor_params"].__setitem__(0, float("nan")), "layer factor 0 is nan"),
    (lambda d: d["layer_factor_params"].__setitem__(0, -1.0), "variant_bits"),  # bits no longer follow
    (lambda d: d.update(i2b_thresholds=[float("nan"), 3.0]), "I2B threshold is nan"),
    (lambda d: d.update(i2b_thresholds=[1.0, float("inf")]), "I2B threshold is inf"),
    (lambda d: d.update(i2b_thresholds=[9.0, 3.0]), "I2B thresholds [9, 3]: the lower one is above"),
    (lambda d: d["cheap_rung"].update(threshold=float("nan")), "cheap rung threshold is nan"),
    (lambda d: d["cheap_rung"].update(threshold=-1.0), "cheap rung threshold is -1.0, outside"),
]


@pytest.mark.parametrize("damage,message", ARTIFACT_DAMAGE, ids=[m for _, m in ARTIFACT_DAMAGE])
def test_a_calibration_artifact_outside_physical_bounds_is_refused_before_anything_is_written(
        tiny_artifact, x2_checkpoint, tmp_path, capsys, damage, message):
    """A hand-edited artifact: one line naming the artifact and the value, exit 2, no model directory and no
    staging folder (NaN thresholds were refused only after the export, naming the staging folder)."""
    from export import __main__ as export
    from runtime.command import run_cli
    data = json.loads(tiny_artifact.read_text())
    if message == "variant_bits":
        assert data["layer_factor_params"][0] != -1.0
    damage(data)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    assert run_cli(export.main, [str(x2_checkpoint), "--qconfig", str(edited), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {edited}: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.json"]
