"""OpenVINO's form of the graphs: integer execution read from the compiled model, activation ranges equal to the
artifact's bits, and fidelity to the simulation of OpenVINO's own plan on fresh exports of every architecture.
Skipped where OpenVINO is not installed."""
import itertools

import numpy as np
import onnx
import pytest
import torch
from conftest import REPO
from test_export import (
    ARCHS,
    COMPLEXITY_FOR,
    expected_bits,
    with_factors,
    zoo_networks,  # noqa: F401 (a fixture)
)

from adabm_deploy import artifact
from adabm_deploy.metrics import psnr, to_uint8
from adabm_deploy.quant import QuantGraph
from benchmarks import zoo
from export import model_dir
from export.qdq import build_model
from runtime import manifest

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'adabm-deploy[openvino]')")
from runtime.engines.openvino import config, read_onnx  # noqa: E402

BUNDLED = REPO / "runtime" / "models" / "edsr_baseline_x4"
# Worst mutual Y-PSNR (OpenVINO vs the simulation of its plan, over the three variants) of a correct export,
# random weights, clipped ranges: 54.1 dB (CARN W4A4 body-only) and up, every architecture exact or within a few
# flipped codes (OpenVINO's float parts differ from PyTorch's in last bits). Without the b-bit clamp: EDSR 48.3,
# RDN 51.5, SRVGGNetCompact 52.9 dB (measured on an AMX Xeon, OpenVINO 2026.4).
FIDELITY_DB = 53.0


def clipping(qm: QuantGraph) -> QuantGraph:
    """Ranges cut to 60% of what random images span, as bit-aware clipping cuts them: the b-bit clamp then binds
    on many values, so a form that loses it cannot pass for right."""
    for q in qm.quantizers:
        q.set_bounds(*(0.6 * b for b in q.bound_values()))
    return qm


def compile_model(model, threads: int = 1):
    if isinstance(model, onnx.ModelProto):
        model = ov.Core().read_model(model.SerializeToString(), b"")
    else:
        model = read_onnx(model)
    return ov.Core().compile_model(model, "CPU", config(threads))


def runtime_ops(compiled) -> list[dict[str, str]]:
    """What the plugin runs: one dict of rt_info per executed node (fused nodes are gone)."""
    return [{k: op.get_rt_info()[k].astype(str) for k in ("layerType", "primitiveType", "runtimePrecision",
                                                          "originalLayersNames")}
            for op in compiled.get_runtime_model().get_ordered_ops()]


def test_every_quantized_conv_of_each_bundled_variant_runs_in_integer_precision():
    """Every conv runs u8 x i8 (AMX-INT8 where the CPU has it, else VNNI); the one FakeQuantize left in f32 is the
    input image's point, which has no producing op to fuse into (NNCF's graph keeps the same one)."""
    m = manifest.load(BUNDLED)
    for factor, variant in m.variants.items():
        ops = runtime_ops(compile_model(variant.graphs["openvino"]))
        convs = [o for o in ops if o["layerType"] == "Convolution"]
        assert len(convs) == 37, (factor, len(convs))
        not_int = [o for o in convs if o["runtimePrecision"] not in ("u8", "i8")]
        assert not not_int, (factor, not_int[:3])
        assert all(o["primitiveType"].lower().endswith("_i8") for o in convs), {o["primitiveType"] for o in convs}
        left = [o["originalLayersNames"] for o in ops if o["layerType"] == "FakeQuantize"]
        assert [name.rsplit(".q_", 1)[0] for name in left] == ["head.0.in"], (factor, left)


