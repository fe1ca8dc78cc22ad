"""Reading benchmark and calibration images as RGB uint8 arrays (torch-free)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.images import IMAGE_SUFFIXES


def read_rgb(path: Path) -> np.ndarray:
    """RGB uint8 HxWx3; grayscale is replicated to three channels, alpha dropped."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"{path}: cannot read image (missing, truncated or unsupported format)")
    return np.ascontiguousarray(img[:, :, ::-1])


def write_rgb(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1])):
        raise UserError(f"{path}: cannot write image")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
