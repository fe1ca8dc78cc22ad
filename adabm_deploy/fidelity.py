"""How far the quantized network's output is from its own FP32 output, measured without ground truth.

A user sees INT8 that does not look like FP32 in three ways, each measured here on LR images against the FP32
network's output (both rounded to uint8, as saved): noise (Y-PSNR), a colour cast (the mean difference per RGB
channel, in levels), and seams, where neighbouring cells run different routes (INT8 variants -1 / 0 / +1 or
the cheap bicubic rung) whose casts differ. A route's cast on a cell is the mean difference over that cell; the
step between two routes on one cell is the largest per-channel difference of their casts - what a border
between them shows on that content. Over the cells where two routes can meet (cells that run one of them), the
95th percentile of the step is held to SEAM_BOUND: calibration corrects each variant's mean cast and retires a
variant that still steps further (fit_routes), keeps the cheap rung off cells where its cast or noise would show
(rung_calibration.py), and reports all of it (self_check).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from runtime import rung
from runtime.cells import cell_bounds
from runtime.complexity import gradient_density

from .metrics import psnr, to_uint8
from .network.graph import run as run_graph
from .quant.qgraph import QuantGraph

FACTORS = (-1, 0, 1)
CHEAP = "cheap"
# The self-check's thresholds for "visibly off": below 40 dB Y-PSNR against FP32 the difference shows as
# mottling in flat areas (realesr-animevideov3 W8A8 per-tensor: 39.1 dB, std 3-4 levels in sky); a cast of
# a level or more per channel over a set, or a step of more than 2 levels between routes on one cell, shows
# as a colour shift or a cell-border seam on flat content.
VISIBLE_PSNR_DB, VISIBLE_CAST, SEAM_BOUND = 40.0, 1.0, 2.0
COLLAPSED_CLIP = 0.1  # a weight clip that ends below 10% of where it started
# The largest correction a variant may carry (levels): a mean cast beyond it is a calibration that went wrong,
# which the self-check reports, not something to paint over.
MAX_CORRECTION = 8.0
# Route steps are held to SEAM_BOUND on this share of the cells where two routes meet (the rest: content where
# the FP32 output itself changes within the cell, e.g. edges, where a level step does not show).
SEAM_PERCENTILE = 95
RETIRED_UPPER = 1e6  # an upper I2B threshold no gradient density reaches (0..255 pixels): variant +1 retired


def _tensor(lr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[None]


def _image(y: torch.Tensor) -> np.ndarray:
    return y[0].permute(1, 2, 0).numpy()


def stand_in(qm: QuantGraph, factor: int) -> torch.Tensor:
    """A complexity that the image-to-bit mapping sends to `factor`."""
    lower, upper = qm.image2bit.thresholds()
    return torch.tensor([{-1: lower - 1.0, 0: (lower + upper) / 2, 1: upper + 1.0}[factor]])


def factor_of(qm: QuantGraph, complexity: float) -> int:
    if not qm.adaptive_bits:
        return 0
    lower, upper = qm.image2bit.thresholds()
    return -1 if complexity < lower else 1 if complexity > upper else 0


def route_outputs(qm: QuantGraph, lr: np.ndarray, factors=None) -> tuple[np.ndarray, dict]:
    """(FP32 output, {route: output}) for an LR image (uint8 HxWx3), each rounded to uint8 as saved: the INT8
    variants (`factors`, default every one the model has) over the whole image, and the cheap rung."""
    x = _tensor(lr)
    every = FACTORS if qm.adaptive_bits else (0,)
    with torch.no_grad():
        ref = to_uint8(_image(run_graph(qm.graph, x)))
        outs = {f: to_uint8(_image(qm(x, stand_in(qm, f)))) for f in every if factors is None or f in factors}
    outs[CHEAP] = to_uint8(rung.upscale(lr.astype(np.float32), qm.scale))
    return ref, outs


@dataclass
class Cell:
    complexity: float
    pixels: int  # HR pixels
    route: int  # the INT8 variant the runtime gives it (before the cheap rung)
    cast: dict  # route -> per-channel mean difference against FP32 (levels)
    psnr: dict  # route -> Y-PSNR against FP32 (dB)


def cells_of(qm: QuantGraph, lr: np.ndarray, patch: int, ref: np.ndarray, outs: dict) -> list[Cell]:
    s, found = qm.scale, []
    for y0, y1 in cell_bounds(lr.shape[0], patch):
        for x0, x1 in cell_bounds(lr.shape[1], patch):
            c = gradient_density(lr[y0:y1, x0:x1].astype(np.float32))
            region = np.s_[y0 * s:y1 * s, x0 * s:x1 * s]
            diff = {r: (o[region].astype(np.float64) - ref[region]).reshape(-1, 3) for r, o in outs.items()}
            found.append(Cell(c, (y1 - y0) * (x1 - x0) * s * s, factor_of(qm, c),
                              {r: d.mean(0) for r, d in diff.items()},
                              {r: psnr(o[region], ref[region]) for r, o in outs.items()}))
    return found


def step(cell: Cell, a, b) -> float:
    """Largest per-channel difference of two routes' casts on one cell (levels)."""
    return float(np.abs(cell.cast[a] - cell.cast[b]).max())


