"""Short real calibrations of the 8-block x2 reference model on a few T91 images."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import shared_path

from adabm_deploy import artifact
from adabm_deploy import calibrate as calib
from adabm_deploy.calibrate import PatchSampler, Settings, calibrate
from adabm_deploy.data import calibration_images
from adabm_deploy.experiments import ROWS, reuse_artifact, row_settings
from adabm_deploy.models import load_network
from runtime.errors import UserError

TINY = dict(n_images=12, patch=32, batch=2, epochs=3, iters_per_epoch=8, stats_batch=6)


@pytest.fixture(scope="module")
def t91():
    return shared_path("data", "train", "T91")


def held_out_error(qm, ckpt, folder):
    """Mean |FP - Q| on crops of images the calibration did not draw (different seed)."""
    images = calibration_images(folder, 6, 2, seed=123)
    sampler = PatchSampler(images, 40, seed=5)
    errs, bits = [], []
    with torch.no_grad():
        for x, c in sampler.epoch_batches(6, "cpu"):
            with qm.fp_mode():
                ref = qm(x)
            errs.append(float((qm(x, c) - ref).abs().mean()))
            bits.append(float(qm.bits(c).mean()))
    return float(np.mean(errs)), float(np.mean(bits))


@pytest.fixture(scope="module")
def calibrated(x2_checkpoint, t91):
    out = {}
    for name, method, ft in (("minmax", "minmax", False), ("adabm", "adabm", True)):
        s = Settings(w_bits=4, a_bits=4, method=method, finetune=ft, **TINY)
        out[name] = calibrate(x2_checkpoint, t91, s, progress=False)
    return out


def test_adabm_beats_minmax_at_comparable_bits(calibrated, x2_checkpoint, t91):
    err_mm, bits_mm = held_out_error(calibrated["minmax"][0], x2_checkpoint, t91)
    err_ada, bits_ada = held_out_error(calibrated["adabm"][0], x2_checkpoint, t91)
    assert bits_mm == 4.0
    assert bits_ada <= 4.5  # the bit loss holds the mean near b_base
    assert err_ada < 0.7 * err_mm, (err_ada, err_mm)


def test_adabm_artifact_records_mappings_and_settings(calibrated):
    payload = calibrated["adabm"][1]
    assert payload["format"] == artifact.FORMAT and payload["version"] == artifact.VERSION
    assert set(payload["layer_factors"]) <= {-1, 0, 1} and len(payload["layer_factors"]) == 16
    lo, hi = payload["i2b_thresholds"]
    assert 0 < lo < hi
    assert payload["settings"]["p_i"] == 10 and payload["settings"]["lambda_bit"] == 50
    assert len(payload["report"]["epoch_losses"]) == 3
    assert payload["variant_bits"]["0"] == [min(8, max(2, 4 + f)) for f in payload["layer_factors"]]
    assert payload["adaptive_layers"] == [f"body.{i}.body.{c}" for i in range(8) for c in (0, 2)]
    assert payload["checkpoint"]["architecture"] == "EDSR" and payload["checkpoint"]["config"]["scale"] == 2


def test_artifact_round_trip_and_validation(calibrated, x2_checkpoint, x4_checkpoint, tmp_path):
    qm, payload = calibrated["adabm"]
    path = tmp_path / "a.json"
    artifact.save(path, payload)
    loaded = artifact.load(path, load_network(x2_checkpoint))
    x, c = torch.rand(1, 3, 20, 20) * 255, torch.tensor([30.0])
    with torch.no_grad():
        assert torch.equal(loaded(x, c), qm(x, c))
    with pytest.raises(UserError, match="calibrated for another checkpoint"):
        artifact.load(path, load_network(x4_checkpoint))
    broken = dict(payload, activations={k: v for k, v in list(payload["activations"].items())[1:]})
    artifact.save(path, broken)
    with pytest.raises(UserError, match="quantization points do not match"):
        artifact.load(path, load_network(x2_checkpoint))
    path.write_text(json.dumps(dict(payload, version=99)))
    with pytest.raises(UserError, match="version 99 not supported"):
        artifact.read(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a calibration artifact"):
        artifact.read(path)


def test_quantized_model_in_fp_mode_is_the_fp32_network(calibrated, x2_checkpoint):
    qm = calibrated["adabm"][0]
    x = torch.rand(1, 3, 16, 16) * 255
    with torch.no_grad(), qm.fp_mode():
        assert torch.allclose(qm(x), load_network(x2_checkpoint).module(x), atol=1e-4)


def test_cli_bad_inputs_exit_2_and_write_nothing(tmp_path, x2_checkpoint, t91):
    cases = [
        ([str(tmp_path / "none.pt"), "--calib-dir", str(t91)], "checkpoint not found"),
        ([str(x2_checkpoint), "--calib-dir", str(tmp_path)], "no images found"),
        ([str(x2_checkpoint), "--calib-dir", str(t91), "--a-bits", "9"], "must be between 2 and 8"),
        ([str(x2_checkpoint), "--calib-dir", str(t91), "--lr-layer-factors", "-1"], "must be positive"),
    ]
    for args, message in cases:
        out = tmp_path / "out.json"
        proc = subprocess.run([sys.executable, "-m", "adabm_deploy.calibrate", *args, "-o", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_experiments_reuse_only_an_artifact_with_the_rows_settings(calibrated, x2_checkpoint, tmp_path):
    path = tmp_path / "row.json"
    artifact.save(path, calibrated["adabm"][1])
    recorded = Settings(**{k: v for k, v in calibrated["adabm"][1]["settings"].items()
                           if k in Settings.__dataclass_fields__})
    qm, _ = reuse_artifact(path, recorded, x2_checkpoint)
    assert qm.layer2bit.factors() == calibrated["adabm"][0].layer2bit.factors()
    row = next(r for r in ROWS if r.key == "full_w4a4_adabm_paper_cuda")
    with pytest.raises(UserError, match="other settings than its row.*full_quant"):
        reuse_artifact(path, row_settings(row, "cpu"), x2_checkpoint)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the graph path is GPU-only)")
def test_cuda_graph_step_gives_the_eager_gradients(x2_checkpoint, t91):
    """The captured step must overwrite .grad on every replay with exactly what an eager step computes."""
    calib.exact_cuda_convs()
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    s = Settings(w_bits=4, a_bits=4, full_quant=True, **TINY)
    qm = calib.QuantGraph(load_network(x2_checkpoint).graph, 4, 4, True).cuda()
    sampler = PatchSampler(calibration_images(t91, s.n_images, 2, 0), s.patch, 0)
    calib.initialise(qm, sampler, s, "cuda")
    tuned = [p for group in calib.param_groups(qm, s).values() for g in group for p in g["params"]]
    for p in tuned:
        p.requires_grad_(True)
    step = calib.TrainStep(qm, tuned, s, *sampler.random_batch(s.batch, "cuda"))
    for bit_weight in (0.0, s.lambda_bit):
        x, c = sampler.random_batch(s.batch, "cuda")
        graph_loss = step(x, c, bit_weight).item()
        graph_grads = [p.grad.clone() for p in tuned]
        eager = calib.TrainStep(qm, tuned, s, x, c)
        eager.graph = None
        assert eager(x, c, bit_weight).item() == graph_loss
        assert all(torch.equal(g, p.grad) for g, p in zip(graph_grads, tuned))
        step = calib.TrainStep(qm, tuned, s, x, c)


def test_the_cheap_rung_threshold_is_the_largest_within_the_budget_and_zero_turns_it_off():
    from adabm_deploy.rung_calibration import ImageCells, choose_threshold, drop_db
    # two images of four 100-pixel cells, network error 1 per pixel; the rung's error is 1.2x the network's on
    # the flattest cell, 3x on the next; the two textured cells are no candidates (inf)
    cells = [ImageCells(np.array([1.0, 3.0, np.inf, np.inf]), np.full(4, 100.0),
                        np.array([120.0, 300.0, 1e4, 1e4]), 400, np.ones(4, bool)) for _ in range(2)]
    assert drop_db(cells, None, 2) == 0.0
    assert drop_db(cells, 1.0, 2) == pytest.approx(10 * np.log10(420 / 400))
    assert drop_db(cells, 3.0, 2) == pytest.approx(10 * np.log10(620 / 400))
    assert choose_threshold(cells, 0.0, 2) is None  # zero budget: the all-network output, exactly
    assert choose_threshold(cells, 0.1, 2) is None  # not even the flattest cell fits
    assert choose_threshold(cells, 0.3, 2) == 1.0
    assert choose_threshold(cells, 2.0, 2) == 3.0
    assert choose_threshold(cells, 0.1, 200) == 3.0  # the images without candidates lose nothing
    assert choose_threshold([], 1.0, 2) is None
    # worst case over cells: one image's second cell shows the rung (a GAN painting flat regions its own way),
    # so no threshold reaches it, whatever the budget
    cells[1].fits[1] = False
    assert choose_threshold(cells, 2.0, 2) == 1.0
    cells[0].fits[0] = False
    assert choose_threshold(cells, 2.0, 200) is None


def test_calibration_sets_the_cheap_rung_on_the_calibration_images(calibrated):
    rung = calibrated["adabm"][1]["cheap_rung"]
    assert rung["kind"] == "bicubic" and rung["budget_db"] == 0.1 and rung["patch"] == 96
    assert rung["calibration_drop_db"] <= rung["budget_db"]
    assert rung["calibration_cells"] >= 12
