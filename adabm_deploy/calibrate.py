"""`python -m adabm_deploy.calibrate`: AdaBM (Algorithm 1) and the MinMax / Percentile baselines.

Initialisation: FP statistics over the calibration patches (EMA min/max, per-sample std, complexity), I2B
thresholds at the p_I percentiles of complexity, layer factors from the p_L percentiles of sensitivity,
weight clips by OMSE, bit-aware clipping of the adaptive activation ranges. Fine-tuning: only quantization
parameters move; stages cycle weight clip -> activation bounds -> bit mapping per epoch, each with its own
Adam; loss = L1(FP, Q) + lambda_skt * SKT (+ lambda_bit * max(mean bits - b_base, 0) in bit-mapping epochs).
Only LR images are used: no ground truth.
"""
from __future__ import annotations

from .extras import require  # first: a runtime-only install gets the install line, not a traceback

require(__name__, "python -m adabm_deploy.calibrate")

import argparse
import dataclasses
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from tqdm import tqdm

from runtime.atomic import check_json_target
from runtime.command import run_cli
from runtime.complexity import gradient_density
from runtime.cpu import free_cores
from runtime.errors import UserError

from . import artifact
from .data import calibration_images
from .fidelity import fit_routes, self_check, visibly_off
from .models import Network, load_network
from .quant.qgraph import QuantGraph
from .quant.quantizers import bit_aware_clip
from .rung_calibration import calibrate_rung

METHODS = ("adabm", "minmax", "percentile")
# Of the calibration images, the self-check runs every route on the first 8 (a quarter of a smaller set), and the
# route fitting measures each variant's colour cast and step on the next 16 (half of a smaller set): about 20 s
# and 40 s for EDSR x4 on 2 cores.
SELF_CHECK_IMAGES, ROUTE_IMAGES = 8, 16
MIN_PATCH = 16  # LR pixels: below this a patch is mostly zero padding to a 3x3 conv stack
STAGES = ("weight_clip", "act_bounds", "bit_mapping")


@dataclass
class Settings:
    """Defaults are the paper's (AdaBM sec. 4.1 and the authors' code); `cpu` preset shortens fine-tuning."""
    w_bits: int = 4
    a_bits: int = 4
    full_quant: bool = False
    method: str = "adabm"
    finetune: bool = True
    # per-output-channel weight clips: ONNX Runtime and OpenVINO run them at the same speed as per-tensor ones,
    # and on trained models they are closer to FP32 (Set14, INT8 vs FP32 Y-PSNR, cpu preset, full quantization:
    # realesr-animevideov3 W8A8 41.02 dB against 39.21, W4A4 28.70 against 27.64; docs/results.md). The paper
    # quantized per tensor; its protocol (python -m adabm_deploy.experiments) still does.
    per_channel: bool = True
    n_images: int = 100
    patch: int = 96
    batch: int = 2
    epochs: int = 10
    iters_per_epoch: int = 50
    stats_batch: int = 16
    p_i: float = 10.0
    p_l: float = 30.0
    lambda_skt: float = 10.0
    lambda_bit: float = 50.0
    bit_target: float | None = None  # b_tar of the bit loss; None = b_base (the paper)
    lr_weight_clip: float = 0.01
    # Adam moves every parameter by about its learning rate per step, whatever the parameter's size: 0.01 is a 6%
    # step on the paper's EDSR-baseline clips (median 0.16) but 7-50% on realesr-animevideov3's (0.02-0.15),
    # and per-channel clips span more still. With clip_step set, the clips are learnt as log(clip) at that rate:
    # a relative step of about clip_step for every clip of every network (0.06: the paper's step on its own
    # network). None: the paper's absolute lr_weight_clip.
    clip_step: float | None = 0.06
    lr_act_bounds: float = 0.01
    lr_layer_factors: float = 0.01
    lr_i2b: float = 0.1
    lr_decay: float = 0.9
    seed: int = 0
    preset: str = "paper"
    budget_db: float = 0.1  # the cheap rung's accuracy budget (rung_calibration.py); 0 turns it off
    rung_patch: int = 96  # the runtime's routing cell