def meets(cell: Cell, a, b, cheap: float | None) -> bool:
    """Whether routes a and b can meet on this cell: it runs one of them (the cheap rung: it is cheap), so a
    neighbour running the other shows their step here."""
    if a == CHEAP:
        return rung.is_cheap(cell.complexity, cheap)
    return cell.route in (a, b)


def routed(qm: QuantGraph, lr: np.ndarray, patch: int, outs: dict, cheap: float | None) -> np.ndarray:
    """The runtime's routing with hard cell borders (no cross-fade): the worst case for seams."""
    s = qm.scale
    out = np.empty_like(outs[next(iter(outs))])
    for y0, y1 in cell_bounds(lr.shape[0], patch):
        for x0, x1 in cell_bounds(lr.shape[1], patch):
            c = gradient_density(lr[y0:y1, x0:x1].astype(np.float32))
            r = CHEAP if rung.is_cheap(c, cheap) else factor_of(qm, c)
            out[y0 * s:y1 * s, x0 * s:x1 * s] = outs[r][y0 * s:y1 * s, x0 * s:x1 * s]
    return out


def seam_score(err: np.ndarray, lr_shape: tuple[int, int], patch: int, scale: int) -> tuple[float, float]:
    """(step across cell borders, step across lines midway inside cells), levels: the mean over lines of the
    largest per-channel |mean error on one side - mean error on the other| in strips `scale` pixels wide. Their
    ratio is about 1 without seams."""
    def steps(lines_y, lines_x):
        w = scale
        out = [np.abs(err[y - w:y].mean((0, 1)) - err[y:y + w].mean((0, 1))).max() for y in lines_y]
        out += [np.abs(err[:, x - w:x].mean((0, 1)) - err[:, x:x + w].mean((0, 1))).max() for x in lines_x]
        return out
    ys = [b * scale for b, _ in cell_bounds(lr_shape[0], patch)[1:]]
    xs = [b * scale for b, _ in cell_bounds(lr_shape[1], patch)[1:]]
    mid_y = [(a + b) // 2 * scale for a, b in cell_bounds(lr_shape[0], patch) if b - a >= 4]
    mid_x = [(a + b) // 2 * scale for a, b in cell_bounds(lr_shape[1], patch) if b - a >= 4]
    border, inside = steps(ys, xs), steps(mid_y, mid_x)
    return (float(np.mean(border)) if border else float("nan")), (float(np.mean(inside)) if inside else float("nan"))


def measure(qm: QuantGraph, images: list[np.ndarray], patch: int, cheap: float | None = None) -> dict:
    """The fidelity figures of a calibrated model on LR images (uint8): routed as the runtime routes (cells of
    `patch`, the cheap rung at or below `cheap`), each variant forced, and the steps between routes."""
    psnrs, casts, worst, per_variant, all_cells, seams = [], [], 0, {f: ([], []) for f in FACTORS}, [], []
    for lr in images:
        ref, outs = route_outputs(qm, lr)
        out = routed(qm, lr, patch, outs, cheap)
        err = out.astype(np.float64) - ref
        psnrs.append(psnr(out, ref))
        casts.append(err.reshape(-1, 3).mean(0))
        worst = max(worst, int(np.abs(err).max()))
        for f in FACTORS:
            if f in outs:
                per_variant[f][0].append(psnr(outs[f], ref))
                per_variant[f][1].append((outs[f].astype(np.float64) - ref).reshape(-1, 3).mean(0))
        all_cells += cells_of(qm, lr, patch, ref, outs)
        seams.append(seam_score(err, lr.shape[:2], patch, qm.scale))
    used = {c.route for c in all_cells}  # a retired variant meets nothing
    pairs = [(a, b) for a, b in ((-1, 0), (0, 1)) if {a, b} <= used]
    if cheap is not None:
        pairs += [(CHEAP, f) for f in sorted({c.route for c in all_cells if rung.is_cheap(c.complexity, cheap)})]
    border, inside = ([s[k] for s in seams if np.isfinite(s[k])] for k in (0, 1))
    border, inside = (float(np.mean(v)) if v else None for v in (border, inside))
    return {
        "images": len(images), "psnr_y": round(float(np.mean(psnrs)), 2),
        "cast_rgb": np.round(np.mean(casts, 0), 2).tolist(), "max_abs": worst,
        "variants": {str(f): {"psnr_y": round(float(np.mean(p)), 2), "cast_rgb": np.round(np.mean(c, 0), 2).tolist()}
                     for f, (p, c) in per_variant.items() if p},
        "route_steps": {f"{a}|{b}": round(float(np.percentile(steps, SEAM_PERCENTILE)) if steps else 0.0, 2)
                        for a, b in pairs
                        for steps in [[step(c, a, b) for c in all_cells if meets(c, a, b, cheap)]]},
        "seam": {"border": None if border is None else round(border, 3),  # None: no image has two cells
                 "inside": None if inside is None else round(inside, 3),
                 "ratio": round(border / inside, 2) if border is not None and inside else None},
    }


def _sqnr(fp: torch.Tensor, q: torch.Tensor) -> float:
    noise = float(((q - fp) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10(max(float((fp ** 2).sum()), 1e-12) / noise))


def worst_layers(qm: QuantGraph, images: list[np.ndarray], count: int = 3) -> list[dict]:
    """The quantized convs that add the most error (at variant 0): SQNR of their input and output against the
    FP32 network's, and the drop between them, largest drops first."""
    fp_sum: dict[str, list] = {}
    for lr in images:
        x = _tensor(lr)
        fp, q = {}, {}
        with torch.no_grad():
            with qm.fp_mode():
                qm(x, taps=fp)
            qm(x, stand_in(qm, 0), taps=q)
        for conv in qm.qconvs():
            node = qm.graph.nodes[conv.name]
            fp_sum.setdefault(conv.name, []).append((_sqnr(fp[node.inputs[0]], q[node.inputs[0]]),
                                                     _sqnr(fp[conv.name], q[conv.name])))
    rows = [{"conv": name, "input_sqnr_db": round(float(np.mean([a for a, _ in v])), 1),
             "output_sqnr_db": round(float(np.mean([b for _, b in v])), 1),
             "weight_bits": qm.conv[name].wq.bits} for name, v in fp_sum.items()]
    for row in rows:
        row["drop_db"] = round(row["input_sqnr_db"] - row["output_sqnr_db"], 1) \
            if np.isfinite(row["input_sqnr_db"]) else None
    return sorted(rows, key=lambda r: -(r["drop_db"] if r["drop_db"] is not None else -np.inf))[:count]


def collapsed_clips(qm: QuantGraph, initial: dict[str, torch.Tensor]) -> list[dict]:
    """Weight clips that fine-tuning shrank below COLLAPSED_CLIP of their start, on average over a conv's
    channels (most of its weights then saturate; one per-channel clip may shrink far on its own, rightly)."""
    found = []
    for conv in qm.qconvs():
        ratio = float((conv.wq.clip.detach().abs() / initial[conv.name].abs().clamp_min(1e-12)).mean())
        if ratio < COLLAPSED_CLIP:
            found.append({"conv": conv.name, "bits": conv.wq.bits, "end_over_start": round(ratio, 4)})
    return found


def self_check(qm: QuantGraph, images: list[np.ndarray], patch: int, cheap: float | None,
               initial_clips: dict[str, torch.Tensor]) -> dict:
    """Calibration's check of its own result on (some of) its calibration images, no ground truth: the fidelity
    figures, the worst layers, collapsed clips, and a warning line for each figure past its threshold."""
    figures = measure(qm, images, patch, cheap)
    figures["worst_layers"] = worst_layers(qm, images[:4])
    figures["collapsed_clips"] = collapsed_clips(qm, initial_clips)
    warnings = []
    if figures["psnr_y"] < VISIBLE_PSNR_DB:
        warnings.append(f"INT8 output is {figures['psnr_y']:.1f} dB Y-PSNR from FP32 (below {VISIBLE_PSNR_DB:g} dB "
                        "the difference shows)")
    if max(abs(v) for v in figures["cast_rgb"]) >= VISIBLE_CAST:
        warnings.append(f"INT8 output has a colour cast of {figures['cast_rgb']} levels (R, G, B) against FP32")
    over = {k: v for k, v in figures["route_steps"].items() if v > SEAM_BOUND}
    if over:
        warnings.append(f"steps between routes {over} exceed {SEAM_BOUND:g} levels: cell borders may show")
    if figures["collapsed_clips"]:
        names = ", ".join(f"{c['conv']} ({c['end_over_start']:.1%})" for c in figures["collapsed_clips"][:3])
        warnings.append(f"{len(figures['collapsed_clips'])} weight clips collapsed below {COLLAPSED_CLIP:.0%} of their "
                        f"start: {names}")
    figures["warnings"] = warnings
    return figures


def visibly_off(warnings: list[str]) -> str:
    """The one line calibration and export print for a self-check that found the result visibly off."""
    return "the INT8 model is visibly off its FP32 output on the calibration images: " + "; ".join(warnings)




def fit_routes(qm: QuantGraph, images: list[np.ndarray], patch: int) -> dict:
    """Set each variant's cast correction and retire a variant whose step to variant 0 stays above SEAM_BOUND.

    The correction is, per image-wise factor, the offset per colour that cancels the variant's mean cast against
    FP32 on the cells the runtime routes to it (on all cells where none is). A variant whose corrected cast
    still differs from variant 0's by more than SEAM_BOUND on SEAM_PERCENTILE % of the cells where they meet
    is retired (its cells run variant 0; the I2B threshold moves past every complexity), so neighbouring
    routes never show a step above the bound on calibration content. Returns what was done, for the report."""
    with torch.no_grad():
        qm.correction.zero_()
    cells = []
    for lr in images:
        ref, outs = route_outputs(qm, lr)
        cells += cells_of(qm, lr, patch, ref, outs)
    variants = [f for f in FACTORS if f in cells[0].cast] if cells else []
    correction = torch.zeros(3, qm.graph.n_colors)
    for f in variants:
        mine = [c for c in cells if c.route == f] or cells
        weights = np.array([c.pixels for c in mine], np.float64)
        cast = np.average([c.cast[f] for c in mine], axis=0, weights=weights)
        correction[f + 1] = torch.from_numpy(np.clip(-cast, -MAX_CORRECTION, MAX_CORRECTION)).float()
    with torch.no_grad():
        qm.correction.copy_(correction)
    done = {"cells": len(cells), "correction": {str(f): np.round(correction[f + 1].numpy(), 2).tolist()
                                                 for f in variants}, "steps": {}, "retired": []}
    for f in (v for v in variants if v != 0):
        meet = [c for c in cells if c.route in (f, 0)]
        steps = [float(np.abs(c.cast[f] + correction[f + 1].numpy() - c.cast[0] - correction[1].numpy()).max())
                 for c in meet]
        worst = float(np.percentile(steps, SEAM_PERCENTILE)) if steps else 0.0
        done["steps"][f"{f}|0"] = round(worst, 2)
        if worst > SEAM_BOUND:
            done["retired"].append(f)
            with torch.no_grad():
                if f == -1:
                    qm.image2bit.lower.fill_(0.0)  # no gradient density is below 0
                else:
                    qm.image2bit.upper.fill_(RETIRED_UPPER)
    return done
