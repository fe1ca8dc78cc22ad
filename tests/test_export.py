"""The exporter: graph design, the model-directory contract, fidelity to the PyTorch simulation, bad input."""
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from adabm_deploy import artifact
from adabm_deploy.calibrate import Settings, calibrate
from adabm_deploy.data import open_benchmark
from adabm_deploy.images import read_rgb
from adabm_deploy.metrics import psnr, to_uint8
from adabm_deploy.models import load_edsr
from adabm_deploy.models.edsr import EDSR, EDSRConfig
from adabm_deploy.quant import QuantEDSR
from conftest import REPO, shared_path
from export.graph import build_model
from runtime import manifest

BUNDLED = REPO / "runtime" / "models" / "edsr_baseline_x4"
TINY = dict(n_images=8, patch=32, batch=2, epochs=2, iters_per_epoch=4, stats_batch=4)


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


def session(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, optimized_to=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 2
    if optimized_to:
        so.optimized_model_filepath = str(optimized_to)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_image(sess, lr: np.ndarray) -> np.ndarray:
    return sess.run(None, {"lr": lr.transpose(2, 0, 1)[None].astype(np.float32)})[0][0].transpose(1, 2, 0)


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
    qm = artifact.load(BUNDLED / m.raw["calibration"]["file"], load_edsr(x4_checkpoint), x4_checkpoint)
    return m, qm


def test_qdq_graphs_check_fuse_to_integer_convs_and_fp32_graph_matches_torch(x2_checkpoint, tmp_path):
    qm = QuantEDSR(load_edsr(x2_checkpoint), 4, 4, full_quant=True)
    for q in qm.act_quantizers():
        q.set_bounds(-50.0, 50.0)
    for conv in qm.qconvs():
        conv.wq.init_clip(conv.weight, "minmax")
    x = torch.rand(1, 3, 20, 24) * 255
    for subpixel_tail in (True, False):
        for factor in (None, -1, 0, 1):
            model = build_model(qm, factor, subpixel_tail=subpixel_tail)
            onnx.checker.check_model(model, full_check=True)
            path, opt = tmp_path / "m.onnx", tmp_path / "opt.onnx"
            onnx.save(model, path)
            y = session(path, optimized_to=opt).run(None, {"lr": x.numpy()})[0]
            conv_ops = [n.op_type for n in onnx.load(opt).graph.node if "Conv" in n.op_type]
            if factor is None:
                with torch.no_grad(), qm.fp_mode():
                    assert np.abs(y - qm(x).numpy()).max() < 0.05  # the sub-pixel tail rewrite is exact
            else:
                assert conv_ops and all(op == "QLinearConv" for op in conv_ops), conv_ops


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_pixel_shuffles_compute_what_pytorch_does(scale, tmp_path):
    """The INT8 graphs shuffle pixels on uint8, channels-last, with the conv's output channels reordered (and
    3 colours padded to 4 per sub-pixel position): x2, x3 and the two-stage x4 upsampler against PyTorch's
    PixelShuffle in the simulation. A wrong channel order scrambles pixels and misses by far more than 1 LSB."""
    torch.manual_seed(scale)
    fp = EDSR(EDSRConfig(n_blocks=1, n_feats=16, scale=scale)).eval()
    with torch.no_grad():
        for shift, sign in ((fp.sub_mean, -1.0), (fp.add_mean, 1.0)):
            shift.weight.copy_(torch.eye(3)[:, :, None, None])
            shift.bias.fill_(sign * 114.0)
    qm = QuantEDSR(fp, 8, 8, full_quant=True)
    for q in qm.act_quantizers():
        q.set_bounds(-20.0, 20.0)
    for conv in qm.qconvs():
        conv.wq.init_clip(conv.weight, "minmax")
    x = torch.rand(1, 3, 11, 13) * 255
    path, opt = tmp_path / "m.onnx", tmp_path / "opt.onnx"
    onnx.save(build_model(qm, 0), path)
    y = session(path, optimized_to=opt).run(None, {"lr": x.numpy()})[0]
    assert "DepthToSpace" not in [n.op_type for n in onnx.load(opt).graph.node]
    with torch.no_grad():
        sim = qm(x, torch.tensor([sum(qm.image2bit.thresholds()) / 2])).numpy()
    lsb = qm.q_tail[-1].qparams(8)[0]
    assert y.shape == sim.shape == (1, 3, 11 * scale, 13 * scale)
    assert np.abs(y - sim).max() <= 1.01 * lsb and np.mean(np.abs(y - sim) > 1e-3) < 0.01


def test_bundled_model_is_valid_and_every_variant_runs_integer_convs(x4_checkpoint, tmp_path):
    m = manifest.load(BUNDLED)  # checks format, complexity definition and every file's sha256
    raw = m.raw
    assert m.scale == 4 and m.patch_size == 96 and m.thresholds[0] < m.thresholds[1]
    assert raw["checkpoint"]["sha256"] == artifact.sha256_file(x4_checkpoint)
    assert raw["calibration"]["method"] == "adabm" and raw["calibration"]["full_quant"]
    assert raw["calibration"]["sha256"] == artifact.sha256_file(BUNDLED / raw["calibration"]["file"])
    sizes = sum(p.stat().st_size for p in BUNDLED.iterdir())
    assert sizes < 16e6, "the bundled model directory must stay small enough for the repository"
    fabs = [m.variants[f].fab for f in manifest.FACTORS]
    assert fabs == sorted(fabs) and all(2 <= b <= 8 for f in manifest.FACTORS for b in m.variants[f].layer_bits)
    for f, v in m.variants.items():
        onnx.checker.check_model(onnx.load(v.path), full_check=True)
        opt = tmp_path / f"opt{f}.onnx"
        session(v.path, optimized_to=opt)
        ops = [n.op_type for n in onnx.load(opt).graph.node]
        assert ops.count("QLinearConv") == 2 * 16 + 2 + 3 and "Conv" not in ops, sorted(set(ops))
        assert ops.count("QLinearAdd") == 16 + 1 + 16  # residual adds, skip, requantizations


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_onnx_runtime_matches_the_pytorch_simulation(bundled_sim, benchmark_root, set_name):
    """Each variant on ORT (all optimizations) vs the simulated model forced to the same image-wise factor."""
    m, qm = bundled_sim
    lo, hi = m.thresholds
    complexity_for = {-1: lo - 1.0, 0: (lo + hi) / 2, 1: hi + 1.0}
    bench = open_benchmark(benchmark_root / set_name, m.scale)
    for factor, variant in m.variants.items():
        sess = session(variant.path)
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
        model = onnx.load(variant.path)
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
        whole_ort = to_uint8(run_image(session(variant.path), lr))
        assert psnr(whole_ref, whole_ort) >= 45.0, (variant.factor, psnr(whole_ref, whole_ort))
        assert (np.abs(whole_ref.astype(int) - whole_ort) <= 1).mean() >= 0.75, variant.factor


def test_probe_cli_compares_two_runs_op_by_op(benchmark_root, tmp_path):
    """The cross-machine check (benchmarks/arm_qemu.sh): dump here, recompute each op from that dump, compare;
    a corrupted tensor is caught."""
    from export.probe import main as probe
    lr = benchmark_root / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    model = manifest.load(BUNDLED).variants[0].path
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
        ["manifest.json", "calibration.json", "fp32.onnx", "int8_f-1.onnx", "int8_f+0.onnx", "int8_f+1.onnx"])
    data = json.loads(tiny_artifact.read_text())
    assert m.scale == 2 and list(m.thresholds) == pytest.approx(data["i2b_thresholds"])
    for f, v in m.variants.items():
        assert v.layer_bits == data["variant_bits"][str(f)]
    assert m.raw["calibration"]["sha256"] == artifact.sha256_file(out / "calibration.json")
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
        ([foreign, "--qconfig", tiny_artifact], "foreign.pt"),
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
    from adabm_deploy.errors import UserError
    from export import model_dir
    qm = artifact.load(tiny_artifact, load_edsr(x2_checkpoint), x2_checkpoint)
    data = artifact.read(tiny_artifact)
    out = tmp_path / "model"
    model_dir.write(out, qm, x2_checkpoint, data, 19)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*_):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(model_dir.onnx, "save", disk_full)
    with pytest.raises(UserError, match="No space left"):
        model_dir.write(out, qm, x2_checkpoint, data, 17, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
