"""The baseline a user would pick instead of AdaBM: ONNX Runtime's own `quantize_static` on the FP32 graph.

QDQ format, uint8 activations, per-channel int8 weights, MinMax calibration on the same LR calibration
images as our own calibration (central crops of up to 96x96), so the two INT8 models differ only in the quantization method.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)


class _Patches(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray], patch: int, input_name: str):
        patch = min(patch, *(min(im.shape[:2]) for im in images))  # as our calibration's PatchSampler
        crops = []
        for im in images:
            h, w = im.shape[:2]
            y, x = (h - min(h, patch)) // 2, (w - min(w, patch)) // 2
            crops.append(im[y:y + patch, x:x + patch])
        self._feeds = iter([{input_name: c.transpose(2, 0, 1)[None].astype(np.float32)} for c in crops])

    def get_next(self):
        return next(self._feeds, None)


def quantize_static_int8(fp32_path: Path, out_path: Path, images: list[np.ndarray], patch: int = 96) -> Path:
    """Write ORT's static INT8 QDQ model of `fp32_path` calibrated on central crops of `images`."""
    quantize_static(str(fp32_path), str(out_path), _Patches(images, patch, "lr"), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax)
    return Path(out_path)
