"""`python -m adabm_deploy.fidelity_study`: how close INT8 is to FP32 on trained models, with the tool's defaults.

For the bundled EDSR-baseline x4 (our training), edsr8_x2 (DIV2K-trained, converted), realesr-animevideov3
(a GAN model nobody here trained) and the released CARN-M at x2 (grouped convs), at W8A8 and W4A4 full
quantization with the cpu preset, and each default against its alternative (ALTERNATIVES): calibrate on
BSD200, then measure on Set14 (LR images, routed as the runtime routes them in 96x96 cells, hard cell borders)
the INT8-vs-FP32 Y-PSNR, the colour cast per channel, the steps between routes, the seam score and Y-PSNR
against HR (simulation: bit-exact with the exported graphs, tests/test_export.py). Each row is kept in
--work/fidelity.jsonl as it finishes, so an interrupted run resumes. Writes the "fidelity" section of
docs/results.md.
"""
from __future__ import annotations

from .extras import require  # first: a runtime-only install gets the install line, not a traceback

require(__name__, "python -m adabm_deploy.fidelity_study")

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from runtime.atomic import write_text
from runtime.command import run_cli
from runtime.cpu import cpu_model

from . import fidelity
from .calibrate import PRESETS, Settings, calibrate
from .data import open_benchmark
from .experiments import replace_section
from .evaluate import evaluate_set, fp32_upscaler, quantized_upscaler
from .models import load_network

# checkpoint -> (label, the scale to take from a multi-scale checkpoint)
MODELS = {"edsr_baseline_x4.pt": ("EDSR-baseline x4 (ours, the bundled model's checkpoint)", None),
          "edsr8_x2.pt": ("EDSR-8 x2 (DIV2K-trained, converted)", None),
          "realesr_animevideov3_x4.pth": ("realesr-animevideov3 x4 (Real-ESRGAN, GAN-trained)", None),
          "carn_m.pth": ("CARN-M x2 (official release, grouped convs)", 2)}
BITS = (8, 4)
# What each default was chosen against, on the trained model whose clips are smallest: (label, checkpoint,
# bits, the settings that differ from the defaults)
ALTERNATIVES = (("per-tensor weights", "realesr_animevideov3_x4.pth", 8, {"per_channel": False}),
                ("per-tensor weights", "realesr_animevideov3_x4.pth", 4, {"per_channel": False}),
                ("the paper's absolute clip rate (0.01)", "realesr_animevideov3_x4.pth", 4, {"clip_step": None}),
                ("per-tensor weights", "edsr8_x2.pt", 8, {"per_channel": False}))


def measure_row(checkpoint: Path, bits: int, calib_dir: Path, bench: Path, changes: dict | None = None) -> dict:
    settings = Settings(w_bits=bits, a_bits=bits, full_quant=True, preset="cpu",
                        **{**PRESETS["cpu"], **(changes or {})})
    qm, payload = calibrate(checkpoint, calib_dir, settings, progress=False, warn=lambda line: None,
                            scale=MODELS[checkpoint.name][1])
    data = open_benchmark(bench, qm.scale)
    figures = fidelity.measure(qm, [data.load(p)[0] for p in data.pairs], 96, payload["cheap_rung"]["threshold"])
    to_hr = evaluate_set(quantized_upscaler(qm, None), data, progress=False).psnr_y
    report = payload["report"]
    return {"checkpoint": checkpoint.name, "bits": bits, "set14": figures, "psnr_hr": round(to_hr, 2),
            "retired": report["routes"]["retired"], "correction": report["routes"]["correction"],
            "self_check_warnings": report["self_check"]["warnings"], "seconds": report["seconds"],
            "threads": report["torch_threads"], "cheap_threshold": payload["cheap_rung"]["threshold"],
            "changes": changes or {}}


def fp32_psnr(checkpoint: Path, bench: Path) -> float:
    """Our own FP32 model against HR on the same images: the reference for the quantized rows' PSNR vs HR."""
    network = load_network(checkpoint, MODELS[checkpoint.name][1])
    return round(evaluate_set(fp32_upscaler(network), open_benchmark(bench, network.scale), progress=False).psnr_y, 2)


def _pair(key: str) -> str:
    return " vs ".join(part if part in (fidelity.CHEAP, "0") else f"{int(part):+d}" for part in key.split("|"))


