"""Random-weight checkpoints of every supported architecture, saved in the key layout its original code writes
(the layouts the loaders must accept): small ones for the tests, the published sizes for the benchmarks."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from adabm_deploy.models import carn, edsr, rdn, srresnet, srvgg


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """He-scaled weights, small biases, non-trivial batch-norm statistics and PReLU slopes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5 * 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.3 * torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(0.25 + 0.1 * torch.randn(m.weight.shape, generator=g))
    return module.eval()


def _mean_shift(conv: nn.Conv2d, sign: float, rgb_range: float) -> None:
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3)[:, :, None, None])
        conv.bias.copy_(sign * rgb_range * torch.tensor([0.4488, 0.4371, 0.4040]))


def edsr_model(n_blocks=2, n_feats=16, scale=4):
    m = _randomise(edsr.EDSR(edsr.EDSRConfig(n_blocks, n_feats, scale)), 1)
    _mean_shift(m.sub_mean, -1, 255)
    _mean_shift(m.add_mean, 1, 255)
    return m


def save(kind: str, folder: Path, scale: int = 4, **cfg) -> Path:
    """A checkpoint of `kind` (edsr, edsr_adabm, rdn, srresnet, carn, carn_multi, carn_m, srvgg) in its original
    layout."""
    if kind in ("edsr", "edsr_adabm"):
        state = edsr_model(scale=scale, **cfg).state_dict()
        if kind == "edsr_adabm":  # AdaBM's ResBlock: conv1 / conv2
            state = {re.sub(r"^body\.(\d+)\.body\.([02])\.", lambda m: f"body.{m.group(1)}.conv"
                            f"{1 if m.group(2) == '0' else 2}.", k): v for k, v in state.items()}
    elif kind == "rdn":
        state = _randomise(rdn.RDN(cfg.get("g0", 16), cfg.get("n_blocks", 2), cfg.get("n_convs", 2),
                                   cfg.get("growth", 8), scale), 2).state_dict()
    elif kind == "srresnet":
        state = _randomise(srresnet.SRResNet(cfg.get("n_blocks", 2), cfg.get("n_feats", 16), scale), 3).state_dict()
    elif kind in ("carn", "carn_multi", "carn_m"):
        mobile = {"mobile": True, "groups": 4, "upsample_groups": 4} if kind == "carn_m" else {}
        model = _randomise(carn.CARN(cfg.get("n_feats", 16), scale, (2, 3, 4) if kind == "carn_multi" else None,
                                     **mobile), 4)
        _mean_shift(model.sub_mean.shifter, -1, 1)
        _mean_shift(model.add_mean.shifter, 1, 1)
        state = {re.sub(r"^body\.", "", k): v for k, v in model.state_dict().items()}  # the official top level
    elif kind == "srvgg":
        state = {"params_ema": _randomise(srvgg.SRVGGNetCompact(cfg.get("n_feats", 16), cfg.get("n_convs", 3),
                                                                scale), 5).state_dict()}
    else:
        raise ValueError(kind)
    path = folder / f"{kind}_x{scale}.pt"
    torch.save(state, path)
    return path


def random_images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """n RGB 0..255 images with texture, flat parts and edges: FP statistics for the quantizers' ranges."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g) * 255
    x[:, :, : side // 2, : side // 2] = 128  # a flat quadrant
    return x


def observed(qm, seed: int = 0, side: int = 24):
    """Ranges and weight clips from FP statistics on random images (the calibration's first step, without
    fine-tuning): a quantized model whose graphs run like a calibrated one's, fast."""
    with torch.no_grad(), qm.fp_mode():
        qm(random_images(4, side, seed), observe={})
    for q in qm.act_quantizers():
        q.set_bounds(*q.ema)
    for conv in qm.qconvs():
        conv.wq.init_clip(conv.weight, "minmax")
    return qm
