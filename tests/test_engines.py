"""Choosing the inference engine: by name, or the fastest here by a timed probe, cached per CPU and model; bad
names, missing libraries and graphs an engine cannot compile stop the run before any image is read."""
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from runtime import manifest
from runtime.engines import choice, installed
from runtime.errors import UserError

BUNDLED = REPO / "runtime" / "models" / "edsr_baseline_x4"
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADABM_DEPLOY_CACHE", str(tmp_path / "cache"))


def fake_probe(monkeypatch, rates: dict[str, float]) -> list[str]:
    """Replace the timed probe with fixed windows/s per engine; returns the engines probed, in order."""
    probed = []

    def rate(engine, factor, side, cores):
        probed.append(engine.name)
        return rates[engine.name]
    monkeypatch.setattr(choice, "windows_per_second", rate)
    return probed


def upscale(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.upscale", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env)


def test_the_fastest_engine_wins_unless_onnx_runtime_is_within_the_margin():
    assert choice.fastest({"onnxruntime": 10.0, "openvino": 20.0}) == "openvino"
    assert choice.fastest({"onnxruntime": 20.0, "openvino": 10.0}) == "onnxruntime"
    assert choice.fastest({"onnxruntime": 10.0, "openvino": 10.4}) == "onnxruntime"  # 4%: not worth a switch
    assert choice.fastest({"onnxruntime": 10.0, "openvino": 10.6}) == "openvino"
    assert choice.fastest({"openvino": 3.0}) == "openvino"


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'adabm-deploy[openvino]')")
def test_auto_probes_once_then_reads_the_cache_and_probes_again_for_another_model(monkeypatch, tmp_path):
    m = manifest.load(BUNDLED)
    probed = fake_probe(monkeypatch, {"onnxruntime": 10.0, "openvino": 25.0})
    first = choice.choose("auto", m, 0, 100, 2)
    assert first.engine.name == "openvino" and first.how == "probed" and probed == ["onnxruntime", "openvino"]
    cached = json.loads(choice.cache_path().read_text())
    assert [e["engine"] for e in cached.values()] == ["openvino"]
    probed.clear()
    again = choice.choose("auto", m, 0, 100, 2)
    assert again.engine.name == "openvino" and again.how == "cached" and probed == []
    assert again.windows_per_second == {"onnxruntime": 10.0, "openvino": 25.0}
    # the same model at another core count, or another model directory, is measured anew
    assert choice.choose("auto", m, 0, 100, 1).how == "probed" and probed == ["onnxruntime", "openvino"]
    other = tmp_path / "other"
    shutil.copytree(BUNDLED, other)
    data = json.loads((other / "manifest.json").read_text())
    data["patch_size"] = 64
    (other / "manifest.json").write_text(json.dumps(data))
    probed.clear()
    fake_probe(monkeypatch, {"onnxruntime": 30.0, "openvino": 25.0})
    assert choice.choose("auto", manifest.load(other), 0, 100, 2).engine.name == "onnxruntime"


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'adabm-deploy[openvino]')")
def test_a_probe_beside_other_work_decides_that_run_only(monkeypatch):
    """Other work slows the engines unequally: a probe during which it took more than a quarter of the cores is
    used for the run and not cached, and the next run probes again."""
    import contextlib
    m = manifest.load(BUNDLED)
    probed = fake_probe(monkeypatch, {"onnxruntime": 10.0, "openvino": 25.0})
    share = [0.6]
    monkeypatch.setattr(choice, "other_work", lambda: contextlib.nullcontext(share))
    busy = choice.choose("auto", m, 0, 100, 2)
    assert busy.engine.name == "openvino" and not choice.cache_path().exists()
    assert busy.describe().startswith("engine: openvino (probed beside other work (60% of the cores), not kept; "
                                      "windows/s onnxruntime 10.0, openvino 25.0)")
    share[0] = 0.1
    assert choice.choose("auto", m, 0, 100, 2).how == "probed" and probed == ["onnxruntime", "openvino"] * 2
    assert choice.choose("auto", m, 0, 100, 2).how == "cached"


def test_other_work_is_measured_from_the_cores_this_process_may_use():
    """As many processes spinning as this process has cores take most of them; a block too short for clock ticks
    to tell says nothing."""
    import time

    from runtime.cpu import other_work, usable_cores
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat here")
    spin = "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(usable_cores())]
    try:
        time.sleep(0.3)
        with other_work() as busy:
            time.sleep(1.0)
    finally:
        for p in spinners:
            p.wait()
    assert busy and busy[0] > 0.6, busy
    with other_work() as short:
        pass
    assert short == []


def test_a_named_engine_is_used_without_a_probe_and_laid_out_as_it_runs_fastest(monkeypatch):
    m = manifest.load(BUNDLED)
    probed = fake_probe(monkeypatch, {})
    chosen = choice.choose("onnxruntime", m, 0, 100, 2)
    assert chosen.engine.name == "onnxruntime" and chosen.how == "named" and probed == []
    assert chosen.engine.layout(2) == (2, 1) and chosen.engine.threads == 1
    if HAS_OPENVINO:
        ov = choice.choose("openvino", m, 0, 100, 2).engine
        assert ov.layout(2) == (1, 2) and ov.threads == 2


