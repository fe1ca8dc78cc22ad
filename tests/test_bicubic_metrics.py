import numpy as np
import pytest

from adabm_deploy.bicubic import bicubic_downscale, imresize
from adabm_deploy.data import open_benchmark
from adabm_deploy.images import read_rgb
from adabm_deploy.metrics import psnr, rgb_to_y, ssim


@pytest.mark.parametrize("scale", [2, 4])
def test_downscale_matches_set5_lr_files_bit_for_bit(benchmark_root, scale):
    bench = open_benchmark(benchmark_root / "Set5", scale)
    for pair in bench.pairs:
        assert np.array_equal(bicubic_downscale(read_rgb(pair.hr), scale), read_rgb(pair.lr)), pair.name


@pytest.mark.parametrize("scale,ref_psnr,ref_ssim", [(2, 33.66, 0.9299), (4, 28.42, 0.8104)])
def test_bicubic_upscaling_reproduces_published_set5_baseline(benchmark_root, scale, ref_psnr, ref_ssim):
    """The classic 'Bicubic' row of every SR paper (Set5, Y channel): pins bicubic, Y, PSNR and SSIM together."""
    bench = open_benchmark(benchmark_root / "Set5", scale)
    scores = []
    for pair in bench.pairs:
        lr, hr = bench.load(pair)
        sr = imresize(lr, scale)
        scores.append((psnr(sr, hr, scale), ssim(sr, hr, scale)))
    mean_psnr, mean_ssim = np.mean(scores, axis=0)
    assert mean_psnr == pytest.approx(ref_psnr, abs=0.015)
    assert mean_ssim == pytest.approx(ref_ssim, abs=0.001)


def test_psnr_of_a_known_offset():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr + np.uint8(3)
    # Y changes by 3 * (65.481 + 128.553 + 24.966) / 255 = 3 * 219 / 255 for a grey offset.
    dy = 3 * 219 / 255
    assert psnr(sr, hr, crop=2) == pytest.approx(10 * np.log10(255 ** 2 / dy ** 2), abs=1e-9)
    assert psnr(sr, hr, y_only=False) == pytest.approx(10 * np.log10(255 ** 2 / 9), abs=1e-9)
    assert psnr(hr, hr) == float("inf")


def test_psnr_crops_the_border():
    hr = np.zeros((10, 10, 3), np.uint8)
    sr = hr.copy()
    sr[0, :] = 255  # only in the cropped margin
    assert psnr(sr, hr, crop=1) == float("inf")
    assert psnr(sr, hr, crop=0) < 20


def test_ssim_of_constant_images_matches_closed_form():
    a, b = 120.0, 100.0
    ya, yb = rgb_to_y(np.full((1, 1, 3), a))[0, 0], rgb_to_y(np.full((1, 1, 3), b))[0, 0]
    c1 = (0.01 * 255) ** 2
    expected = (2 * ya * yb + c1) / (ya ** 2 + yb ** 2 + c1)  # no variance: only the luminance term remains
    got = ssim(np.full((32, 32, 3), a, np.uint8), np.full((32, 32, 3), b, np.uint8))
    assert got == pytest.approx(expected, abs=1e-9)
    img = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    assert ssim(img, img, crop=4) == pytest.approx(1.0)


def test_sr_output_is_rounded_before_measuring():
    hr = np.full((8, 8, 3), 50, np.uint8)
    assert psnr(hr.astype(np.float64) + 0.4, hr) == float("inf")
