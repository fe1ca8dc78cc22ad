import numpy as np
import pytest
import torch

from adabm_deploy.quant import ActQuantizer, ImageToBit, LayerToBit, WeightQuantizer
from adabm_deploy.quant.quantizers import bit_aware_clip
from runtime.complexity import gradient_density


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_activation_levels_are_an_integer_grid_containing_zero(bits):
    q = ActQuantizer("a")
    q.set_bounds(-1.3, 2.9)
    x = torch.linspace(-3, 4, 10001)
    y, scale = q.quantize(x, float(bits))
    s, zp = q.qparams(bits)
    assert float(scale.detach()) == pytest.approx(s)
    assert 0 <= zp <= 2 ** bits - 1 and zp == round(zp)
    codes = y / s + zp
    assert torch.allclose(codes, codes.round(), atol=1e-3)  # on the integer grid
    assert codes.min() >= -1e-3 and codes.max() <= 2 ** bits - 1 + 1e-3  # inside the b-bit uint8 range
    assert len(torch.unique(codes.round())) == 2 ** bits
    assert float(q.quantize(torch.zeros(1), float(bits))[0].detach()) == 0.0  # zero exactly representable


def test_unsigned_quantizer_has_zero_point_zero():
    q = ActQuantizer("relu", unsigned=True)
    q.set_bounds(-5.0, 3.0)  # a negative lower bound is ignored after ReLU
    assert q.qparams(4)[1] == 0
    assert not q.lower.requires_grad


def test_activation_gradients_are_straight_through_and_reach_the_bounds():
    q = ActQuantizer("a")
    q.set_bounds(-1.0, 1.0)
    q.requires_grad_(True)
    x = torch.tensor([-2.0, -0.5, 0.1, 0.7, 3.0], requires_grad=True)
    y, _ = q.quantize(x, 4.0)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # STE inside, clipped outside (eq. 8)
    assert q.upper.grad is not None and float(q.upper.grad) != 0.0
    assert q.lower.grad is not None and float(q.lower.grad) != 0.0


def test_per_sample_bits_give_per_sample_scales():
    q = ActQuantizer("a", adaptive=True)
    q.set_bounds(0.0, 15.0)
    x = torch.rand(2, 1, 4, 4) * 15
    y, scale = q.quantize(x, torch.tensor([4.0, 2.0]))
    assert scale.shape == (2,)
    assert scale.tolist() == pytest.approx([1.0, 5.0])
    assert len(torch.unique(y[1])) <= 4


@pytest.mark.parametrize("per_channel", [False, True])
def test_weight_levels_symmetric_with_zero_and_clip_gradient(per_channel):
    w = torch.randn(8, 4, 3, 3)
    wq = WeightQuantizer(w, bits=4, per_channel=per_channel)
    wq.init_clip(w, "minmax")
    wq.requires_grad_(True)
    y = wq(w)
    scale = wq.scale().view(-1, 1, 1, 1)
    codes = (y / scale)
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.abs().max() <= 7 + 1e-4  # levels +-(2^(b-1) - 1), zero point 0
    assert (codes.round() == 0).any()
    with torch.no_grad():
        wq.clip.mul_(0.5)  # now some |W| exceed the clip: they pass gradient to it (eq. 9)
    wq(w).abs().sum().backward()
    assert wq.clip.grad is not None and wq.clip.grad.abs().sum() > 0


def test_omse_weight_clip_beats_minmax_mse():
    w = torch.randn(64, 64, 3, 3) * 0.05
    w[0, 0, 0, 0] = 1.0  # one outlier makes max|W| a poor 4-bit range
    a, b = WeightQuantizer(w, 4), WeightQuantizer(w, 4)
    a.init_clip(w, "minmax")
    b.init_clip(w, "omse")
    assert ((b(w) - w) ** 2).sum() < ((a(w) - w) ** 2).sum()


def test_i2b_thresholds_start_at_percentiles_and_map_to_minus_zero_plus():
    c = np.arange(1, 101, dtype=np.float64)
    m = ImageToBit()
    m.init_from(c, 10)
    lo, hi = m.thresholds()
    assert (lo, hi) == pytest.approx(tuple(np.percentile(c, [10, 90])))
    out = m(torch.tensor([lo - 1, (lo + hi) / 2, hi + 1]))
    assert out.tolist() == [-1.0, 0.0, 1.0]


def test_i2b_surrogate_gradient_reaches_thresholds():
    m = ImageToBit()
    m.init_from(np.array([10.0, 20.0, 30.0]), 10)
    m.requires_grad_(True)
    m(torch.tensor([15.0, 25.0])).sum().backward()
    assert m.lower.grad is not None and m.upper.grad is not None
    assert float(m.lower.grad) != 0.0 and float(m.upper.grad) != 0.0


def test_layer_factors_initialised_from_sensitivity_percentiles():
    m = LayerToBit(10)
    m.init_from(np.arange(10, dtype=np.float64), 30)  # 30th pct = 2.7, 70th = 6.3
    assert m.factors() == [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1]


def test_bit_factor_rounding_forward_and_tanh_gradient():
    m = LayerToBit(6)
    raw = torch.tensor([-2.0, -0.6, -0.4, 0.3, 0.7, 3.0])
    with torch.no_grad():
        m.m.copy_(raw)
    m.requires_grad_(True)
    out = m()
    assert out.tolist() == [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    assert torch.allclose(m.m.grad, 1 - torch.tanh(raw) ** 2)


def test_bit_aware_clipping_shrinks_a_heavy_tailed_range_at_low_bits():
    q = ActQuantizer("a", adaptive=True)
    x = torch.cat([torch.randn(20000), torch.tensor([40.0])])  # one outlier
    q.observe(x[None], keep_sample=1 << 16)
    q.set_bounds(*q.ema)
    eps = bit_aware_clip(q, 3)
    assert eps < 0.5
    assert q.bound_values()[1] == pytest.approx(0.5 * 40 * (1 + eps), rel=1e-5)  # blended 50/50


def test_complexity_matches_an_independent_sobel():
    rng = np.random.default_rng(1)
    img = (rng.random((13, 17, 3)) * 255).astype(np.uint8)
    gray = (img.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:] - p[:-2, :-2] - 2 * p[1:-1, :-2] - p[2:, :-2]) / 8
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:] - p[:-2, :-2] - 2 * p[:-2, 1:-1] - p[:-2, 2:]) / 8
    expected = 1000 * 0.5 * (np.abs(gx).mean() + np.abs(gy).mean())
    assert gradient_density(img) == pytest.approx(expected, rel=1e-5)
    assert gradient_density(np.full((8, 8, 3), 77, np.uint8)) == 0.0
