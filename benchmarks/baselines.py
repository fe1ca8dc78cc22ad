"""The tools a user would pick instead of AdaBM, each given the same advantages AdaBM's graphs have.

ONNX Runtime's `quantize_static` (QDQ, uint8 activations, per-channel int8 weights, MinMax) and OpenVINO with
NNCF's post-training INT8 (its default preset) quantize an FP32 graph calibrated on central crops of the same
100 LR calibration images. Each is run on the plain FP32 graph (what a user's own export has) and on this
project's rewritten FP32 graph (sub-pixel tail, channels-last shuffles): only with the second do the INT8
models differ in the quantization method alone; the difference between the two is the graph rewrite's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)


def central_crops(images: list[np.ndarray], patch: int = 96) -> list[np.ndarray]:
    """NCHW float32 batches of one central crop per image, as large as our calibration's PatchSampler takes."""
    patch = min(patch, *(min(im.shape[:2]) for im in images))
    crops = []
    for im in images:
        h, w = im.shape[:2]
        y, x = (h - patch) // 2, (w - patch) // 2
        crops.append(np.ascontiguousarray(im[y:y + patch, x:x + patch].transpose(2, 0, 1)[None].astype(np.float32)))
    return crops


class _Patches(CalibrationDataReader):
    def __init__(self, crops: list[np.ndarray], input_name: str):
        self._feeds = iter([{input_name: c} for c in crops])

    def get_next(self):
        return next(self._feeds, None)


def quantize_static_int8(fp32_path: Path, out_path: Path, images: list[np.ndarray]) -> Path:
    """Write ORT's static INT8 QDQ model of `fp32_path` calibrated on central crops of `images`."""
    quantize_static(str(fp32_path), str(out_path), _Patches(central_crops(images), "lr"), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax)
    return Path(out_path)


def openvino_int8(fp32_path: Path, images: list[np.ndarray]):
    """NNCF's post-training INT8 of the FP32 graph, as an OpenVINO model (needs the `bench` extra)."""
    import nncf
    import openvino as ov
    return nncf.quantize(ov.Core().read_model(str(fp32_path)), nncf.Dataset(central_crops(images)),
                         subset_size=len(images))


def openvino_runner(model, threads: int, precision: str | None = None):
    """An OpenVINO CPU compile of an FP32 (path) or INT8 (model) network: NCHW float32 in, out. precision: the
    INFERENCE_PRECISION_HINT (None: the plugin's default, bf16 on CPUs with AMX-BF16 or AVX-512 BF16)."""
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(core.read_model(str(model)) if isinstance(model, Path) else model, "CPU", config)
    return lambda batch: compiled(batch)[0]