def render(rows: list[dict], fp32: dict[str, float]) -> str:
    lines = ["## INT8 against FP32 on trained models, with the tool's defaults", "",
             f"Calibrated on 100 BSD200 images (cpu preset, full quantization, per-channel weights, relative clip "
             f"steps, cast correction and route fitting), measured on Set14 LR images routed in 96x96 cells with "
             f"hard borders (the runtime cross-fades 2 px more), simulation bit-exact with the exported graphs; "
             f"CPU: {cpu_model()}, {os.cpu_count()} cores. INT8-vs-FP32: Y-PSNR of the rounded outputs; cast: mean "
             "INT8 - FP32 per channel (levels); route step: 95th percentile over the cells where two routes meet "
             "of the largest per-channel difference of their casts (bound: 2 levels); seam: mean step across cell "
             "borders / across lines inside cells (1.0: no seam). PSNR vs HR: Y, crop = scale, INT8 (whole image, its "
             "image-wise factor) / our FP32 model; the paper's EDSR-baseline x4 FP32 is 28.58 on Set14, its EDSR "
             "x2 33.57 (docs above), CARN-M's x2 33.26; a GAN model is not made for PSNR against HR, so compare its "
             "INT8 with its FP32 output. Self-check: what calibration said on its own images "
             "(fidelity.self_check). Calib. s: the artifact's seconds at the torch threads calibration found free "
             "(runtime/cpu.py free_cores).", "",
             "| model | bits | INT8 vs FP32 Y-PSNR | cast R / G / B | route steps | seam border / inside (ratio) "
             "| retired variants | PSNR vs HR (INT8 / FP32) | self-check | calib. s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    defaults = {(r["checkpoint"], r["bits"]): r for r in rows if not r.get("changes")}
    for key in [(name, bits) for name in MODELS for bits in BITS if (name, bits) in defaults]:
        r = defaults[key]
        lines.append(f"| {MODELS[r['checkpoint']][0]} | W{r['bits']}A{r['bits']} | {_figures(r)} | "
                     f"{r['psnr_hr']:.2f} / {fp32[r['checkpoint']]:.2f} | "
                     f"{'; '.join(r['self_check_warnings']) or 'passed'} | "
                     f"{r['seconds']:.0f} ({r['threads']} thr.) |")
    lines += ["", "Each default against what it was chosen over (the same measurement, one setting changed):", "",
              "| model | bits | setting | INT8 vs FP32 Y-PSNR | cast R / G / B | route steps | seam border / inside "
              "(ratio) | retired variants | PSNR vs HR |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, bits in dict.fromkeys((name, bits) for _, name, bits, _ in ALTERNATIVES):
        compared = [("defaults", defaults.get((name, bits)))] + [
            (label, next((r for r in rows if (r["checkpoint"], r["bits"], r.get("changes")) == (name, bits, changes)),
                         None)) for label, n, b, changes in ALTERNATIVES if (n, b) == (name, bits)]
        lines += [f"| {MODELS[name][0]} | W{bits}A{bits} | {setting} | {_figures(r)} | {r['psnr_hr']:.2f} |"
                  for setting, r in compared if r is not None]
    return "\n".join(lines) + "\n"


def _figures(r: dict) -> str:
    """The fidelity columns of a row: INT8-vs-FP32 PSNR, cast, route steps, seam, retired variants."""
    f = r["set14"]
    seam = f["seam"]
    return (f"{f['psnr_y']:.2f} | {' / '.join(f'{v:+.2f}' for v in f['cast_rgb'])} | "
            f"{', '.join(f'{_pair(k)}: {v:.2f}' for k, v in f['route_steps'].items()) or '-'} | "
            f"{seam['border']} / {seam['inside']} ({seam['ratio']}) | "
            f"{', '.join(f'{v:+d}' for v in r['retired']) or 'none'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m adabm_deploy.fidelity_study", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=Path("../shared/weights"))
    p.add_argument("--calib-dir", type=Path, default=Path("../shared/data/train/BSD200"))
    p.add_argument("--bench", type=Path, default=Path("../shared/data/benchmark/Set14"))
    p.add_argument("--work", type=Path, default=Path("out/fidelity"), help="rows kept here as they finish")
    p.add_argument("-o", "--output", type=Path, default=Path("docs/results.md"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    store = args.work / "fidelity.jsonl"
    rows = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    runs = [(name, bits, {}) for name in MODELS for bits in BITS] + \
        [(name, bits, changes) for _, name, bits, changes in ALTERNATIVES]
    for name, bits, changes in runs:
        if any((r["checkpoint"], r["bits"], r.get("changes", {})) == (name, bits, changes) for r in rows):
            continue
        row = measure_row(args.weights / name, bits, args.calib_dir, args.bench, changes)
        rows.append(row)
        with open(store, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name} W{bits}A{bits} {changes or 'defaults'}: {row['set14']['psnr_y']} dB against FP32", flush=True)
    fp32 = {name: fp32_psnr(args.weights / name, args.bench) for name in {r["checkpoint"] for r in rows}}
    document = args.output.read_text() if args.output.exists() else ""
    write_text(args.output, replace_section(document, "fidelity", render(rows, fp32),
                                            "python -m adabm_deploy.fidelity_study"))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