def test_auto_with_one_usable_engine_takes_it_without_a_probe(monkeypatch):
    m = manifest.load(BUNDLED)
    probed = fake_probe(monkeypatch, {})
    monkeypatch.setattr(choice, "installed", lambda: ["onnxruntime"])
    chosen = choice.choose("auto", m, 0, 100, 2)
    assert chosen.engine.name == "onnxruntime" and chosen.how == "only one installed" and probed == []


def test_bad_names_missing_libraries_and_missing_forms_are_one_line_errors(monkeypatch, tmp_path):
    m = manifest.load(BUNDLED)
    with pytest.raises(UserError, match="engine 'tensorrt': choose from auto, onnxruntime, openvino"):
        choice.choose("tensorrt", m, 0, 100, 2)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(UserError, match=r"engine openvino: openvino is not installed \(pip install 'adabm-deploy"):
        choice.choose("openvino", m, 0, 100, 2)
    assert "openvino" not in installed()
    monkeypatch.undo()
    old = tmp_path / "v2"  # a directory exported before engine forms: ONNX Runtime's graphs only
    shutil.copytree(BUNDLED, old)
    data = json.loads((old / "manifest.json").read_text())
    data["version"] = 2
    del data["engines"]
    for v in data["variants"]:
        v.update(v.pop("graphs")["onnxruntime"])
    (old / "manifest.json").write_text(json.dumps(data))
    if HAS_OPENVINO:
        with pytest.raises(UserError, match="holds no openvino form .it holds onnxruntime.; export it again"):
            choice.choose("openvino", manifest.load(old), 0, 100, 2)
    assert choice.choose("auto", manifest.load(old), 0, 100, 2).engine.name == "onnxruntime"


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'adabm-deploy[openvino]')")
def test_cli_names_its_engine_first_and_in_stats_and_refuses_a_graph_openvino_cannot_compile(tmp_path):
    lr = tmp_path / "in.png"
    import cv2
    cv2.imwrite(str(lr), np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    env = {**__import__("os").environ, "ADABM_DEPLOY_CACHE": str(tmp_path / "cache")}
    proc = upscale(lr, "-o", tmp_path / "out.png", "--engine", "openvino", "--stats", tmp_path / "s.json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "engine: openvino (named)"
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["engine"] == "openvino" and stats["images"][0]["engine"] == "openvino"
    proc = upscale(lr, "-o", tmp_path / "auto.png", "--engine", "auto", env=env)
    first = proc.stdout.splitlines()[0]  # "(probed beside other work (N% of the cores), not kept; ..." on a busy machine
    assert proc.returncode == 0 and first.startswith("engine: ") and "(probed" in first and \
        "windows/s onnxruntime " in first, proc.stdout
    proc = upscale(lr, "-o", tmp_path / "x.png", "--engine", "tensorrt", env=env)
    assert proc.returncode == 2 and "invalid choice: 'tensorrt'" in proc.stderr
    broken = tmp_path / "broken"
    shutil.copytree(BUNDLED, broken)
    graph = broken / "int8_f+0.openvino.onnx"
    graph.write_bytes(b"\x08\x07" + graph.read_bytes()[:5000])  # a protobuf OpenVINO cannot read
    data = json.loads((broken / "manifest.json").read_text())
    for v in data["variants"]:
        if v["graphs"]["openvino"]["file"] == graph.name:
            v["graphs"]["openvino"]["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
    (broken / "manifest.json").write_text(json.dumps(data))
    proc = upscale(lr, "-o", tmp_path / "y.png", "--model", broken, "--engine", "openvino", env=env)
    assert proc.returncode == 2 and not (tmp_path / "y.png").exists()
    assert proc.stderr.strip().count("\n") == 0 and "int8_f+0.openvino.onnx: OpenVINO cannot compile it" in \
        proc.stderr, proc.stderr


def test_without_openvino_on_an_amx_cpu_the_first_line_says_the_command_that_adds_it(monkeypatch):
    m = manifest.load(BUNDLED)
    monkeypatch.setattr(choice, "installed", lambda: ["onnxruntime"])
    monkeypatch.setattr(choice, "int8_extensions", lambda: ["AVX-512 VNNI", "AMX-INT8"])
    line = choice.choose("auto", m, 0, 100, 2).describe()
    assert line == ("engine: onnxruntime (only one installed); this CPU has AMX-INT8, which "
                    "pip install 'adabm-deploy[openvino]' puts to use")
    monkeypatch.setattr(choice, "int8_extensions", lambda: ["AVX-512 VNNI"])
    assert choice.choose("auto", m, 0, 100, 2).describe() == "engine: onnxruntime (only one installed)"


def test_the_default_engine_is_the_environments_else_auto(monkeypatch):
    m = manifest.load(BUNDLED)
    probed = fake_probe(monkeypatch, {"onnxruntime": 10.0, "openvino": 5.0})
    monkeypatch.setenv("ADABM_DEPLOY_ENGINE", "onnxruntime")
    assert choice.choose(None, m, 0, 100, 2).how == "named" and probed == []
    monkeypatch.delenv("ADABM_DEPLOY_ENGINE")
    chosen = choice.choose(None, m, 0, 100, 2)
    assert chosen.engine.name == "onnxruntime" and chosen.how in ("probed", "only one installed")
