"""The cheap rung's threshold, set under an accuracy budget without ground truth.

On the calibration images the FP32 network's own output is the reference. Each image is cut into the cells
the runtime routes (runtime.cells); every cell gets its complexity, and the squared Y error against the
reference of two outputs: the quantized network routed as the runtime routes it (each cell at its image-wise
factor), and the cheap rung (runtime.rung). The threshold is the largest cell complexity at which
routing every cell at or below it to the rung lowers the mean Y-PSNR against the reference by at most the
budget, compared with routing every cell to the network. A budget of 0 turns the rung off, so the output is
exactly the all-network one.

Each cell must also fit the rung on its own (worst case over cells, not a mean): the rung's output there is
within fidelity.VISIBLE_PSNR_DB (40 dB) Y-PSNR of the FP32 output, and its colour cast differs from that of the
network route the cell would take by at most fidelity.SEAM_BOUND (2 levels per channel), so a model that paints
flat regions otherwise than bicubic (a GAN) keeps the rung off, and a cheap cell never shows a seam. The
threshold stays below the flattest cell that does not fit.

The rung is for the easiest cells: candidates are those below AdaBM's own lower image-to-bit threshold (the
cells it already gives fewer bits; for a non-adaptive model, or one whose variant -1 was retired, the 10th
percentile of cell complexity). An image without candidates loses nothing at any threshold, so only images with
one are simulated.

Against the FP32 output this is a strict measure: the quantized network is within a few LSB of it, so any
bicubic texture counts in full. Measured on B100, thresholds that cost 0.21 / 0.70 dB by this measure cost
0.015 / 0.042 dB against HR; the default budget keeps to the flattest cells (docs/rung.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime import rung
from runtime.cells import cell_bounds
from runtime.complexity import gradient_density

from .fidelity import CHEAP, SEAM_BOUND, VISIBLE_PSNR_DB, cells_of, factor_of, route_outputs, step
from .metrics import rgb_to_y, to_uint8
from .quant.qgraph import QuantGraph

MIN_MSE = 1e-6  # a reference matched exactly: keep the ratio of MSEs finite


@dataclass
class ImageCells:
    complexity: np.ndarray  # per cell
    se_network: np.ndarray  # per cell: sum of squared Y errors against the FP32 output
    se_rung: np.ndarray
    pixels: int  # HR pixels of the image
    fits: np.ndarray  # per cell: the rung would not show there (fidelity: its noise and its step to the network)


def _y(image: np.ndarray) -> np.ndarray:
    return rgb_to_y(to_uint8(image))


def _cells(lr: np.ndarray, patch: int) -> list[tuple[int, int, int, int]]:
    return [(y0, y1, x0, x1) for y0, y1 in cell_bounds(lr.shape[0], patch) for x0, x1 in cell_bounds(lr.shape[1], patch)]


def _complexities(lr: np.ndarray, patch: int) -> np.ndarray:
    return np.array([gradient_density(lr[y0:y1, x0:x1].astype(np.float32)) for y0, y1, x0, x1 in _cells(lr, patch)])


def candidate_limit(qm: QuantGraph, complexities: list[np.ndarray]) -> float:
    """Cells below this complexity may go to the rung."""
    if qm.adaptive_bits and qm.image2bit.thresholds()[0] > 0:  # 0: variant -1 retired (fidelity.fit_routes)
        return qm.image2bit.thresholds()[0]
    return float(np.percentile(np.concatenate(complexities), 10))


def measure(qm: QuantGraph, images: list[np.ndarray], patch: int) -> list[ImageCells]:
    """Per-cell complexity and errors of the network and the rung, and whether the rung fits the cell, for the
    images (uint8 LR HxWx3) that have a candidate cell; the others cannot lose anything."""
    scale = qm.scale
    all_complexities = [_complexities(lr, patch) for lr in images]
    limit = candidate_limit(qm, all_complexities)
    out = []
    for lr, complexity in zip(images, all_complexities):
        if not (complexity < limit).any():
            continue
        routes = {factor_of(qm, c) for c in complexity}  # the variants this image's cells take, no more
        ref, outs = route_outputs(qm, lr, routes)
        cells = cells_of(qm, lr, patch, ref, outs)
        ref_y, cheap_y = _y(ref), _y(outs[CHEAP])
        network = {f: _y(o) for f, o in outs.items() if f != CHEAP}
        se_net, se_rung = [], []
        for (y0, y1, x0, x1), cell in zip(_cells(lr, patch), cells):
            region = np.s_[y0 * scale:y1 * scale, x0 * scale:x1 * scale]
            se_net.append(float(((network[cell.route][region] - ref_y[region]) ** 2).sum()))
            se_rung.append(float(((cheap_y[region] - ref_y[region]) ** 2).sum()))
        fits = np.array([c.psnr[CHEAP] >= VISIBLE_PSNR_DB and step(c, CHEAP, c.route) <= SEAM_BOUND for c in cells])
        out.append(ImageCells(np.where(complexity < limit, complexity, np.inf), np.array(se_net), np.array(se_rung),
                              ref_y.size, fits))
    return out


def drop_db(images: list[ImageCells], threshold: float | None, n_images: int | None = None) -> float:
    """Mean over n_images (default: those measured) of the Y-PSNR lost against the reference by routing cells
    <= threshold to the rung; the images not measured lose nothing."""
    losses = []
    for im in images:
        cheap = im.complexity <= threshold if threshold is not None else np.zeros(len(im.complexity), bool)
        base = max(im.se_network.sum() / im.pixels, MIN_MSE)
        mixed = max((im.se_rung[cheap].sum() + im.se_network[~cheap].sum()) / im.pixels, MIN_MSE)
        losses.append(10 * np.log10(mixed / base))
    return float(np.sum(losses) / (n_images or max(len(images), 1)))


def choose_threshold(images: list[ImageCells], budget_db: float, n_images: int) -> float | None:
    """The largest candidate complexity below every cell the rung does not fit (worst case over cells) whose
    routing drop stays within the budget (mean over images); None for a zero budget or when not even the
    flattest cell fits."""
    if budget_db <= 0 or not images:
        return None
    complexity = np.concatenate([im.complexity for im in images])
    fits = np.concatenate([im.fits for im in images])
    # worst case over cells: no threshold reaches past the flattest cell the rung does not fit
    ceiling = complexity[~fits].min() if (~fits).any() else np.inf
    candidates = np.unique(complexity[np.isfinite(complexity) & (complexity < ceiling)])
    fitting = [float(c) for c in candidates if drop_db(images, float(c), n_images) <= budget_db]
    return max(fitting) if fitting else None


def calibrate_rung(qm: QuantGraph, images: list[np.ndarray], budget_db: float, patch: int) -> dict:
    """The artifact's `cheap_rung` entry."""
    cells = measure(qm, images, patch) if budget_db > 0 else []
    threshold = choose_threshold(cells, budget_db, len(images))
    total = sum(len(_cells(lr, patch)) for lr in images)
    cheap = 0 if threshold is None else sum(int((im.complexity <= threshold).sum()) for im in cells)
    return {"kind": rung.KIND, "threshold": threshold, "budget_db": budget_db, "patch": patch,
            "calibration_drop_db": round(drop_db(cells, threshold, len(images)), 4), "calibration_cells": total,
            "calibration_cheap_cells": cheap}