PRESETS = {
    "paper": {},
    # 2-core CPU in minutes: smaller patches and fewer iterations; accuracy reported in docs/results.md.
    "cpu": {"patch": 48, "iters_per_epoch": 20},
}


class PatchSampler:
    """Random LR crops with flips / transposes, each with its gradient-density complexity."""

    def __init__(self, images: list[np.ndarray], patch: int, seed: int):
        self.images = images
        self.patch = min(patch, *(min(im.shape[:2]) for im in images))
        self.rng = np.random.default_rng(seed)

    def crop(self, img: np.ndarray, augment: bool) -> np.ndarray:
        h, w = img.shape[:2]
        y, x = self.rng.integers(0, h - self.patch + 1), self.rng.integers(0, w - self.patch + 1)
        p = img[y:y + self.patch, x:x + self.patch]
        if augment:
            if self.rng.random() < 0.5:
                p = p[:, ::-1]
            if self.rng.random() < 0.5:
                p = p[::-1]
            if self.rng.random() < 0.5:
                p = p.transpose(1, 0, 2)
        return np.ascontiguousarray(p)

    @staticmethod
    def to_batch(patches: list[np.ndarray], device: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.stack(patches).transpose(0, 3, 1, 2).astype(np.float32)).to(device)
        c = torch.tensor([gradient_density(p) for p in patches], dtype=torch.float32, device=device)
        return x, c

    def epoch_batches(self, batch: int, device: str):
        """One un-augmented crop per image, in batches (the statistics pass)."""
        for i in range(0, len(self.images), batch):
            yield self.to_batch([self.crop(im, False) for im in self.images[i:i + batch]], device)

    def random_batch(self, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        picks = self.rng.integers(0, len(self.images), batch)
        return self.to_batch([self.crop(self.images[i], True) for i in picks], device)


def skt_loss(fp_feats: list[torch.Tensor], q_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean over blocks and samples of || F_P/||F_P|| - F_Q/||F_Q|| ||_2 (paper eq. 10)."""
    terms = [(F.normalize(p.flatten(1), dim=1) - F.normalize(q.flatten(1), dim=1)).norm(dim=1).mean()
             for p, q in zip(fp_feats, q_feats)]
    return torch.stack(terms).mean()


def initialise(qm: QuantGraph, sampler: PatchSampler, s: Settings, device: str) -> dict:
    """Initialisation phase of Algorithm 1. Returns figures for the report."""
    sample_size = 1 << 16
    observe = {q.name: sample_size for q in qm.adaptive_quantizers()}
    complexities = []
    with torch.no_grad(), qm.fp_mode():
        for x, c in sampler.epoch_batches(s.stats_batch, device):
            qm(x, observe=observe)
            complexities += c.tolist()
    for q in qm.act_quantizers():
        if s.method == "percentile":
            q.set_bounds(*q.pct_ema)
        else:
            q.set_bounds(*q.ema)
    weight_init = {"adabm": "omse", "minmax": "minmax", "percentile": "percentile"}[s.method]
    for conv in qm.qconvs():
        conv.wq.init_clip(conv.weight, weight_init)
    report = {"complexity_percentiles": np.percentile(complexities, [0, 10, 50, 90, 100]).round(3).tolist()}
    if s.method == "adabm":
        qm.image2bit.init_from(np.array(complexities), s.p_i)
        sens = np.array([q.sensitivity for q in qm.adaptive_quantizers()])
        qm.layer2bit.init_from(sens, s.p_l)
        bits0 = qm.variant_bits(0)
        report["bit_aware_eps"] = [round(bit_aware_clip(q, b), 2) for q, b in zip(qm.adaptive_quantizers(), bits0)]
        report["initial_layer_factors"] = qm.layer2bit.factors()
        report["initial_i2b_thresholds"] = list(qm.image2bit.thresholds())
    else:
        qm.adaptive_bits = False
    for q in qm.act_quantizers():
        q.sample = None
    return report


class _Exp(torch.nn.Module):
    """clip = exp(theta): Adam's steps on theta are relative steps of the clip."""

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.exp()

    def right_inverse(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.abs().clamp_min(1e-8).log()


@contextmanager
def relative_clips(qm: QuantGraph, s: Settings) -> Iterator[None]:
    """With Settings.clip_step, the weight clips are learnt in log space for the block (torch parametrize);
    the plain clips come back, at their learnt values, after it."""
    if not s.clip_step:
        yield
        return
    for conv in qm.qconvs():
        parametrize.register_parametrization(conv.wq, "clip", _Exp())
    try:
        yield
    finally:
        for conv in qm.qconvs():
            parametrize.remove_parametrizations(conv.wq, "clip", leave_parametrized=True)


def param_groups(qm: QuantGraph, s: Settings) -> dict[str, list[dict]]:
    """Adam parameter groups ({"params", "lr"}) per stage group; with relative clip steps (inside
    relative_clips), the clips' log-space parameters at clip_step."""
    acts = [p for q in qm.act_quantizers() for p in ((q.upper,) if q.unsigned else (q.lower, q.upper))]
    relative = s.clip_step and parametrize.is_parametrized(qm.qconvs()[0].wq, "clip")
    clips = [c.wq.parametrizations.clip.original if relative else c.wq.clip for c in qm.qconvs()]
    groups = {"weight_clip": [{"params": clips, "lr": s.clip_step if relative else s.lr_weight_clip}],
              "act_bounds": [{"params": acts, "lr": s.lr_act_bounds}]}
    if qm.adaptive_bits:
        groups["layer_factors"] = [{"params": [qm.layer2bit.m], "lr": s.lr_layer_factors}]
        groups["i2b"] = [{"params": [qm.image2bit.lower, qm.image2bit.upper], "lr": s.lr_i2b}]
    return groups


def training_loss(qm: QuantGraph, x: torch.Tensor, c: torch.Tensor, bit_weight: torch.Tensor,
                  s: Settings) -> torch.Tensor:
    """L1(FP, Q) + lambda_skt * SKT, plus bit_weight * max(mean bits - b_tar, 0); bit_weight is lambda_bit in
    bit-mapping epochs and 0 otherwise (a tensor, so one captured CUDA graph serves every stage)."""
    fp_feats: list[torch.Tensor] = []
    with torch.no_grad(), qm.fp_mode():
        y_fp = qm(x, features=fp_feats)
    q_feats: list[torch.Tensor] = []
    y_q = qm(x, c, features=q_feats)
    loss = F.l1_loss(y_q, y_fp) + s.lambda_skt * skt_loss(fp_feats, q_feats)
    if qm.adaptive_bits:
        target = s.a_bits if s.bit_target is None else s.bit_target
        loss = loss + bit_weight * F.relu(qm.bits(c).mean() - target)
    return loss


class TrainStep:
    """Forward, loss and backward for one batch, leaving gradients in .grad.

    On CUDA the step is captured once as a CUDA graph and replayed: a batch of two 80x80 patches is far too
    small to hide the launch cost of the thousands of small kernels of the quantizers' forward and backward, which
    otherwise dominates calibration time on a GPU. On CPU it runs eagerly."""

    def __init__(self, qm: QuantGraph, params: list[torch.nn.Parameter], s: Settings, x: torch.Tensor,
                 c: torch.Tensor):
        self.qm, self.params, self.s = qm, params, s
        self.bit_weight = torch.zeros((), device=x.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        if x.is_cuda:
            self.x, self.c = x.clone(), c.clone()  # the static inputs that the graph reads
            self._capture()

    def _eager(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for p in self.params:
            p.grad = None
        loss = training_loss(self.qm, x, c, self.bit_weight, self.s)
        loss.backward()
        return loss

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture: cuDNN autotuning, autograd's lazy state
            for _ in range(3):
                self._eager(self.x, self.c)
        torch.cuda.current_stream().wait_stream(side)
        for p in self.params:
            p.grad = None  # the captured backward then writes (not accumulates) each .grad on every replay
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = training_loss(self.qm, self.x, self.c, self.bit_weight, self.s)
            self.loss.backward()

    def __call__(self, x: torch.Tensor, c: torch.Tensor, bit_weight: float) -> torch.Tensor:
        self.bit_weight.fill_(bit_weight)
        if self.graph is None:
            return self._eager(x, c)
        self.x.copy_(x)
        self.c.copy_(c)
        self.graph.replay()
        return self.loss


def finetune(qm: QuantGraph, sampler: PatchSampler, s: Settings, device: str, progress: bool) -> list[float]:
    """Fine-tuning phase: returns the mean loss per epoch."""
    with relative_clips(qm, s):
        return _finetune(qm, sampler, s, device, progress)


def _finetune(qm: QuantGraph, sampler: PatchSampler, s: Settings, device: str, progress: bool) -> list[float]:
    groups = param_groups(qm, s)
    tuned = [p for group in groups.values() for g in group for p in g["params"]]
    for p in tuned:
        p.requires_grad_(True)
    opts = {name: torch.optim.Adam(group) for name, group in groups.items()}
    stage_groups = {"weight_clip": ["weight_clip"], "act_bounds": ["act_bounds"],
                    "bit_mapping": ["layer_factors", "i2b"] if qm.adaptive_bits else ["act_bounds"]}
    losses = []
    step = None
    bar = tqdm(total=s.epochs * s.iters_per_epoch, desc="fine-tune", unit="it", disable=not progress)
    for epoch in range(s.epochs):
        stage = STAGES[epoch % 3]
        active = [opts[g] for g in stage_groups[stage]]
        bit_weight = s.lambda_bit if stage == "bit_mapping" else 0.0
        total = 0.0
        for _ in range(s.iters_per_epoch):
            x, c = sampler.random_batch(s.batch, device)
            step = step or TrainStep(qm, tuned, s, x, c)
            loss = step(x, c, bit_weight)
            for opt in active:
                opt.step()
            total += loss.item()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, stage=stage, loss=f"{loss.item():.3f}")
        for opt in opts.values():
            for group in opt.param_groups:
                group["lr"] *= s.lr_decay
        losses.append(total / s.iters_per_epoch)
    bar.close()
    qm.requires_grad_(False)
    return losses


def exact_cuda_convs() -> None:
    """The FP32 teacher's convs in IEEE float32, not the TF32 that cuDNN uses by default on Ampere and later (the
    integer-domain convs run in float64 on CUDA, see QConv). Fixed patch shapes let cuDNN autotune."""
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def check_calibration_set(images: list[np.ndarray], s: Settings, calib_dir: Path,
                          warn: Callable[[str], None]) -> list[str]:
    """Fewer or smaller images than the method expects still calibrate, but worse: say so (returned for the
    artifact's report too). Images too small to hold a patch of the network's context are refused."""
    notices = []
    if len(images) < s.n_images:
        notices.append(f"{calib_dir}: {len(images)} images, fewer than the {s.n_images} the calibration draws; "
                       "thresholds and ranges rest on fewer samples")
    side = min(min(im.shape[:2]) for im in images)
    if side < MIN_PATCH:
        raise UserError(f"{calib_dir}: the smallest image is {side} px on a side after the x-scale downscale; "
                        f"calibration needs at least {MIN_PATCH}")
    if side < s.patch:
        notices.append(f"{calib_dir}: patches are {side}x{side}, smaller than the {s.patch}x{s.patch} asked (the "
                       "smallest LR image limits them)")
    for notice in notices:
        warn(notice)
    return notices


def calibrate(model: Path | Network, calib_dir: Path, s: Settings, device: str = "cpu", progress: bool = True,
              warn: Callable[[str], None] = warn_stderr, scale: int | None = None,
              threads: int = 0) -> tuple[QuantGraph, dict]:
    """Run Algorithm 1 (or a baseline) on a checkpoint (or a network already loaded) and return the calibrated
    model and the artifact payload. threads: torch's intra-op threads for the calibration (0: the cores free
    now, cpu.free_cores); the caller's setting is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or free_cores())
    try:
        return _calibrate(model, calib_dir, s, device, progress, warn, scale)
    finally:
        torch.set_num_threads(previous)


def _calibrate(model: Path | Network, calib_dir: Path, s: Settings, device: str, progress: bool,
               warn: Callable[[str], None], scale: int | None) -> tuple[QuantGraph, dict]:
    if s.method not in METHODS:
        raise UserError(f"unknown method {s.method!r} (choose from {', '.join(METHODS)})")
    torch.manual_seed(s.seed)
    if device == "cuda":
        exact_cuda_convs()
    start = time.perf_counter()
    network = model if isinstance(model, Network) else load_network(model, scale)
    images = calibration_images(calib_dir, s.n_images, network.scale, s.seed)
    qm = QuantGraph(network.graph, s.w_bits, s.a_bits, s.full_quant, s.per_channel).to(device)
    notices = check_calibration_set(images, s, calib_dir, warn)
    sampler = PatchSampler(images, s.patch, s.seed)
    report = initialise(qm, sampler, s, device)
    report["patch"] = sampler.patch
    report["notices"] = notices
    initial_clips = {c.name: c.wq.clip.detach().cpu().clone() for c in qm.qconvs()}
    if s.finetune:
        report["epoch_losses"] = [round(v, 4) for v in finetune(qm, sampler, s, device, progress)]
    qm.cpu().eval()
    with torch.no_grad():
        cs = torch.tensor([gradient_density(im) for im in images])
        report["fab_calibration_images"] = float(qm.bits(cs).mean())
    n_check = max(1, min(SELF_CHECK_IMAGES, len(images) // 4))
    checked, rest = images[:n_check], images[n_check:] or images
    report["routes"] = fit_routes(qm, rest[:max(1, min(ROUTE_IMAGES, len(images) // 2))], s.rung_patch)
    cheap_rung = calibrate_rung(qm, images, s.budget_db, s.rung_patch)
    report["self_check"] = self_check(qm, checked, s.rung_patch, cheap_rung["threshold"], initial_clips)
    if report["self_check"]["warnings"]:
        warn(visibly_off(report["self_check"]["warnings"]))
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["device"] = device
    if device == "cuda":
        report["device_name"] = torch.cuda.get_device_name()
    report["torch"] = torch.__version__
    report["torch_threads"] = torch.get_num_threads()
    settings = dataclasses.asdict(s) | {"calib_dir": str(calib_dir), "n_images_used": len(images)}
    return qm, artifact.to_dict(qm, network, settings, report, cheap_rung)


def recalibrate_rung(payload: dict, checkpoint: Path, calib_dir: Path, budget_db: float,
                     scale: int | None = None) -> dict:
    """A copy of an artifact with its cheap rung set again for another budget, on the same calibration images
    (seconds, where the bit calibration takes minutes)."""
    network = load_network(checkpoint, scale)
    qm = artifact.load_payload(payload, network, str(checkpoint))
    settings = payload["settings"]
    images = calibration_images(calib_dir, settings["n_images"], network.scale, settings["seed"])
    return payload | {"cheap_rung": calibrate_rung(qm, images, budget_db, settings["rung_patch"]),
                      "settings": settings | {"budget_db": budget_db}}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m adabm_deploy.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="checkpoint (EDSR, RDN, SRResNet, CARN, CARN-M, SRVGGNetCompact)")
    p.add_argument("--scale", type=int, help="the scale of a multi-scale checkpoint (CARN, CARN-M); else checked")
    p.add_argument("--calib-dir", type=Path, required=True,
                   help="folder of HR images to draw calibration LR images from (e.g. ../shared/data/train/BSD200)")
    p.add_argument("--w-bits", type=int, default=4)
    p.add_argument("--a-bits", type=int, default=4)
    p.add_argument("--full-quant", action="store_true", help="quantize head, body end and tail at W8A8 too")
    p.add_argument("--method", choices=METHODS, default="adabm")
    p.add_argument("--no-finetune", action="store_true")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight clip per conv, as the paper (default: one per output channel)")
    p.add_argument("--bit-target", type=float,
                   help="target mean bits of the bit loss (default: --a-bits, as in the paper); lower trades "
                        "accuracy for a lower FAB")
    p.add_argument("--lr-layer-factors", type=float, default=Settings.lr_layer_factors, metavar="LR",
                   help="Adam learning rate of the layer-to-bit factors (default: the paper's); with a lower "
                        "--bit-target, a higher rate (e.g. 0.05) lets the factors actually flip to -1")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: the paper's schedule; cpu: shorter fine-tuning for a 2-core CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default 0: the cores not busy with other work when it starts)")
    p.add_argument("--budget-db", type=float, default=Settings.budget_db, metavar="DB",
                   help="cheap rung: the mean Y-PSNR (against the FP32 output, on the calibration images) that "
                        "routing the flattest cells to bicubic may cost; 0 turns the rung off (default: %(default)s)")
    p.add_argument("--rung-only", type=Path, metavar="ARTIFACT",
                   help="only set the cheap rung again, for --budget-db, on this artifact's calibration")
    p.add_argument("-o", "--output", type=Path, required=True, help="calibration artifact (.json)")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not args.budget_db >= 0:
        raise UserError(f"--budget-db {args.budget_db}: must be 0 (no cheap rung) or more")
    if not args.lr_layer_factors > 0:
        raise UserError(f"--lr-layer-factors {args.lr_layer_factors}: must be positive")
    for name, bits in (("--w-bits", args.w_bits), ("--a-bits", args.a_bits)):
        if not 2 <= bits <= 8:
            raise UserError(f"{name} {bits}: must be between 2 and 8 (INT8 containers)")
    return Settings(w_bits=args.w_bits, a_bits=args.a_bits, full_quant=args.full_quant, method=args.method,
                    finetune=not args.no_finetune, per_channel=not args.per_tensor, seed=args.seed,
                    bit_target=args.bit_target, lr_layer_factors=args.lr_layer_factors,
                    preset=args.preset, budget_db=args.budget_db, **PRESETS[args.preset])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device available to torch")
    check_json_target(args.output)  # before minutes of work, not after
    if args.rung_only:
        payload = recalibrate_rung(artifact.read(args.rung_only), args.model, args.calib_dir, args.budget_db,
                                   args.scale)
        artifact.save(args.output, payload)
        rung = payload["cheap_rung"]
        print(f"wrote {args.output}: cheap rung threshold {rung['threshold']} for {args.budget_db} dB "
              f"({rung['calibration_cheap_cells']} of {rung['calibration_cells']} calibration cells)")
        return 0
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be 0 (the free cores) or more")
    _, payload = calibrate(args.model, args.calib_dir, settings, args.device, progress=sys.stderr.isatty(),
                           scale=args.scale, threads=args.threads)
    artifact.save(args.output, payload)
    r = payload["report"]
    print(f"wrote {args.output}: {settings.method} W{settings.w_bits}A{settings.a_bits} "
          f"{'full' if settings.full_quant else 'body-only'}, FAB {r['fab_calibration_images']:.2f} on calibration "
          f"images, {r['seconds']} s on {args.device} ({r['torch_threads']} torch threads)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
