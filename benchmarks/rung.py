"""`python -m benchmarks.rung -o docs/rung.md`: what the cheap rung buys and costs.

1. Candidates for the easiest cells, measured per cell on Set14, B100 and the 4K sky frame, for the cells
   below AdaBM's lower image-to-bit threshold (the rung's candidates): Y-PSNR against HR of the bundled INT8
   network (each cell at its factor), of bicubic (the rung), of the network cut to the first half of its
   residual blocks (an INT8 graph exported from the same calibration), and of a flat fill (only exact for a
   constant cell: "skip constant cells"); and the time one 96x96 window takes on each.
2. End to end: runtime.upscale's routed path with the rung at the thresholds that budgets of 0 (off: today's
   output), 0.05, 0.1 (the default) and 0.2 dB give on the calibration images, on the same inputs; speed-up
   over the all-network path, Y-PSNR change against HR, share of cells on the rung.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort
import torch

from adabm_deploy import artifact, rung
from adabm_deploy.data import calibration_images, open_benchmark
from adabm_deploy.metrics import psnr, rgb_to_y, to_uint8
from adabm_deploy.models import load_network
from adabm_deploy.network.graph import Graph
from adabm_deploy.quant import QuantGraph
from adabm_deploy.rung_calibration import calibrate_rung
from benchmarks.workloads import SHARED, sky_frame
from export.qdq import build_model
from runtime import manifest
from runtime.api import DEFAULT_MODEL, DEFAULT_OVERLAP
from runtime.atomic import write_text
from runtime.cells import cell_bounds
from runtime.command import run_cli
from runtime.complexity import gradient_density
from runtime.cpu import cpu_model
from runtime.engines.onnxruntime import OnnxRuntimeEngine, session_options
from runtime.pipeline import Upscaler
from runtime.routing import CHEAP

BUDGETS = (0.0, 0.05, 0.1, 0.2)


def cut_blocks(graph: Graph, keep: int) -> Graph:
    """The graph with every feature block after the first `keep` bypassed: a residual block whose output is
    an add of its body and its input becomes its input (what a shallower network of the same kind computes)."""
    cut = copy.deepcopy(graph)
    for name in graph.features[keep:]:
        a, b = cut.nodes[name].inputs
        skip = a if a in _ancestors(cut, b) else b  # the block's input: the body is computed from it
        for n in cut.nodes.values():
            n.inputs = tuple(skip if i == name else i for i in n.inputs)
        del cut.nodes[name]
    used = {cut.output}
    for n in reversed(list(cut.nodes.values())):
        if n.name in used:
            used |= set(n.inputs)
    cut.nodes = {k: v for k, v in cut.nodes.items() if k in used}
    cut.features = graph.features[:keep]
    return cut


def _ancestors(graph: Graph, name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in seen and n in graph.nodes:
            seen.add(n)
            todo += list(graph.nodes[n].inputs)
    return seen


def load_bundled():
    model = manifest.load(DEFAULT_MODEL)
    network = load_network(SHARED / "weights" / model.raw["checkpoint"]["file"])
    return model, network, artifact.load(model.root / "calibration.json", network)


def inputs() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    bench = SHARED / "data" / "benchmark"
    out = {s: [open_benchmark(bench / s, 4).load(p) for p in open_benchmark(bench / s, 4).pairs]
           for s in ("Set14", "B100")}
    out["4K sky frame"] = [sky_frame()]
    return out


def window_seconds(run, x: np.ndarray, rounds: int = 7) -> float:
    """Median time of one 96x96 window at one thread: a compiled graph (batch -> output), or the rung when run
    is None."""
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        if run is None:
            rung.upscale(x[0].transpose(1, 2, 0), 4)
        else:
            run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def candidates(qm: QuantGraph, engine: OnnxRuntimeEngine, sets) -> list[str]:
    half = len(qm.graph.features) // 2
    cut = QuantGraph(cut_blocks(qm.graph, half), qm.w_bits, qm.a_bits, qm.full_quant, qm.per_channel)
    for name, q in cut.quantizer.items():
        q.set_bounds(*qm.quantizer[name].bound_values())
    for c in cut.qconvs():
        c.wq.clip.data.copy_(qm.conv[c.name].wq.clip.data)
    cut.image2bit.load_state_dict(qm.image2bit.state_dict())
    cut.layer2bit.m.data.copy_(qm.layer2bit.m.data[:len(cut.layer2bit.m)])
    cut_session = ort.InferenceSession(build_model(cut, 0).SerializeToString(), session_options(1),
                                       providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 96)).astype(np.float32)
    seconds = {"network (INT8, variant 0)": window_seconds(engine.compiled(0, 1), x),
               f"first {half} blocks (INT8)": window_seconds(lambda b: cut_session.run(None, {"lr": b}), x),
               "bicubic (the rung)": window_seconds(None, x)}
    lower = qm.image2bit.thresholds()[0]
    errors: dict[str, list[float]] = {k: [] for k in ("network", "cut", "bicubic", "flat")}
    flat_cells = n_cells = 0
    for images in sets.values():
        for lr, hr in images:
            for y0, y1 in cell_bounds(lr.shape[0], 96):
                for x0, x1 in cell_bounds(lr.shape[1], 96):
                    cell = lr[y0:y1, x0:x1]
                    c = gradient_density(cell.astype(np.float32))
                    n_cells += 1
                    if c >= lower:
                        continue
                    flat_cells += c == 0
                    win = np.ascontiguousarray(cell.transpose(2, 0, 1)[None].astype(np.float32))
                    ref = hr[y0 * 4:y1 * 4, x0 * 4:x1 * 4]
                    outs = {"network": engine.run(-1, win)[0], "cut": cut_session.run(None, {"lr": win})[0][0],
                            "bicubic": rung.upscale(cell.astype(np.float32), 4).transpose(2, 0, 1),
                            "flat": np.broadcast_to(cell.reshape(-1, 3).mean(0)[:, None, None], (3, *ref.shape[:2]))}
                    for k, v in outs.items():
                        errors[k].append(float(((rgb_to_y(to_uint8(v.transpose(1, 2, 0))) - rgb_to_y(ref)) ** 2).mean()))
    order = np.argsort(errors["bicubic"])
    lines = [f"Candidates for the cells below the lower image-to-bit threshold ({lower:.1f}): "
             f"{len(order)} of {n_cells} cells of Set14, B100 and the 4K sky frame ({flat_cells} of them constant). "
             "Y-PSNR of the cells against HR (no crop), over all candidates and over the flattest half "
             "(by bicubic error); time of one 96x96 window, one thread, median of 7.", "",
             "| route | all candidates | flattest half | window (ms) |", "| --- | --- | --- | --- |"]
    labels = {"network": "network (INT8, variant 0)", "cut": f"first {half} blocks (INT8)",
              "bicubic": "bicubic (the rung)", "flat": "flat fill (exact for constant cells only)"}
    for key, label in labels.items():
        e = np.array(errors[key])
        p_all = 10 * np.log10(255 ** 2 / max(e.mean(), 1e-10))
        p_half = 10 * np.log10(255 ** 2 / max(e[order[: len(order) // 2]].mean(), 1e-10))
        ms = f"{1000 * seconds[label]:.1f}" if label in seconds else f"{1000 * seconds['bicubic (the rung)']:.1f}"
        lines.append(f"| {label} | {p_all:.2f} | {p_half:.2f} | {ms} |")
    return lines


def end_to_end(model, sets, thresholds: dict[float, float | None], threads: list[int]) -> list[str]:
    """Each round times every budget once, one after the other, so the speed-up (median over rounds of the
    zero-budget time over the budget's) is not the drift of a busy machine between rows."""
    lines = ["", "End to end (`runtime.upscale`'s routed path, whole inputs, patch 96, overlap 2; Y-PSNR against "
             "HR, crop 4, mean over images; seconds: the inputs' total, median over rounds, 3 rounds for the sets "
             "and 5 for the frame, the budgets interleaved within each round; speed-up: median over rounds of the "
             "zero-budget time over this budget's; with no cell on the rung the output is the zero-budget one "
             "exactly and the speed-up is noise):", "",
             "| input | threads | budget (dB) | threshold | cells on the rung | seconds | speed-up | Y-PSNR | change |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, images in sets.items():
        for t in threads:
            ups = {b: Upscaler(OnnxRuntimeEngine(dataclasses.replace(model, cheap_threshold=th), 1),
                               model.patch_size, DEFAULT_OVERLAP, workers=t) for b, th in thresholds.items()}
            times: dict[float, list[float]] = {b: [] for b in thresholds}
            outs: dict[float, list] = {}
            for _ in range(5 if name == "4K sky frame" else 3):
                for budget, up in ups.items():
                    start = time.perf_counter()
                    outs[budget] = [up.upscale_rgb(lr, np.uint8) for lr, _ in images]
                    times[budget].append(time.perf_counter() - start)
            scores = {b: float(np.mean([psnr(sr, hr, 4) for (sr, _), (_, hr) in zip(outs[b], images)]))
                      for b in thresholds}
            for budget, threshold in thresholds.items():
                score = scores[budget]
                cheap = sum(r.factors.count(CHEAP) for _, r in outs[budget])
                total = sum(len(r.factors) for _, r in outs[budget])
                speedup = statistics.median(a / b for a, b in zip(times[0.0], times[budget]))
                lines.append(f"| {name} | {t} | {budget} | {'-' if threshold is None else f'{threshold:.2f}'} | "
                             f"{cheap} / {total} | {statistics.median(times[budget]):.2f} | {speedup:.2f}x | "
                             f"{score:.3f} | {score - scores[0.0]:+.4f} |")
                print(lines[-1], file=sys.stderr, flush=True)
            for up in ups.values():
                up.close()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rung", description=__doc__.splitlines()[0])
    p.add_argument("--calib-dir", type=Path, default=SHARED / "data" / "train" / "BSD200")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("-o", "--output", type=Path, help="also write the tables here (Markdown)")
    p.add_argument("--sets", nargs="+", default=["Set14", "B100", "4K sky frame"])
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    model, network, qm = load_bundled()
    settings = artifact.read(model.root / "calibration.json")["settings"]
    images = calibration_images(args.calib_dir, settings["n_images"], model.scale, settings["seed"])
    thresholds = {b: calibrate_rung(qm, images, b, 96)["threshold"] for b in BUDGETS}
    sets = {k: v for k, v in inputs().items() if k in args.sets}
    lines = [f"CPU {cpu_model()}, onnxruntime {ort.__version__}, bundled model (EDSR-baseline x4, W8A8 AdaBM)."
             " Rung thresholds from budgets on the 100 calibration images (BSD200): "
             + ", ".join(f"{b} dB -> {'off' if t is None else f'{t:.2f}'}" for b, t in thresholds.items()) + ".", ""]
    lines += candidates(qm, OnnxRuntimeEngine(model, 1), sets)
    lines += end_to_end(model, sets, thresholds, args.threads)
    text = "# The cheap rung (regenerated by `python -m benchmarks.rung -o docs/rung.md`)\n\n" + "\n".join(lines) + "\n"
    if args.output:
        write_text(args.output, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
