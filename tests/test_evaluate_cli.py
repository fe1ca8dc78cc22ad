import json
import subprocess
import sys

import pytest

from adabm_deploy.evaluate import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "adabm_deploy.evaluate", *map(str, args)],
                          capture_output=True, text=True)


def test_x4_reference_set5_psnr(x4_checkpoint, benchmark_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--model", str(x4_checkpoint), "--data", str(benchmark_root / "Set5"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["images"] == 5
    assert result["psnr_y"] == pytest.approx(31.55, abs=0.01)
    assert "Set5" in capsys.readouterr().out


def test_x2_reference_set5_psnr(x2_checkpoint, benchmark_root, tmp_path):
    out = tmp_path / "r.json"
    assert main(["--model", str(x2_checkpoint), "--data", str(benchmark_root / "Set5"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["psnr_y"] == pytest.approx(37.80, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("ckpt,expected", [("x4_checkpoint", (31.55, 28.11, 27.32)),
                                           ("x2_checkpoint", (37.80, 33.37, 32.05))])
def test_reference_psnr_all_sets(request, benchmark_root, tmp_path, ckpt, expected):
    out = tmp_path / "r.json"
    sets = [benchmark_root / s for s in ("Set5", "Set14", "B100")]
    assert main(["--model", str(request.getfixturevalue(ckpt)), "--data", *map(str, sets), "--json", str(out)]) == 0
    got = [r["psnr_y"] for r in json.loads(out.read_text())["results"]]
    assert got == pytest.approx(list(expected), abs=0.01)


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, x4_checkpoint, benchmark_root):
    (tmp_path / "notackpt.pt").write_text("hello")
    empty = tmp_path / "empty"
    (empty / "HR").mkdir(parents=True)
    (empty / "LR_bicubic" / "X4").mkdir(parents=True)
    cases = [
        (["--model", tmp_path / "missing.pt", "--data", benchmark_root / "Set5"], "checkpoint not found"),
        (["--model", tmp_path / "notackpt.pt", "--data", benchmark_root / "Set5"], "not a PyTorch checkpoint"),
        (["--model", x4_checkpoint, "--data", empty], "no images found"),
        (["--model", x4_checkpoint, "--data", tmp_path / "nowhere"], "benchmark folder not found"),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