def openvino_ranges(model: onnx.ModelProto) -> dict[str, int]:
    """Per activation point of OpenVINO's form: the largest uint8 code it can pass on, from the float Clip before
    its QuantizeLinear (round(high / scale) + zero point), or 255 without one."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    ranges = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and ".w_" not in node.input[0]:
            point = node.name.rsplit(".q_", 1)[0]
            clip = producer.get(node.input[0])
            scale, zp = float(consts[node.input[1]]), int(consts[node.input[2]])
            ranges[point] = int(round(float(consts[clip.input[2]]) / scale)) + zp \
                if clip is not None and clip.op_type == "Clip" else 255
    return ranges


def readers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    """The convs that read `tensor`, through ReLUs, shuffles and DequantizeLinear."""
    found = []
    for node in model.graph.node:
        if tensor in node.input:
            if node.op_type == "Conv" and node.input[0] == tensor:
                found.append(node)
            elif node.op_type in ("Relu", "DepthToSpace", "DequantizeLinear"):
                found += readers(model, node.output[0])
    return found


@pytest.mark.parametrize("kind", ["edsr", "rdn"])
def test_every_activation_range_of_the_openvino_form_is_the_artifacts_bits(kind, zoo_networks, tmp_path):
    """From the graph and the artifact alone: a point read by a conv that has an input point of its own in the
    artifact takes that point's bits (OpenVINO holds the tensor at the bits its conv reads it with), any other
    point its own bits."""
    network = zoo_networks[kind]
    for full in (True, False):
        qm = with_factors(zoo.observed(QuantGraph(network.graph, 4, 4, full)))
        data = artifact.to_dict(qm, network, {"method": "adabm"}, {}, {"kind": "bicubic", "threshold": None})
        m = model_dir.write(tmp_path / f"{kind}_{full}", qm, data, 19)
        for factor, variant in m.variants.items():
            model = onnx.load(variant.graphs["openvino"])
            wrong = {}
            for point, top in openvino_ranges(model).items():
                q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.name.startswith(point))
                convs = [c.name for c in readers(model, q.output[0])]
                names = [n.rsplit("_", 1)[0] for n in convs]  # ONNX node names carry a counter
                owner = next((f"{c}.in" for c in names if f"{c}.in" in data["activations"] and f"{c}.in" != point),
                             point)
                if top != 2 ** expected_bits(data, owner, factor) - 1:
                    wrong[point] = (top, owner, expected_bits(data, owner, factor))
            assert not wrong, (kind, full, factor, wrong)


@pytest.mark.parametrize("kind", ARCHS)
def test_fresh_exports_of_every_architecture_match_openvinos_simulation(kind, zoo_networks):
    """OpenVINO vs the simulation of OpenVINO's plan forced to each variant's image factor: W4A4 and W8A8, full
    and body-only, per-tensor and per-channel weights."""
    network = zoo_networks[kind]
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, 20, 24)).astype(np.float32))
    worst = {}
    for (w, a), full, per_channel in itertools.product([(4, 4), (8, 8)], [True, False], [False, True]):
        qm = clipping(with_factors(zoo.observed(QuantGraph(network.graph, w, a, full, per_channel))))
        qm = qm.for_engine("openvino")
        for factor in (-1, 0, 1):
            y = compile_model(build_model(qm, factor))(x.numpy())[0]
            with torch.no_grad():
                sim = qm(x, torch.tensor([COMPLEXITY_FOR[factor]]))
            mutual = psnr(to_uint8(y[0].transpose(1, 2, 0)), to_uint8(sim[0].permute(1, 2, 0).numpy()))
            key = (f"W{w}A{a}", "full" if full else "body", "per-channel" if per_channel else "per-tensor")
            worst[key] = min(worst.get(key, np.inf), mutual)
    failed = {k: round(v, 1) for k, v in worst.items() if v < FIDELITY_DB}
    assert not failed, failed


def test_the_bundled_model_on_openvino_matches_the_simulation_of_its_plan(x4_checkpoint, benchmark_root):
    """Each bundled variant on OpenVINO vs the simulation of OpenVINO's plan (the one calibration's ranges) forced
    to the same image-wise factor, Set5 whole images; the same bars as ONNX Runtime's."""
    from adabm_deploy.data import open_benchmark
    from adabm_deploy.models import load_network
    m = manifest.load(BUNDLED)
    qm = artifact.load(BUNDLED / m.raw["calibration"]["file"], load_network(x4_checkpoint)).for_engine("openvino")
    lo, hi = m.thresholds
    complexity_for = {-1: lo - 1.0, 0: (lo + hi) / 2, 1: hi + 1.0}
    bench = open_benchmark(benchmark_root / "Set5", m.scale)
    for factor, variant in m.variants.items():
        compiled = compile_model(variant.graphs["openvino"], threads=2)
        mutual, hr_ov, hr_sim = [], [], []
        for pair in bench.pairs:
            lr, hr = bench.load(pair)
            x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None].astype(np.float32))
            ours = to_uint8(compiled(x)[0][0].transpose(1, 2, 0))
            with torch.no_grad():
                sim = to_uint8(qm(torch.from_numpy(x), torch.tensor([complexity_for[factor]]))[0].permute(1, 2, 0)
                               .numpy())
            mutual.append(psnr(ours, sim))
            hr_ov.append(psnr(ours, hr, crop=m.scale))
            hr_sim.append(psnr(sim, hr, crop=m.scale))
        assert min(mutual) >= 45.0, (factor, mutual)
        assert abs(np.mean(hr_ov) - np.mean(hr_sim)) <= 0.05, (factor, np.mean(hr_ov), np.mean(hr_sim))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_sub_pixel_tail_with_depth_to_space_computes_what_the_plain_graph_does(scale, tmp_path):
    """OpenVINO's form runs the last conv as the 2x2 sub-pixel conv before a DepthToSpace whose phases are rotated
    and cropped back: x2, x3 and the two-stage x4 against the plain graph (the 3x3 conv after the shuffle) on
    OpenVINO. The rewrite is exact, so the two agree but for a rare rounding flip; a wrong phase order or crop
    scrambles pixels and misses by far more than 1 LSB."""
    from adabm_deploy.models import load_network
    network = load_network(zoo.save("edsr", tmp_path, scale))
    qm = zoo.observed(QuantGraph(network.graph, 8, 8, full_quant=True)).for_engine("openvino")
    x = np.random.default_rng(scale).uniform(0, 255, (1, 3, 11, 13)).astype(np.float32)
    model = build_model(qm, 0)
    ops = {n.name.rsplit("_", 1)[0]: n.op_type for n in model.graph.node}
    assert ops.get("tail.1.d2s") == "DepthToSpace" and ops.get("tail.1.real") == "Slice"
    y, plain = (compile_model(m)(x)[0] for m in (model, build_model(qm, 0, rewrite=False)))
    lsb = qm.quantizer["tail.1.out"].qparams(8)[0]
    assert y.shape == plain.shape == (1, 3, 11 * scale, 13 * scale)
    assert np.abs(y - plain).max() <= 1.01 * lsb and np.mean(np.abs(y - plain) > 1e-3) < 0.01
